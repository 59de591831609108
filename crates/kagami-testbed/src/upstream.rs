//! Upstream registries: Debian's `docker-registry` (CNCF distribution) on a
//! host of the bed, in plain HTTP, or with TLS and htpasswd basic auth;
//! images pushed into it with skopeo from the same host, digests kept.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::Error;
use crate::netns::Link;
use crate::process::{Proc, in_ns, run};

/// The port every upstream listens on.
pub const PORT: u16 = 5000;
/// The basic-auth user of the TLS upstream, and its password.
pub const CREDENTIALS: (&str, &str) = ("bed", "bed-password");
/// How long a registry may take to start.
const START: Duration = Duration::from_secs(30);

/// How an upstream is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `http://`, no credentials.
    Plain,
    /// `https://` with a certificate of its own CA, and basic auth.
    TlsBasicAuth,
}

/// A running upstream registry.
#[derive(Debug)]
pub struct Upstream {
    /// Where it runs.
    pub link: Link,
    /// How it is reached.
    pub kind: Kind,
    /// The CA that signed its certificate (TLS only), PEM file.
    pub ca_file: Option<PathBuf>,
    process: Proc,
}

impl Upstream {
    /// Starts a registry of `kind` on `link`, its files in `dir`.
    pub fn start(link: Link, kind: Kind, dir: &Path) -> Result<Upstream, Error> {
        std::fs::create_dir_all(dir).map_err(Error::io(dir))?;
        let storage = dir.join("storage");
        let mut http = format!("  addr: 0.0.0.0:{PORT}\n");
        let mut auth = String::new();
        let mut ca_file = None;
        if kind == Kind::TlsBasicAuth {
            let (ca, cert, key) = tls_files(dir, link.addr)?;
            http.push_str(&format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                cert.display(),
                key.display()
            ));
            let htpasswd = dir.join("htpasswd");
            let hash = bcrypt::hash(CREDENTIALS.1, 5)
                .map_err(|e| Error::Check(format!("cannot hash the password: {e}")))?;
            write(&htpasswd, &format!("{}:{hash}\n", CREDENTIALS.0))?;
            auth = format!(
                "auth:\n  htpasswd:\n    realm: kagami-bed\n    path: {}\n",
                htpasswd.display()
            );
            ca_file = Some(ca);
        }
        let config = dir.join("config.yml");
        write(
            &config,
            &format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n{http}{auth}",
                storage.display()
            ),
        )?;
        let mut command = in_ns(&link.ns, "docker-registry");
        command.args(["serve"]).arg(&config);
        let process = Proc::spawn("docker-registry", command, &dir.join("registry.log"))?;
        let mut upstream = Upstream {
            link,
            kind,
            ca_file,
            process,
        };
        upstream.wait_ready()?;
        Ok(upstream)
    }

    /// `host:port` as image names write it.
    pub fn host(&self) -> String {
        format!("{}:{PORT}", self.link.addr)
    }

    /// The URL containerd or kagami reach it at.
    pub fn url(&self) -> String {
        let scheme = match self.kind {
            Kind::Plain => "http",
            Kind::TlsBasicAuth => "https",
        };
        format!("{scheme}://{}", self.host())
    }

    fn curl(&self, path: &str) -> std::process::Command {
        let mut command = in_ns(&self.link.ns, "curl");
        command.args(["--silent", "--show-error", "--max-time", "5", "--insecure"]);
        if self.kind == Kind::TlsBasicAuth {
            command.args(["--user", &format!("{}:{}", CREDENTIALS.0, CREDENTIALS.1)]);
        }
        let scheme = if self.kind == Kind::Plain {
            "http"
        } else {
            "https"
        };
        command.arg(format!("{scheme}://127.0.0.1:{PORT}{path}"));
        command
    }

    fn wait_ready(&mut self) -> Result<(), Error> {
        let deadline = std::time::Instant::now() + START;
        loop {
            if run(self.curl("/v2/").arg("--fail")).is_ok() {
                return Ok(());
            }
            if std::time::Instant::now() > deadline {
                return Err(Error::Timeout {
                    what: "docker-registry to serve".to_owned(),
                    detail: self.process.log(),
                });
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Pushes the image of the OCI layout `layout` tagged `tag` as
    /// `repository:tag`, digests kept as they are.
    pub fn push(&self, layout: &Path, tag: &str, repository: &str) -> Result<(), Error> {
        let mut command = in_ns(&self.link.ns, "skopeo");
        command.args([
            "copy",
            "--quiet",
            "--preserve-digests",
            "--dest-tls-verify=false",
        ]);
        if self.kind == Kind::TlsBasicAuth {
            command.args([
                "--dest-creds",
                &format!("{}:{}", CREDENTIALS.0, CREDENTIALS.1),
            ]);
        }
        command
            .arg(format!("oci:{}:{tag}", layout.display()))
            .arg(format!("docker://127.0.0.1:{PORT}/{repository}:{tag}"));
        run(&mut command).map(drop)
    }

    /// The HTTP status the registry answers `/v2/` with when asked without
    /// credentials (from its own host).
    pub fn anonymous_status(&self) -> Result<u16, Error> {
        let scheme = if self.kind == Kind::Plain {
            "http"
        } else {
            "https"
        };
        let mut command = in_ns(&self.link.ns, "curl");
        command
            .args([
                "--silent",
                "--insecure",
                "--max-time",
                "5",
                "--output",
                "/dev/null",
            ])
            .args(["--write-out", "%{http_code}"])
            .arg(format!("{scheme}://127.0.0.1:{PORT}/v2/"));
        let code = run(&mut command)?;
        code.trim()
            .parse()
            .map_err(|_| Error::Check(format!("curl printed {code:?}, not a status")))
    }

    /// The registry's own log.
    pub fn log(&self) -> String {
        self.process.log()
    }
}

fn write(path: &Path, text: &str) -> Result<(), Error> {
    std::fs::write(path, text).map_err(Error::io(path))
}

/// A CA and a certificate for `addr` signed by it, as PEM files in `dir`.
fn tls_files(dir: &Path, addr: Ipv4Addr) -> Result<(PathBuf, PathBuf, PathBuf), Error> {
    let pki = |e: rcgen::Error| Error::Check(format!("cannot make the upstream's TLS files: {e}"));
    let ca_key = rcgen::KeyPair::generate().map_err(pki)?;
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(pki)?;
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).map_err(pki)?;
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = rcgen::KeyPair::generate().map_err(pki)?;
    let params = rcgen::CertificateParams::new(vec![addr.to_string(), "127.0.0.1".to_owned()])
        .map_err(pki)?;
    let cert = params.signed_by(&key, &issuer).map_err(pki)?;
    let files = (
        dir.join("ca.pem"),
        dir.join("cert.pem"),
        dir.join("key.pem"),
    );
    write(&files.0, &ca.pem())?;
    write(&files.1, &cert.pem())?;
    write(&files.2, &key.serialize_pem())?;
    Ok(files)
}
