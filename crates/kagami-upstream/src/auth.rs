//! Credentials at work: answering a registry's `401` challenge (basic
//! auth, or the bearer-token flow: a token from the challenge's realm, for
//! its service and scope, with the host's credentials or anonymously, or by
//! exchanging an identity token), and remembering each answer per endpoint
//! and repository until the token expires, so a rollout asks once.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;
use tokio::time::Instant;

use crate::challenge::Challenge;
use crate::config::Credentials;

/// How long a token lives when the issuer does not say (the spec's 60 s).
const DEFAULT_TOKEN_LIFE: Duration = Duration::from_secs(60);
/// Longest a token is kept, whatever the issuer says.
const MAX_TOKEN_LIFE: Duration = Duration::from_secs(3600);
/// Largest token response read.
const MAX_TOKEN_RESPONSE: usize = 64 * 1024;
/// Most (endpoint, repository) answers remembered.
const MAX_REMEMBERED: usize = 4096;

/// An `Authorization` value and until when it may be sent.
#[derive(Clone)]
struct Remembered {
    header: String,
    until: Instant,
}

/// The answers given so far.
#[derive(Default)]
pub(crate) struct Authorizations {
    remembered: Mutex<HashMap<(String, String), Remembered>>,
}

/// Why a challenge could not be answered.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AuthError {
    #[error("the registry asks for credentials kagami has none of")]
    NoCredentials,
    #[error("the token endpoint {realm} failed: {reason}")]
    Token { realm: String, reason: String },
}

#[derive(Deserialize)]
struct TokenResponse {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
}

impl Authorizations {
    /// The `Authorization` to send to `authority` for `repository`, if one
    /// is remembered and still valid.
    pub(crate) fn remembered(&self, authority: &str, repository: &str) -> Option<String> {
        let remembered = self.lock();
        let entry = remembered.get(&(authority.to_owned(), repository.to_owned()))?;
        (entry.until > Instant::now()).then(|| entry.header.clone())
    }

    /// Answers `challenge` with `credentials` (asking a token endpoint
    /// with `http` when it is a bearer challenge), remembers the answer
    /// for `authority` and `repository`, and returns the header to send.
    pub(crate) async fn answer(
        &self,
        http: &reqwest::Client,
        challenge: &Challenge,
        credentials: Option<&Credentials>,
        (authority, repository): (&str, &str),
        budget: Duration,
    ) -> Result<String, AuthError> {
        let (header, life) = match challenge {
            Challenge::Basic => match credentials {
                Some(Credentials::Basic { username, password }) => {
                    (basic(username, password), MAX_TOKEN_LIFE)
                }
                _ => return Err(AuthError::NoCredentials),
            },
            Challenge::Bearer {
                realm,
                service,
                scope,
            } => {
                let (token, life) = token(
                    http,
                    realm,
                    service.as_deref(),
                    scope.as_deref(),
                    credentials,
                    budget,
                )
                .await?;
                (format!("Bearer {token}"), life)
            }
        };
        let mut remembered = self.lock();
        if remembered.len() >= MAX_REMEMBERED {
            let now = Instant::now();
            remembered.retain(|_, entry| entry.until > now);
            if remembered.len() >= MAX_REMEMBERED {
                remembered.clear();
            }
        }
        remembered.insert(
            (authority.to_owned(), repository.to_owned()),
            Remembered {
                header: header.clone(),
                // A little before the issuer's end, for clocks and flight.
                until: Instant::now() + life.mul_f32(0.9),
            },
        );
        Ok(header)
    }

    /// Forgets what was remembered for `authority` and `repository` (the
    /// registry refused it).
    pub(crate) fn forget(&self, authority: &str, repository: &str) {
        self.lock()
            .remove(&(authority.to_owned(), repository.to_owned()));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Remembered>> {
        self.remembered
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn basic(username: &str, password: &str) -> String {
    format!(
        "Basic {}",
        STANDARD.encode(format!("{username}:{password}"))
    )
}

/// A token from `realm`, and how long it lives.
async fn token(
    http: &reqwest::Client,
    realm: &str,
    service: Option<&str>,
    scope: Option<&str>,
    credentials: Option<&Credentials>,
    budget: Duration,
) -> Result<(String, Duration), AuthError> {
    let fail = |reason: String| AuthError::Token {
        realm: realm.to_owned(),
        reason,
    };
    let mut url = url::Url::parse(realm).map_err(|e| fail(format!("not a URL: {e}")))?;
    let request = match credentials {
        // OAuth2's refresh-token grant, as docker and containerd use it.
        Some(Credentials::IdentityToken(refresh)) => {
            let mut form = url::form_urlencoded::Serializer::new(String::new());
            form.append_pair("grant_type", "refresh_token")
                .append_pair("client_id", "kagami")
                .append_pair("refresh_token", refresh);
            if let Some(service) = service {
                form.append_pair("service", service);
            }
            if let Some(scope) = scope {
                form.append_pair("scope", scope);
            }
            http.post(url)
                .header(
                    http::header::CONTENT_TYPE,
                    "application/x-www-form-urlencoded",
                )
                .body(form.finish())
        }
        other => {
            {
                let mut query = url.query_pairs_mut();
                if let Some(service) = service {
                    query.append_pair("service", service);
                }
                if let Some(scope) = scope {
                    query.append_pair("scope", scope);
                }
            }
            let request = http.get(url);
            match other {
                Some(Credentials::Basic { username, password }) => {
                    request.header(http::header::AUTHORIZATION, basic(username, password))
                }
                _ => request,
            }
        }
    };
    let response = tokio::time::timeout(budget, request.send())
        .await
        .map_err(|_| fail(format!("no answer within {budget:?}")))?
        .map_err(|e| fail(e.to_string()))?;
    let status = response.status();
    let bytes = tokio::time::timeout(budget, response.bytes())
        .await
        .map_err(|_| fail(format!("no answer within {budget:?}")))?
        .map_err(|e| fail(e.to_string()))?;
    if !status.is_success() {
        return Err(fail(format!("answered {status}")));
    }
    if bytes.len() > MAX_TOKEN_RESPONSE {
        return Err(fail("the answer is too large".to_owned()));
    }
    let parsed: TokenResponse =
        serde_json::from_slice(&bytes).map_err(|e| fail(format!("not a token response: {e}")))?;
    let token = parsed
        .token
        .or(parsed.access_token)
        .filter(|token| !token.is_empty() && token.bytes().all(|b| b.is_ascii_graphic()))
        .ok_or_else(|| fail("the answer holds no usable token".to_owned()))?;
    let life = parsed
        .expires_in
        .map_or(DEFAULT_TOKEN_LIFE, Duration::from_secs)
        .clamp(Duration::from_secs(1), MAX_TOKEN_LIFE);
    Ok((token, life))
}
