//! Routing keys as DHT record keys, the way Spegel makes them: a CIDv1 with
//! the raw codec over the sha2-256 multihash of the key's canonical text.

use kagami_core::Key;
use libp2p::kad::RecordKey;
use sha2::{Digest as _, Sha256};

/// CID version 1 (a varint; one byte below 0x80).
const CID_V1: u8 = 0x01;
/// The multicodec of raw bytes.
const RAW_CODEC: u8 = 0x55;
/// The multihash code of sha2-256.
const SHA2_256: u8 = 0x12;
/// A sha2-256 digest is 32 bytes.
const SHA2_256_LEN: u8 = 32;

/// Length of the binary CID of a key.
pub const CID_LEN: usize = 4 + SHA2_256_LEN as usize;

/// The binary CIDv1 of a routing key: `0x01 0x55 0x12 0x20` followed by
/// sha2-256 of `key.to_string()`. Every node hashes the same canonical text,
/// so they all agree on where a key lives in the DHT.
pub fn cid(key: &Key) -> [u8; CID_LEN] {
    let mut out = [0; CID_LEN];
    out[..4].copy_from_slice(&[CID_V1, RAW_CODEC, SHA2_256, SHA2_256_LEN]);
    out[4..].copy_from_slice(&Sha256::digest(key.to_string().as_bytes()));
    out
}

pub(crate) fn record_key(key: &Key) -> RecordKey {
    RecordKey::new(&cid(key))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    // Expected values computed independently with Python:
    //   bytes([1, 0x55, 0x12, 0x20]) + hashlib.sha256(key.encode()).digest()
    // (in base32 multibase: bafkreifqpqp2… and bafkreiadmtty…, the form
    // Spegel's logs show).
    #[test]
    fn matches_an_independently_computed_cid() {
        let tag: Key = "docker.io/library/nginx:1.25".parse().unwrap();
        assert_eq!(
            hex(&cid(&tag)),
            "01551220b07c1fa29c8dc936d6db6891b04d7647d88ecb270969a682be1b6e033134f8b3"
        );
        let digest: Key = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
            .parse()
            .unwrap();
        assert_eq!(
            hex(&cid(&digest)),
            "015512200364e78be895cef9249b83b20cdb6362cd3c317f55240669624258bc449a86fc"
        );
        assert_eq!(record_key(&digest).as_ref(), &cid(&digest)[..]);
    }
}
