//! Upstream registries for tests (feature `testing`), this crate's and
//! the node's: Debian's `docker-registry` processes on loopback (killed when
//! dropped), in plain HTTP, with TLS and htpasswd basic auth, or with token
//! auth trusting an [`Issuer`] of the test's own; images pushed into them
//! with skopeo, digests kept. Panics, with the registry's log, when
//! something cannot be set up: tests must fail, not skip.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use kagami_core::Registry;
use kagami_store::testing::{BuiltImage, ImageSpec, write_layout};

/// The user the protected registries know.
pub const USER: &str = "tester";
/// Its password.
pub const PASSWORD: &str = "s3cret-pass";
const SERVICE: &str = "kagami-test";
const ISSUER: &str = "kagami-test-issuer";

/// How a registry is protected.
pub enum Protection {
    /// Plain HTTP, no credentials.
    Plain,
    /// TLS with a CA of its own, and htpasswd basic auth.
    BasicTls,
    /// Token auth: tokens from `realm`, signed by a key `bundle` trusts.
    Token {
        /// The token endpoint.
        realm: String,
        /// The CA bundle the registry trusts tokens of.
        bundle: PathBuf,
    },
}

/// A running `docker-registry`.
pub struct Upstream {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
    /// The CA of its certificate, for a TLS registry.
    pub tls_ca: Option<PathBuf>,
    /// Its files.
    pub dir: tempfile::TempDir,
    log: PathBuf,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Upstream {
    /// Starts a registry protected as `protection` on a loopback port.
    pub fn start(protection: Protection) -> Upstream {
        let dir = tempfile::tempdir().unwrap();
        let mut http = "  addr: 127.0.0.1:0\n".to_owned();
        let mut auth = String::new();
        let mut tls_ca = None;
        match &protection {
            Protection::Plain => {}
            Protection::BasicTls => {
                let (ca, cert, key) = tls_files(dir.path());
                http.push_str(&format!(
                    "  tls:\n    certificate: {}\n    key: {}\n",
                    cert.display(),
                    key.display()
                ));
                let hash = bcrypt::hash(PASSWORD, 5).unwrap();
                let htpasswd = dir.path().join("htpasswd");
                std::fs::write(&htpasswd, format!("{USER}:{hash}\n")).unwrap();
                auth = format!(
                    "auth:\n  htpasswd:\n    realm: test\n    path: {}\n",
                    htpasswd.display()
                );
                tls_ca = Some(ca);
            }
            Protection::Token { realm, bundle } => {
                auth = format!(
                    "auth:\n  token:\n    realm: {realm}\n    service: {SERVICE}\n    issuer: {ISSUER}\n    rootcertbundle: {}\n",
                    bundle.display()
                );
            }
        }
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n{http}{auth}",
                dir.path().join("storage").display()
            ),
        )
        .unwrap();
        let log = dir.path().join("registry.log");
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .stdin(Stdio::null())
            .spawn()
            .expect("docker-registry is installed (scripts/install-deps)");
        let deadline = Instant::now() + Duration::from_secs(20);
        let addr = loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if let Some(addr) = text
                .split("listening on ")
                .nth(1)
                .and_then(|rest| rest.split(['"', ',']).next())
                .and_then(|a| a.trim().parse::<SocketAddr>().ok())
            {
                break addr;
            }
            assert!(
                Instant::now() < deadline,
                "docker-registry did not start:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        Upstream {
            child,
            addr,
            tls_ca,
            dir,
            log,
        }
    }

    /// `127.0.0.1:PORT`, the registry's name in image references.
    pub fn registry(&self) -> Registry {
        self.addr.to_string().parse().unwrap()
    }

    /// How many requests of `method` for a path containing `path_part` it
    /// has answered, by its access log; the test's own pushes (skopeo's)
    /// are not counted.
    pub fn requests(&self, method: &str, path_part: &str) -> usize {
        self.log()
            .lines()
            .filter(|line| {
                line.contains(&format!("http.request.method={method}"))
                    && line.contains(path_part)
                    && line.contains("response completed")
                    && !line.contains("http.request.useragent=skopeo/")
            })
            .count()
    }

    /// What the registry has logged (its access log included).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Pushes `spec` (as `repository:1`) with skopeo, with `creds` if given.
    pub fn push(&self, spec: ImageSpec, repository: &str, creds: Option<&str>) -> BuiltImage {
        let layout = self.dir.path().join(format!("layout-{}", spec.seed));
        let image = write_layout(&layout, &[spec]).unwrap().remove(0);
        let mut command = Command::new("skopeo");
        command.args([
            "copy",
            "--quiet",
            "--preserve-digests",
            "--dest-tls-verify=false",
        ]);
        if let Some(creds) = creds {
            command.args(["--dest-creds", creds]);
        }
        let output = command
            .arg(format!("oci:{}:1", layout.display()))
            .arg(format!("docker://{}/{repository}:1", self.addr))
            .output()
            .expect("skopeo is installed (scripts/install-deps)");
        assert!(
            output.status.success(),
            "skopeo push: {}\nregistry:\n{}",
            String::from_utf8_lossy(&output.stderr),
            self.log()
        );
        image
    }
}

/// A CA and a certificate for 127.0.0.1 it signed, as PEM files.
fn tls_files(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    let files = (
        dir.join("ca.pem"),
        dir.join("cert.pem"),
        dir.join("key.pem"),
    );
    std::fs::write(&files.0, ca.pem()).unwrap();
    std::fs::write(&files.1, cert.pem()).unwrap();
    std::fs::write(&files.2, key.serialize_pem()).unwrap();
    files
}

/// A token issuer the registry trusts: JWTs signed with ES256, the signing
/// certificate in `x5c`, its CA in `bundle`. Checks basic credentials when
/// sent (wrong ones get 401) and counts the tokens it issued.
pub struct Issuer {
    /// The token endpoint's URL.
    pub realm: String,
    /// The CA bundle registries must trust.
    pub bundle: PathBuf,
    issued: Arc<AtomicUsize>,
    _dir: tempfile::TempDir,
    _server: tokio::task::JoinHandle<()>,
}

struct Signer {
    key: ring::signature::EcdsaKeyPair,
    cert_der: Vec<u8>,
    issued: Arc<AtomicUsize>,
    /// Answer garbage instead of tokens.
    broken: bool,
}

impl Issuer {
    /// Starts the issuer on a loopback port; a `broken` one answers
    /// garbage instead of tokens.
    pub async fn start(broken: bool) -> Issuer {
        use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .unwrap();
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let leaf_key = rcgen::KeyPair::try_from(pkcs8.as_ref()).unwrap();
        let leaf = rcgen::CertificateParams::new(vec!["token-issuer".to_owned()])
            .unwrap()
            .signed_by(&leaf_key, &issuer)
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let bundle = dir.path().join("bundle.pem");
        std::fs::write(&bundle, ca.pem()).unwrap();
        let issued = Arc::new(AtomicUsize::new(0));
        let signer = Arc::new(Signer {
            key,
            cert_der: leaf.der().to_vec(),
            issued: issued.clone(),
            broken,
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = axum::Router::new()
            .route("/token", axum::routing::get(token).post(refresh))
            .with_state(signer);
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Issuer {
            realm: format!("http://{addr}/token"),
            bundle,
            issued,
            _dir: dir,
            _server: server,
        }
    }

    /// Tokens issued so far.
    pub fn issued(&self) -> usize {
        self.issued.load(Ordering::SeqCst)
    }
}

/// The identity token the issuer accepts in a refresh-token grant.
pub const IDENTITY_TOKEN: &str = "refresh-me";

/// OAuth2's refresh-token grant: an access token for a known identity
/// token.
async fn refresh(
    axum::extract::State(signer): axum::extract::State<Arc<Signer>>,
    axum::extract::Form(form): axum::extract::Form<std::collections::HashMap<String, String>>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let granted = form.get("grant_type").map(String::as_str) == Some("refresh_token")
        && form.get("refresh_token").map(String::as_str) == Some(IDENTITY_TOKEN);
    if !granted {
        return http::StatusCode::UNAUTHORIZED.into_response();
    }
    let jwt = sign(&signer, USER, form.get("scope"));
    axum::Json(serde_json::json!({ "access_token": jwt, "expires_in": 300 })).into_response()
}

async fn token(
    axum::extract::State(signer): axum::extract::State<Arc<Signer>>,
    headers: http::HeaderMap,
    axum::extract::Query(query): axum::extract::Query<std::collections::HashMap<String, String>>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    if signer.broken {
        return (http::StatusCode::OK, "this is not JSON").into_response();
    }
    let user = match headers.get(http::header::AUTHORIZATION) {
        Some(value) => {
            let expected = format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"))
            );
            if value.to_str().ok() != Some(expected.as_str()) {
                return http::StatusCode::UNAUTHORIZED.into_response();
            }
            USER
        }
        None => "",
    };
    let jwt = sign(&signer, user, query.get("scope"));
    axum::Json(serde_json::json!({ "token": jwt, "expires_in": 300 })).into_response()
}

/// A JWT for `user` granting what `scope` asks.
fn sign(signer: &Signer, user: &str, scope: Option<&String>) -> String {
    let access: Vec<serde_json::Value> = scope
        .map(|scope| {
            scope
                .split(' ')
                .filter_map(|one| {
                    let mut parts = one.split(':');
                    let (kind, name, actions) = (parts.next()?, parts.next()?, parts.next()?);
                    Some(serde_json::json!({
                        "type": kind,
                        "name": name,
                        "actions": actions.split(',').collect::<Vec<_>>(),
                    }))
                })
                .collect()
        })
        .unwrap_or_default();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let header = serde_json::json!({
        "typ": "JWT",
        "alg": "ES256",
        "x5c": [base64::engine::general_purpose::STANDARD.encode(&signer.cert_der)],
    });
    let claims = serde_json::json!({
        "iss": ISSUER,
        "sub": user,
        "aud": SERVICE,
        "exp": now + 300,
        "nbf": now - 10,
        "iat": now,
        "jti": format!("{now}-{}", signer.issued.load(Ordering::SeqCst)),
        "access": access,
    });
    let signing_input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let rng = ring::rand::SystemRandom::new();
    let signature = signer.key.sign(&rng, signing_input.as_bytes()).unwrap();
    signer.issued.fetch_add(1, Ordering::SeqCst);
    format!("{signing_input}.{}", b64(signature.as_ref()))
}
