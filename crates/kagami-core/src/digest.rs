//! Content digests: `algorithm:hex`, validated on construction.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::{ParseError, excerpt};

/// The hash algorithms the OCI image spec registers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Algorithm {
    /// SHA-256, 64 hex digits; what every registry uses in practice.
    Sha256,
    /// SHA-512, 128 hex digits.
    Sha512,
}

impl Algorithm {
    /// The name used in digests and in image-layout paths (`blobs/<name>/`).
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
        }
    }

    /// How many hex digits a digest of this algorithm has.
    pub fn hex_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 64,
            Algorithm::Sha512 => 128,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A validated content digest such as `sha256:e3b0…b855`.
///
/// Only lowercase hex of the exact length is accepted, so two equal digests
/// are always equal strings and a digest is always safe to use as a path.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Digest {
    algorithm: Algorithm,
    /// The whole `algorithm:hex` text.
    text: String,
}

impl Digest {
    /// Builds a digest from an algorithm and its raw hash output.
    pub fn from_hash(algorithm: Algorithm, hash: &[u8]) -> Digest {
        use fmt::Write;
        let mut text = String::with_capacity(algorithm.as_str().len() + 1 + hash.len() * 2);
        text.push_str(algorithm.as_str());
        text.push(':');
        for byte in hash {
            let _ = write!(text, "{byte:02x}");
        }
        Digest { algorithm, text }
    }

    /// The algorithm part.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The hex part, without the algorithm.
    pub fn hex(&self) -> &str {
        &self.text[self.algorithm.as_str().len() + 1..]
    }

    /// The whole digest as text.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl FromStr for Digest {
    type Err = ParseError;

    fn from_str(input: &str) -> Result<Digest, ParseError> {
        let err = |reason| ParseError::Digest {
            input: excerpt(input),
            reason,
        };
        let (name, hex) = input
            .split_once(':')
            .ok_or_else(|| err("missing ':' between algorithm and hex"))?;
        let algorithm = match name {
            "sha256" => Algorithm::Sha256,
            "sha512" => Algorithm::Sha512,
            _ => return Err(err("unsupported algorithm (sha256 and sha512 are)")),
        };
        if hex.len() != algorithm.hex_len() {
            return Err(err("wrong number of hex digits for the algorithm"));
        }
        if !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(err("hex digits must be 0-9 or lowercase a-f"));
        }
        Ok(Digest {
            algorithm,
            text: input.to_owned(),
        })
    }
}

impl TryFrom<String> for Digest {
    type Error = ParseError;
    fn try_from(value: String) -> Result<Digest, ParseError> {
        value.parse()
    }
}

impl From<Digest> for String {
    fn from(digest: Digest) -> String {
        digest.text
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({})", self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn accepts_sha256_and_sha512() {
        let d: Digest = EMPTY.parse().unwrap();
        assert_eq!(d.algorithm(), Algorithm::Sha256);
        assert_eq!(d.hex().len(), 64);
        assert_eq!(d.to_string(), EMPTY);
        let long = format!("sha512:{}", "ab".repeat(64));
        assert_eq!(
            long.parse::<Digest>().unwrap().algorithm(),
            Algorithm::Sha512
        );
    }

    #[test]
    fn refuses_malformed_digests() {
        for bad in [
            "",
            "sha256",
            "sha256:",
            "sha256:totallywrong",
            &EMPTY.to_uppercase(),
            &format!("{EMPTY}0"),
            &EMPTY[..EMPTY.len() - 1],
            &format!("sha512:{}", "a".repeat(64)),
            &format!("md5:{}", "a".repeat(32)),
            &EMPTY.replace("sha256", "SHA256"),
            &format!("sha256:{}", "g".repeat(64)),
        ] {
            assert!(bad.parse::<Digest>().is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn from_hash_renders_lowercase_hex() {
        let d = Digest::from_hash(Algorithm::Sha256, &[0xAB; 32]);
        assert_eq!(d.hex(), "ab".repeat(32));
        assert_eq!(d.as_str().parse::<Digest>().unwrap(), d);
    }

    #[test]
    fn serde_goes_through_validation() {
        let ok: Digest = serde_json::from_str(&format!("\"{EMPTY}\"")).unwrap();
        assert_eq!(ok.as_str(), EMPTY);
        assert!(serde_json::from_str::<Digest>("\"sha256:nope\"").is_err());
    }
}
