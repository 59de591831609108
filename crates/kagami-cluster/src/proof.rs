//! Proof that a joining node holds the libp2p identity its certificate is
//! to bind. The node signs its certificate signing request with its
//! libp2p key; the server checks the signature and takes the peer ID from
//! that key, never from the request's text. A node can therefore only get
//! a certificate for a peer ID whose key it holds: not another member's.
//!
//! The signature covers the whole request, and with it the TLS key the
//! certificate is for, so a proof seen on the wire is of no use to anyone
//! without that TLS key.

use libp2p_identity::{Keypair, PublicKey};
use serde::{Deserialize, Serialize};

use crate::Error;
use crate::ca::{hex, unhex_vec};

/// What the signature is over, before the request: keeps a signature
/// made for this from being taken for any other.
const CONTEXT: &[u8] = b"kagami-join/1 identity proof\n";

/// A libp2p public key and its signature over a signing request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentityProof {
    /// The public key, in libp2p's protobuf encoding, hex.
    pub public_key: String,
    /// The signature over [`CONTEXT`] and the request's PEM text, hex.
    pub signature: String,
}

impl IdentityProof {
    /// Signs `csr_pem` with the node's libp2p identity.
    pub fn sign(identity: &Keypair, csr_pem: &str) -> Result<IdentityProof, Error> {
        let signature = identity.sign(&message(csr_pem)).map_err(|e| Error::Proof {
            reason: format!("cannot sign with the node's identity: {e}"),
        })?;
        Ok(IdentityProof {
            public_key: hex(&identity.public().encode_protobuf()),
            signature: hex(&signature),
        })
    }

    /// The peer ID whose key signed `csr_pem`, or why the proof fails.
    pub fn verify(&self, csr_pem: &str) -> Result<String, Error> {
        let refuse = |reason: &str| Error::Proof {
            reason: reason.to_owned(),
        };
        let key = unhex_vec(&self.public_key).ok_or_else(|| refuse("the key is not hex"))?;
        let key = PublicKey::try_decode_protobuf(&key)
            .map_err(|_| refuse("the key is not a libp2p public key"))?;
        let signature =
            unhex_vec(&self.signature).ok_or_else(|| refuse("the signature is not hex"))?;
        if !key.verify(&message(csr_pem), &signature) {
            return Err(refuse(
                "the signature does not match the request and the key",
            ));
        }
        Ok(key.to_peer_id().to_string())
    }
}

fn message(csr_pem: &str) -> Vec<u8> {
    [CONTEXT, csr_pem.as_bytes()].concat()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proves_the_signers_peer_id_for_that_request_only() {
        let identity = Keypair::ed25519_from_bytes([1; 32]).unwrap();
        let proof = IdentityProof::sign(&identity, "request A").unwrap();
        assert_eq!(
            proof.verify("request A").unwrap(),
            identity.public().to_peer_id().to_string()
        );
        assert!(proof.verify("request B").is_err());
        let other = Keypair::ed25519_from_bytes([2; 32]).unwrap();
        let forged = IdentityProof {
            public_key: hex(&other.public().encode_protobuf()),
            ..proof.clone()
        };
        assert!(forged.verify("request A").is_err());
        let garbage = IdentityProof {
            public_key: "zz".to_owned(),
            ..proof
        };
        assert!(garbage.verify("request A").is_err());
    }
}
