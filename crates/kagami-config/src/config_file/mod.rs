//! `config.yaml`: one key per long command-line flag, as K3s does it.
//!
//! ```yaml
//! embedded-registry: true
//! data-dir: /var/lib/kagami
//! https-listen-port: 6443      # a number is fine for a text flag
//! node-ip: [10.0.0.5, fd00::5] # or a single value
//! node-label+: [disk=ssd]      # `+`: append to, not replace, a list
//! ```
//!
//! The caller passes the flags it has ([`KnownKey`]); this module checks
//! each key against them and each value against the flag's [`Kind`], and
//! returns the entries in file order for the caller to lay under the
//! command line. A key that K3s knows and kagami does not (see
//! [`K3S_KEYS`]) is set aside as [`Ignored`], so that
//! `--config /etc/rancher/k3s/config.yaml` works; any other key fails the
//! load. A key that is both kagami's and K3s's (`token`, `data-dir`, …) is
//! kagami's.

mod k3s_keys;

use std::path::{Path, PathBuf};

use yaml_serde::Value as Yaml;

use crate::locate::Seg;
use crate::yaml::{self, Doc, closest, describe};
use crate::{Error, Ignored};

pub use k3s_keys::{K3S_KEYS, is_k3s_key};

/// What finishes "write "*" (quoted) …" if a `*` turns up in this file.
const STAR_HINT: &str = "if you meant the text *";

/// One of the caller's flags, as a config key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KnownKey<'a> {
    /// The long flag name without `--`: `https-listen-port`.
    pub name: &'a str,
    /// What values the flag takes.
    pub kind: Kind,
}

impl<'a> KnownKey<'a> {
    /// A switch: `key: true` or `key: false`.
    pub const fn bool(name: &'a str) -> Self {
        KnownKey {
            name,
            kind: Kind::Bool,
        }
    }

    /// A flag with one value.
    pub const fn scalar(name: &'a str) -> Self {
        KnownKey {
            name,
            kind: Kind::Scalar,
        }
    }

    /// A repeatable flag.
    pub const fn list(name: &'a str) -> Self {
        KnownKey {
            name,
            kind: Kind::List,
        }
    }
}

/// The kind of value a flag takes, and so what its key accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A YAML `true` or `false`; nothing else (not `"true"`, not `yes`).
    Bool,
    /// One value: text, or a number or bool taken as its text
    /// (`https-listen-port: 6443` gives `"6443"`).
    Scalar,
    /// Any number of values: a YAML list of scalars, or one scalar (K3s
    /// accepts both, e.g. `node-ip: 10.0.0.5`), or nothing (an empty
    /// list). Only these keys may take the `key+:` append form.
    List,
}

/// A value from the file, shaped by its key's [`Kind`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// For a [`Kind::Bool`] key.
    Bool(bool),
    /// For a [`Kind::Scalar`] key.
    Scalar(String),
    /// For a [`Kind::List`] key.
    List(Vec<String>),
}

/// One of the caller's keys as the file sets it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The flag name, without a trailing `+`.
    pub key: String,
    /// The value, of the kind the flag takes.
    pub value: Value,
    /// 1-based line of the key.
    pub line: usize,
    /// Written `key+:`: K3s's "append to the values so far" instead of
    /// "replace them" (only for [`Kind::List`] keys).
    pub append: bool,
}

/// A parsed `config.yaml`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConfigFile {
    /// The file it came from.
    pub path: PathBuf,
    /// The caller's keys, in file order.
    pub entries: Vec<Entry>,
    /// K3s's keys that kagami has no use for, in file order.
    pub ignored: Vec<Ignored>,
}

impl ConfigFile {
    /// The entry for `key` (without `+`), if the file sets it. A key may
    /// appear twice, as `key` and `key+`; this gives the first.
    pub fn get(&self, key: &str) -> Option<&Entry> {
        self.entries.iter().find(|entry| entry.key == key)
    }
}

/// Reads and checks the config file at `path`, which must exist (use this
/// for a path the user gave).
pub fn load(path: &Path, known: &[KnownKey<'_>]) -> Result<ConfigFile, Error> {
    let text = yaml::read(path)?;
    parse(&text, path, known)
}

/// Like [`load`], but a file that does not exist gives `Ok(None)` (use this
/// for the default path, which may well be absent).
pub fn load_optional(path: &Path, known: &[KnownKey<'_>]) -> Result<Option<ConfigFile>, Error> {
    match yaml::read_optional(path)? {
        Some(text) => parse(&text, path, known).map(Some),
        None => Ok(None),
    }
}

/// Checks config text; `path` only names it in errors and the result.
pub fn parse(text: &str, path: &Path, known: &[KnownKey<'_>]) -> Result<ConfigFile, Error> {
    let doc = Doc { path, text };
    let mut config = ConfigFile {
        path: path.to_owned(),
        ..ConfigFile::default()
    };
    let mapping = match doc.parse(STAR_HINT)? {
        Yaml::Null => return Ok(config),
        Yaml::Mapping(mapping) => mapping,
        other => {
            return Err(doc.error(
                &[],
                format!(
                    "expected keys and values (`data-dir: /var/lib/kagami`), found {}",
                    describe(&other)
                ),
            ));
        }
    };
    for (key, value) in &mapping {
        let Some(written) = yaml::key_text(key) else {
            return Err(doc.error(&[], format!("a key must be text, found {}", describe(key))));
        };
        let at = [Seg::Key(written.clone())];
        let (name, append) = match written.strip_suffix('+') {
            Some(name) => (name, true),
            None => (written.as_str(), false),
        };
        if let Some(flag) = known.iter().find(|flag| flag.name == name) {
            if append && flag.kind != Kind::List {
                return Err(doc.error(
                    &at,
                    format!("only list keys can be appended to; write `{name}:`"),
                ));
            }
            config.entries.push(Entry {
                key: name.to_owned(),
                value: convert(&doc, &at, flag.kind, value)?,
                line: doc.line(&at),
                append,
            });
        } else if is_k3s_key(name) {
            let line = doc.line(&at);
            tracing::debug!(path = %path.display(), line, key = %written, "ignoring a K3s key kagami has no use for");
            config.ignored.push(Ignored { key: written, line });
        } else {
            let message = match closest(name, known.iter().map(|flag| flag.name)) {
                Some(near) => format!("unknown key; did you mean {near:?}?"),
                None => "unknown key: neither a kagami flag nor a K3s key".to_owned(),
            };
            return Err(doc.error(&at, message));
        }
    }
    Ok(config)
}

fn convert(doc: &Doc<'_>, at: &[Seg], kind: Kind, value: &Yaml) -> Result<Value, Error> {
    match (kind, value) {
        (Kind::Bool, Yaml::Bool(b)) => Ok(Value::Bool(*b)),
        (Kind::Bool, other) => Err(doc.error(
            at,
            format!("expected true or false, found {}", describe(other)),
        )),
        (Kind::Scalar, value) => scalar_text(value).map(Value::Scalar).ok_or_else(|| {
            doc.error(
                at,
                format!(
                    "expected one value (text or a number), found {}",
                    describe(value)
                ),
            )
        }),
        (Kind::List, Yaml::Null) => Ok(Value::List(Vec::new())),
        (Kind::List, Yaml::Sequence(items)) => {
            let mut values = Vec::with_capacity(items.len());
            for (index, item) in items.iter().enumerate() {
                let text = scalar_text(item).ok_or_else(|| {
                    let item_at = [at, &[Seg::Index(index)]].concat();
                    doc.error(
                        &item_at,
                        format!(
                            "expected a list of text or numbers, found {} in it",
                            describe(item)
                        ),
                    )
                })?;
                values.push(text);
            }
            Ok(Value::List(values))
        }
        (Kind::List, value) => scalar_text(value)
            .map(|text| Value::List(vec![text]))
            .ok_or_else(|| {
                doc.error(
                    at,
                    format!(
                        "expected a list or a single value, found {}",
                        describe(value)
                    ),
                )
            }),
    }
}

/// A scalar as flag text; `None` for nothing, lists, mappings and tags.
fn scalar_text(value: &Yaml) -> Option<String> {
    match value {
        Yaml::String(s) => Some(s.clone()),
        Yaml::Number(n) => Some(n.to_string()),
        Yaml::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
