//! K3s's `registries.yaml`, read and checked.
//!
//! ```yaml
//! mirrors:
//!   docker.io:                 # shared over P2P, even with no endpoints
//!     endpoint:
//!       - https://mirror.example.com
//!     rewrite:
//!       "^rancher/(.*)": "mirror/rancher-images/$1"
//!   "*":                       # every registry; the quotes are required
//! configs:
//!   "mirror.example.com":
//!     auth: { username: u, password: p }
//!     tls: { ca_file: /etc/ssl/mirror-ca.pem, insecure_skip_verify: false }
//! ```
//!
//! The format is K3s's (docs.k3s.io "Private Registry Configuration" and
//! "Embedded Registry Mirror"; the fields are those of the Go struct K3s
//! reads it into). Where K3s silently ignores a mistake, this module
//! refuses it with its line: unknown keys, endpoint URLs without a scheme,
//! rewrite rules that do not compile, registry names that are not
//! `host[:port]`. Two keys that K3s accepts and does nothing with are set
//! aside as [`Ignored`]: the top-level `auths` (a deprecated containerd
//! field still in K3s's struct) and `auth.token` (in the docs' template,
//! not in the struct).

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use kagami_core::Registry;
use yaml_serde::{Mapping, Value as Yaml};

use crate::locate::{Seg, render};
use crate::yaml::{self, Doc, closest, describe, excerpt};
use crate::{Error, Ignored};

/// The mirror and config entry that applies to every registry without an
/// entry of its own; for `mirrors:`, "share every registry".
pub const WILDCARD: &str = "*";

const STAR_HINT: &str = "to mirror every registry";

/// A parsed `registries.yaml`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Registries {
    /// `mirrors:` in file order: each registry listed is shared through the
    /// P2P network, with the endpoints and rewrites containerd gets for it.
    pub mirrors: Vec<(String, Mirror)>,
    /// `configs:`: credentials and TLS settings by registry host (`host` or
    /// `host:port`, or `"*"`).
    pub configs: BTreeMap<String, RegistryConfig>,
    /// Keys K3s accepts and ignores, which kagami ignores too.
    pub ignored: Vec<Ignored>,
    /// Every file the `tls:` settings name, where they name it.
    pub files: Vec<NamedFile>,
}

/// A file named in `registries.yaml` (a CA bundle, a client certificate or
/// key), with the file, line and key that name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedFile {
    /// The file named.
    pub path: PathBuf,
    /// The `registries.yaml` that names it.
    pub source: PathBuf,
    /// The line that names it.
    pub line: usize,
    /// The dotted key that names it (`configs.docker.io.tls.ca_file`).
    pub key: String,
}

/// One `mirrors:` entry.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Mirror {
    /// `endpoint:` URLs, in order; each has an `http` or `https` scheme and
    /// a host. Kept as written (no trailing `/` added).
    pub endpoints: Vec<String>,
    /// `rewrite:` rules in file order: (regex on the repository name,
    /// replacement with `$1`-style groups). Each regex compiles.
    pub rewrites: Vec<(String, String)>,
}

/// One `configs:` entry.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RegistryConfig {
    /// `auth:` credentials.
    pub auth: Option<Auth>,
    /// `tls:` settings.
    pub tls: Option<Tls>,
}

/// Registry credentials. `Debug` hides the secrets.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Auth {
    /// Basic-auth user name.
    pub username: Option<String>,
    /// Basic-auth password.
    pub password: Option<String>,
    /// Base64 of `username:password`.
    pub auth: Option<String>,
    /// An identity (refresh) token exchanged for access tokens.
    pub identity_token: Option<String>,
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hidden = |secret: &Option<String>| secret.as_ref().map(|_| "<hidden>");
        f.debug_struct("Auth")
            .field("username", &self.username)
            .field("password", &hidden(&self.password))
            .field("auth", &hidden(&self.auth))
            .field("identity_token", &hidden(&self.identity_token))
            .finish()
    }
}

/// TLS settings for talking to a registry.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Tls {
    /// Client certificate (PEM).
    pub cert_file: Option<PathBuf>,
    /// Client key (PEM).
    pub key_file: Option<PathBuf>,
    /// CA bundle to verify the registry's certificate with.
    pub ca_file: Option<PathBuf>,
    /// Skip verifying the registry's certificate.
    pub insecure_skip_verify: bool,
}

impl Registries {
    /// Whether `"*"` is under `mirrors:`: every registry is shared.
    pub fn shares_all(&self) -> bool {
        self.mirrors.iter().any(|(name, _)| name == WILDCARD)
    }

    /// The registries listed under `mirrors:`, in file order (`"*"`
    /// included if present). Empty means this node does not join the P2P
    /// network.
    pub fn mirrored(&self) -> Vec<&str> {
        self.mirrors.iter().map(|(name, _)| name.as_str()).collect()
    }

    /// The `mirrors:` entry for `registry` as written, or else `"*"`'s, as
    /// K3s picks it.
    pub fn mirror_for(&self, registry: &str) -> Option<&Mirror> {
        let find = |name: &str| self.mirrors.iter().find(|(n, _)| n == name).map(|(_, m)| m);
        find(registry).or_else(|| find(WILDCARD))
    }

    /// Checks that every file the `tls:` settings name can be read, so a
    /// typo shows at start, not at the first pull that needs it.
    pub fn check_files(&self) -> Result<(), Error> {
        for file in &self.files {
            if let Err(source) = std::fs::File::open(&file.path) {
                return Err(Error::Parse {
                    path: file.source.clone(),
                    line: Some(file.line),
                    key: Some(file.key.clone()),
                    message: format!("cannot read {}: {source}", file.path.display()),
                });
            }
        }
        Ok(())
    }

    /// The `configs:` entry for `host` (`host` or `host:port`), or else
    /// `"*"`'s, as K3s picks it.
    pub fn config_for(&self, host: &str) -> Option<&RegistryConfig> {
        self.configs
            .get(host)
            .or_else(|| self.configs.get(WILDCARD))
    }
}

/// Reads and checks the registries file at `path`, which must exist.
pub fn load(path: &Path) -> Result<Registries, Error> {
    let text = yaml::read(path)?;
    parse(&text, path)
}

/// Like [`load`], but a file that does not exist gives `Ok(None)`: K3s
/// treats a missing default `registries.yaml` as "no mirrors".
pub fn load_optional(path: &Path) -> Result<Option<Registries>, Error> {
    match yaml::read_optional(path)? {
        Some(text) => parse(&text, path).map(Some),
        None => Ok(None),
    }
}

/// Checks registries text; `path` only names it in errors.
pub fn parse(text: &str, path: &Path) -> Result<Registries, Error> {
    let doc = Doc { path, text };
    let yaml = doc.parse(STAR_HINT)?;
    Checker {
        doc,
        ignored: Vec::new(),
        files: Vec::new(),
    }
    .registries(&yaml)
}

/// A mapping entry being checked: its key as text, its value, its path.
type Field<'y> = (String, &'y Yaml, Vec<Seg>);

/// Walks the parsed document, keeping the path of each node so that
/// errors can name it and find its line.
struct Checker<'a> {
    doc: Doc<'a>,
    ignored: Vec<Ignored>,
    files: Vec<NamedFile>,
}

impl Checker<'_> {
    fn registries(mut self, yaml: &Yaml) -> Result<Registries, Error> {
        let mut registries = Registries::default();
        let Some(top) = self.mapping(&[], yaml, "`mirrors:` and `configs:`")? else {
            return Ok(registries);
        };
        for (key, value, at) in self.entries(&[], top)? {
            match key.as_str() {
                "mirrors" => registries.mirrors = self.mirrors(&at, value)?,
                "configs" => registries.configs = self.configs(&at, value)?,
                "auths" => self.ignore(&at),
                _ => return Err(self.unknown(&at, &key, &["mirrors", "configs"])),
            }
        }
        registries.ignored = self.ignored;
        registries.files = self.files;
        Ok(registries)
    }

    fn mirrors(&mut self, at: &[Seg], value: &Yaml) -> Result<Vec<(String, Mirror)>, Error> {
        let mut mirrors = Vec::new();
        let Some(entries) = self.mapping(at, value, "registry names")? else {
            return Ok(mirrors);
        };
        for (name, value, at) in self.entries(at, entries)? {
            self.registry_name(&at, &name)?;
            mirrors.push((name, self.mirror(&at, value)?));
        }
        Ok(mirrors)
    }

    fn mirror(&mut self, at: &[Seg], value: &Yaml) -> Result<Mirror, Error> {
        let mut mirror = Mirror::default();
        let Some(fields) = self.mapping(at, value, "`endpoint:` and `rewrite:`")? else {
            return Ok(mirror);
        };
        for (key, value, at) in self.entries(at, fields)? {
            match key.as_str() {
                "endpoint" => mirror.endpoints = self.endpoints(&at, value)?,
                "rewrite" => mirror.rewrites = self.rewrites(&at, value)?,
                _ => return Err(self.unknown(&at, &key, &["endpoint", "rewrite"])),
            }
        }
        Ok(mirror)
    }

    fn endpoints(&mut self, at: &[Seg], value: &Yaml) -> Result<Vec<String>, Error> {
        let items = match value {
            Yaml::Null => return Ok(Vec::new()),
            Yaml::Sequence(items) => items,
            other => {
                return Err(self.doc.error(
                    at,
                    format!("expected a list of URLs, found {}", describe(other)),
                ));
            }
        };
        let mut endpoints = Vec::with_capacity(items.len());
        for (index, item) in items.iter().enumerate() {
            let at = [at, &[Seg::Index(index)]].concat();
            let Yaml::String(url) = item else {
                return Err(self
                    .doc
                    .error(&at, format!("expected a URL, found {}", describe(item))));
            };
            check_endpoint(url).map_err(|message| self.doc.error(&at, message))?;
            endpoints.push(url.clone());
        }
        Ok(endpoints)
    }

    fn rewrites(&mut self, at: &[Seg], value: &Yaml) -> Result<Vec<(String, String)>, Error> {
        let mut rewrites = Vec::new();
        let Some(rules) = self.mapping(at, value, "`\"<regex>\": \"<replacement>\"` rules")? else {
            return Ok(rewrites);
        };
        for (pattern, replacement, at) in self.entries(at, rules)? {
            if let Err(err) = regex::Regex::new(&pattern) {
                return Err(self.doc.error(
                    &at,
                    format!(
                        "rewrite regex {:?} does not compile: {err}",
                        excerpt(&pattern)
                    ),
                ));
            }
            let replacement = self.text(&at, replacement, "a replacement")?;
            rewrites.push((pattern, replacement.unwrap_or_default()));
        }
        Ok(rewrites)
    }

    fn configs(
        &mut self,
        at: &[Seg],
        value: &Yaml,
    ) -> Result<BTreeMap<String, RegistryConfig>, Error> {
        let mut configs = BTreeMap::new();
        let Some(entries) = self.mapping(at, value, "registry hosts")? else {
            return Ok(configs);
        };
        for (name, value, at) in self.entries(at, entries)? {
            self.registry_name(&at, &name)?;
            let config = self.config(&at, value)?;
            configs.insert(name, config);
        }
        Ok(configs)
    }

    fn config(&mut self, at: &[Seg], value: &Yaml) -> Result<RegistryConfig, Error> {
        let mut config = RegistryConfig::default();
        let Some(fields) = self.mapping(at, value, "`auth:` and `tls:`")? else {
            return Ok(config);
        };
        for (key, value, at) in self.entries(at, fields)? {
            match key.as_str() {
                "auth" => config.auth = self.auth(&at, value)?,
                "tls" => config.tls = self.tls(&at, value)?,
                _ => return Err(self.unknown(&at, &key, &["auth", "tls"])),
            }
        }
        Ok(config)
    }

    fn auth(&mut self, at: &[Seg], value: &Yaml) -> Result<Option<Auth>, Error> {
        const FIELDS: &[&str] = &["username", "password", "auth", "identity_token"];
        let Some(fields) = self.mapping(at, value, "credentials")? else {
            return Ok(None);
        };
        let mut auth = Auth::default();
        for (key, value, at) in self.entries(at, fields)? {
            let slot = match key.as_str() {
                "username" => &mut auth.username,
                "password" => &mut auth.password,
                "auth" => &mut auth.auth,
                "identity_token" => &mut auth.identity_token,
                "token" => {
                    self.ignore(&at);
                    continue;
                }
                _ => return Err(self.unknown(&at, &key, FIELDS)),
            };
            *slot = self.text(&at, value, "text")?;
        }
        Ok(Some(auth))
    }

    fn tls(&mut self, at: &[Seg], value: &Yaml) -> Result<Option<Tls>, Error> {
        const FIELDS: &[&str] = &["cert_file", "key_file", "ca_file", "insecure_skip_verify"];
        let Some(fields) = self.mapping(at, value, "TLS settings")? else {
            return Ok(None);
        };
        let mut tls = Tls::default();
        for (key, value, at) in self.entries(at, fields)? {
            let slot = match key.as_str() {
                "cert_file" => &mut tls.cert_file,
                "key_file" => &mut tls.key_file,
                "ca_file" => &mut tls.ca_file,
                "insecure_skip_verify" => {
                    tls.insecure_skip_verify = match value {
                        Yaml::Bool(b) => *b,
                        Yaml::Null => false,
                        other => {
                            return Err(self.doc.error(
                                &at,
                                format!("expected true or false, found {}", describe(other)),
                            ));
                        }
                    };
                    continue;
                }
                _ => return Err(self.unknown(&at, &key, FIELDS)),
            };
            // K3s's docs template leaves these empty (`cert_file: # path`).
            *slot = self
                .text(&at, value, "a file path")?
                .filter(|path| !path.is_empty())
                .map(PathBuf::from);
            if let Some(path) = slot.clone() {
                self.files.push(NamedFile {
                    path,
                    source: self.doc.path.to_owned(),
                    line: self.doc.line(&at),
                    key: render(&at),
                });
            }
        }
        if tls.cert_file.is_some() != tls.key_file.is_some() {
            return Err(self.doc.error(
                at,
                "a client certificate needs its key: give both `cert_file` and `key_file`, or neither",
            ));
        }
        Ok(Some(tls))
    }

    /// A mapping's entries with their keys as text and their paths.
    fn entries<'y>(&self, at: &[Seg], mapping: &'y Mapping) -> Result<Vec<Field<'y>>, Error> {
        mapping
            .iter()
            .map(|(key, value)| {
                let key = yaml::key_text(key).ok_or_else(|| {
                    self.doc
                        .error(at, format!("a key must be text, found {}", describe(key)))
                })?;
                let path = [at, &[Seg::Key(key.clone())]].concat();
                Ok((key, value, path))
            })
            .collect()
    }

    /// The node as a mapping; `None` if it is empty (`docker.io:`), which
    /// K3s's format allows everywhere.
    fn mapping<'y>(
        &self,
        at: &[Seg],
        value: &'y Yaml,
        of: &str,
    ) -> Result<Option<&'y Mapping>, Error> {
        match value {
            Yaml::Null => Ok(None),
            Yaml::Mapping(mapping) => Ok(Some(mapping)),
            other => Err(self.doc.error(
                at,
                format!("expected a mapping of {of}, found {}", describe(other)),
            )),
        }
    }

    /// A text field; nothing gives `None`. Numbers are refused rather than
    /// converted: YAML would turn a password of `1.50` into `1.5`.
    fn text(&self, at: &[Seg], value: &Yaml, what: &str) -> Result<Option<String>, Error> {
        match value {
            Yaml::Null => Ok(None),
            Yaml::String(s) => Ok(Some(s.clone())),
            other => Err(self.doc.error(
                at,
                format!("expected {what}, found {}; quote it", describe(other)),
            )),
        }
    }

    fn registry_name(&self, at: &[Seg], name: &str) -> Result<(), Error> {
        if name == WILDCARD {
            return Ok(());
        }
        name.parse::<Registry>().map(drop).map_err(|err| {
            self.doc.error(
                at,
                format!("{err}; a registry is host or host:port (no scheme, no path), or \"*\""),
            )
        })
    }

    fn unknown(&self, at: &[Seg], key: &str, fields: &[&str]) -> Error {
        let message = match closest(key, fields.iter().copied()) {
            Some(near) => format!("unknown key; did you mean {near:?}?"),
            None => format!("unknown key; expected one of {}", fields.join(", ")),
        };
        self.doc.error(at, message)
    }

    fn ignore(&mut self, at: &[Seg]) {
        let ignored = Ignored {
            key: render(at),
            line: self.doc.line(at),
        };
        tracing::debug!(path = %self.doc.path.display(), line = ignored.line, key = %ignored.key, "ignoring a registries.yaml key K3s accepts and does not use");
        self.ignored.push(ignored);
    }
}

/// Checks an endpoint URL as containerd will need it: `http` or `https`,
/// with a host. The message names the URL.
fn check_endpoint(endpoint: &str) -> Result<(), String> {
    let shown = excerpt(endpoint);
    if !endpoint.contains("://") {
        return Err(format!(
            "endpoint {shown:?} has no scheme; write \"https://{shown}\" (or http:// for a registry without TLS)"
        ));
    }
    let url = url::Url::parse(endpoint)
        .map_err(|err| format!("endpoint {shown:?} is not a valid URL: {err}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "endpoint {shown:?} has scheme {:?}; only http and https are supported",
            url.scheme()
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("endpoint {shown:?} has no host"));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
