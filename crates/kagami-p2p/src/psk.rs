//! The private network's pre-shared key: reading it in the formats people
//! hand around, generating one, and writing it where only its owner reads.
//! Who creates and distributes the key is cluster trust's business.

use std::fmt;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use libp2p::pnet::PreSharedKey;
use rand::RngCore;

use crate::Error;

/// Length of a libp2p private-network key.
pub const PSK_LEN: usize = 32;

/// First line of the key file format go-libp2p, IPFS and rust-libp2p share.
const KEY_FILE_HEADER: &str = "/key/swarm/psk/1.0.0/";

/// A key file is a few lines; anything larger is not one, and we refuse to
/// read an arbitrary file whole into memory.
const MAX_FILE_LEN: u64 = 4096;

/// The 32-byte key every node of one cluster shares. Nodes with different
/// keys cannot complete a connection. `Debug` shows only a fingerprint.
#[derive(Clone, PartialEq, Eq)]
pub struct Psk([u8; PSK_LEN]);

impl Psk {
    /// A key from its raw bytes.
    pub fn new(bytes: [u8; PSK_LEN]) -> Psk {
        Psk(bytes)
    }

    /// A fresh random key from the operating system's generator.
    pub fn generate() -> Psk {
        let mut bytes = [0; PSK_LEN];
        rand::rng().fill_bytes(&mut bytes);
        Psk(bytes)
    }

    /// Reads a key file holding 32 raw bytes, 64 hex digits, or the
    /// `/key/swarm/psk/1.0.0/` + `/base16/` + hex format (surrounding
    /// whitespace allowed in the text forms).
    pub fn from_file(path: &Path) -> Result<Psk, Error> {
        let read_err = |source| Error::ReadPsk {
            path: path.to_owned(),
            source,
        };
        let invalid = |reason| Error::InvalidPsk {
            path: path.to_owned(),
            reason,
        };
        let len = std::fs::metadata(path).map_err(read_err)?.len();
        if len > MAX_FILE_LEN {
            return Err(invalid("file too large"));
        }
        let bytes = std::fs::read(path).map_err(read_err)?;
        if bytes.len() == PSK_LEN {
            let mut key = [0; PSK_LEN];
            key.copy_from_slice(&bytes);
            return Ok(Psk(key));
        }
        let text = std::str::from_utf8(&bytes).map_err(|_| invalid("not 32 bytes, nor text"))?;
        parse_text(text).map(Psk).map_err(invalid)
    }

    /// Writes the key in the `/key/swarm/psk/1.0.0/` format, readable by
    /// its owner only (mode 0600), replacing the file atomically.
    pub fn write(&self, path: &Path) -> Result<(), Error> {
        let text = PreSharedKey::new(self.0).to_key_file();
        write_private(path, text.as_bytes()).map_err(|source| Error::WritePsk {
            path: path.to_owned(),
            source,
        })
    }

    /// The key's raw bytes.
    pub fn as_bytes(&self) -> &[u8; PSK_LEN] {
        &self.0
    }

    /// A fingerprint safe to log, the same go-libp2p prints.
    pub fn fingerprint(&self) -> String {
        self.pnet().fingerprint().to_string()
    }

    pub(crate) fn pnet(&self) -> PreSharedKey {
        PreSharedKey::new(self.0)
    }
}

impl fmt::Debug for Psk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Psk(fingerprint {})", self.fingerprint())
    }
}

fn parse_text(text: &str) -> Result<[u8; PSK_LEN], &'static str> {
    let text = text.trim();
    let Some(rest) = text.strip_prefix(KEY_FILE_HEADER) else {
        return parse_hex(text);
    };
    let mut lines = rest.lines().map(str::trim).filter(|l| !l.is_empty());
    match (lines.next(), lines.next(), lines.next()) {
        (Some("/base16/"), Some(hex), None) => parse_hex(hex),
        (Some("/base16/"), _, _) => Err("key file must hold one line of hex after /base16/"),
        _ => Err("only the /base16/ encoding of the key file format is supported"),
    }
}

fn parse_hex(hex: &str) -> Result<[u8; PSK_LEN], &'static str> {
    if hex.len() != PSK_LEN * 2 {
        return Err("wrong length");
    }
    let mut key = [0; PSK_LEN];
    for (byte, pair) in key.iter_mut().zip(hex.as_bytes().chunks_exact(2)) {
        let digit = |c: u8| (c as char).to_digit(16).ok_or("not a hex digit");
        *byte = (digit(pair[0])? * 16 + digit(pair[1])?) as u8;
    }
    Ok(key)
}

/// Writes a secret through a temporary file in the same directory (created
/// 0600 before any byte is written), then renames it into place, so a
/// crash never leaves a half-written key behind.
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    const HEX: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    fn expected() -> Psk {
        Psk::new(std::array::from_fn(|i| i as u8))
    }

    fn read(content: &[u8]) -> Result<Psk, Error> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("psk");
        std::fs::write(&path, content).unwrap();
        Psk::from_file(&path)
    }

    #[test]
    fn accepts_raw_hex_and_key_file_formats() {
        let raw: Vec<u8> = (0..32).collect();
        assert_eq!(read(&raw).unwrap(), expected());
        assert_eq!(read(HEX.as_bytes()).unwrap(), expected());
        assert_eq!(
            read(format!("  {}\n", HEX.to_uppercase()).as_bytes()).unwrap(),
            expected()
        );
        let file = format!("/key/swarm/psk/1.0.0/\n/base16/\n{HEX}\n");
        assert_eq!(read(file.as_bytes()).unwrap(), expected());
    }

    #[test]
    fn refuses_other_content_naming_the_file() {
        let multibyte = format!("{}é", &HEX[..62]);
        for bad in [
            &b"short"[..],
            &HEX.as_bytes()[..63],
            b"/key/swarm/psk/1.0.0/\n/base64/\nAAAA\n",
            multibyte.as_bytes(),
            &[0xff; 40][..],
        ] {
            let err = read(bad).unwrap_err();
            assert!(matches!(err, Error::InvalidPsk { .. }), "{bad:?}: {err}");
            assert!(err.to_string().contains("psk"), "{err}");
        }
        let missing = Psk::from_file(Path::new("/nonexistent/kagami/psk")).unwrap_err();
        assert!(matches!(missing, Error::ReadPsk { .. }));
    }

    #[test]
    fn written_keys_read_back_and_are_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/psk");
        let psk = Psk::generate();
        assert_ne!(psk, Psk::generate());
        psk.write(&path).unwrap();
        assert_eq!(Psk::from_file(&path).unwrap(), psk);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let hex: String = psk.as_bytes().iter().map(|b| format!("{b:02x}")).collect();
        let debug = format!("{psk:?}");
        assert!(
            !debug.contains(&hex) && debug.contains(&psk.fingerprint()),
            "{debug}"
        );
    }
}
