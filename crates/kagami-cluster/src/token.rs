//! Join tokens, in the shape of K3s's secure tokens:
//! `K10<sha256 of the CA certificate, hex>::<user>:<secret>`. The hash lets
//! a joining node check the server's CA before it trusts anything the
//! server says; the secret is what the server checks before it hands out
//! certificates and the PSK. As in K3s there are two: the agent token
//! (user `node`) admits agents only; the server token (user `server`)
//! also lets a node join as a server and receive the CA key.

use std::fmt;
use std::str::FromStr;

use sha2::{Digest as _, Sha256};

use crate::Error;
use crate::ca::{hex, unhex};

const PREFIX: &str = "K10";

/// What a token lets a node join as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// An agent: a node certificate, the CA certificate and the PSK.
    Agent,
    /// A server: all of that, and the CA key.
    Server,
}

impl Role {
    fn user(self) -> &'static str {
        match self {
            Role::Agent => "node",
            Role::Server => "server",
        }
    }
}

/// A parsed join token.
#[derive(Clone, PartialEq, Eq)]
pub struct Token {
    ca_fingerprint: [u8; 32],
    role: Role,
    secret: String,
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token")
            .field("ca_fingerprint", &hex(&self.ca_fingerprint))
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

impl Token {
    /// A new agent token for the CA with this fingerprint, with a random
    /// secret.
    pub fn generate(ca_fingerprint: [u8; 32]) -> Token {
        let secret: [u8; 24] = rand::random();
        Token::new(ca_fingerprint, Role::Agent, hex(&secret))
    }

    pub(crate) fn new(ca_fingerprint: [u8; 32], role: Role, secret: String) -> Token {
        Token {
            ca_fingerprint,
            role,
            secret,
        }
    }

    /// What the token lets a node join as.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The sha256 of the CA certificate the token pins.
    pub fn ca_fingerprint(&self) -> [u8; 32] {
        self.ca_fingerprint
    }

    /// The secret part, as sent to the server.
    pub fn secret(&self) -> &str {
        &self.secret
    }

    /// Whether `presented` is this token's secret, compared in time that
    /// does not depend on where they differ.
    pub fn accepts(&self, presented: &str) -> bool {
        let a = Sha256::digest(self.secret.as_bytes());
        let b = Sha256::digest(presented.as_bytes());
        a.iter()
            .zip(b.iter())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
    }
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{PREFIX}{}::{}:{}",
            hex(&self.ca_fingerprint),
            self.role.user(),
            self.secret
        )
    }
}

impl FromStr for Token {
    type Err = Error;

    fn from_str(text: &str) -> Result<Token, Error> {
        let invalid = |reason| Error::Token { reason };
        let text = text.trim();
        let rest = text
            .strip_prefix(PREFIX)
            .ok_or(invalid("it does not start with K10 (the CA hash)"))?;
        let (hash, credentials) = rest
            .split_once("::")
            .ok_or(invalid("no `::` after the CA hash"))?;
        let ca_fingerprint =
            unhex::<32>(hash).ok_or(invalid("the CA hash is not 64 hex digits"))?;
        let (user, secret) = credentials
            .split_once(':')
            .ok_or(invalid("no `user:secret` after `::`"))?;
        let role = match user {
            "node" => Role::Agent,
            "server" => Role::Server,
            _ => {
                return Err(invalid(
                    "the user before the secret is neither `node` nor `server`",
                ));
            }
        };
        if secret.is_empty() || !secret.chars().all(|c| c.is_ascii_graphic()) {
            return Err(invalid("the secret is empty or not printable ASCII"));
        }
        Ok(Token {
            ca_fingerprint,
            role,
            secret: secret.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_pins_the_ca() {
        let token = Token::generate([7; 32]);
        let text = token.to_string();
        assert!(text.starts_with(&format!("K10{}::node:", "07".repeat(32))));
        let parsed: Token = text.parse().unwrap();
        assert_eq!(parsed, token);
        assert!(parsed.accepts(token.secret()));
        assert!(!parsed.accepts("wrong"));
        assert_eq!(parsed.role(), Role::Agent);
        let server: Token = format!("K10{}::server:s3cret", "07".repeat(32))
            .parse()
            .unwrap();
        assert_eq!(server.role(), Role::Server);
        assert_eq!(server.to_string().parse::<Token>().unwrap(), server);
    }

    #[test]
    fn rejects_what_is_not_a_token() {
        for bad in [
            "",
            "secret",
            "K10abc::node:x",
            &format!("K10{}", "0".repeat(64)),
            &format!("K10{}::node:", "0".repeat(64)),
            &format!("K10{}::nocolon", "0".repeat(64)),
            &format!("K10{}::node:a b", "g".repeat(64)),
            &format!("K10{}::admin:secret", "0".repeat(64)),
        ] {
            assert!(bad.parse::<Token>().is_err(), "{bad:?}");
        }
    }
}
