//! The node's libp2p identity: an ed25519 key kept in a file, so that the
//! peer ID (and with it every provider record the node published) survives
//! a restart.

use std::path::Path;

use libp2p::identity::Keypair;

use crate::Error;
use crate::psk::write_private;

/// A protobuf-encoded ed25519 keypair is 68 bytes; allow slack, refuse junk.
const MAX_FILE_LEN: u64 = 1024;

/// Loads the key in `path`, or creates a new ed25519 key there (mode 0600,
/// parent directories created) when the file does not exist. The file holds
/// libp2p's protobuf encoding of the private key, as go-libp2p (and so
/// Spegel) stores it.
pub fn load_or_create(path: &Path) -> Result<Keypair, Error> {
    match std::fs::metadata(path) {
        Ok(meta) => {
            if meta.len() > MAX_FILE_LEN {
                return Err(invalid(path, "file too large".to_owned()));
            }
            load(path)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => create(path),
        Err(source) => Err(Error::ReadIdentity {
            path: path.to_owned(),
            source,
        }),
    }
}

fn load(path: &Path) -> Result<Keypair, Error> {
    let bytes = std::fs::read(path).map_err(|source| Error::ReadIdentity {
        path: path.to_owned(),
        source,
    })?;
    let keypair =
        Keypair::from_protobuf_encoding(&bytes).map_err(|e| invalid(path, e.to_string()))?;
    if keypair.clone().try_into_ed25519().is_err() {
        return Err(invalid(
            path,
            format!("a {} key, not ed25519", keypair.key_type()),
        ));
    }
    Ok(keypair)
}

fn create(path: &Path) -> Result<Keypair, Error> {
    let keypair = Keypair::generate_ed25519();
    let bytes = keypair
        .to_protobuf_encoding()
        .map_err(|e| invalid(path, e.to_string()))?;
    write_private(path, &bytes).map_err(|source| Error::WriteIdentity {
        path: path.to_owned(),
        source,
    })?;
    tracing::info!(path = %path.display(), peer = %keypair.public().to_peer_id(), "created node identity");
    Ok(keypair)
}

fn invalid(path: &Path, reason: String) -> Error {
    Error::InvalidIdentity {
        path: path.to_owned(),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn the_peer_id_survives_reloading() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data/identity.key");
        let first = load_or_create(&path).unwrap().public().to_peer_id();
        let again = load_or_create(&path).unwrap().public().to_peer_id();
        assert_eq!(first, again);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let other = load_or_create(&dir.path().join("other.key")).unwrap();
        assert_ne!(other.public().to_peer_id(), first);
    }

    #[test]
    fn a_corrupt_key_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("identity.key");
        std::fs::write(&path, b"not a key").unwrap();
        let err = load_or_create(&path).unwrap_err();
        assert!(matches!(err, Error::InvalidIdentity { .. }), "{err}");
        assert!(err.to_string().contains("identity.key"), "{err}");
        // The broken file is left for the operator to look at.
        assert_eq!(std::fs::read(&path).unwrap(), b"not a key");
    }
}
