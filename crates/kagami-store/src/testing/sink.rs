//! Where fixture files go: into a tar (optionally compressed) or into a
//! directory. Either way each file is streamed from its reader.

use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use super::Compression;

/// A destination for fixture files.
pub(crate) trait Sink {
    /// Adds a file of `len` bytes read from `data`.
    fn file(&mut self, path: &str, len: u64, data: &mut dyn Read) -> io::Result<()>;
    /// Adds a symbolic link.
    fn symlink(&mut self, path: &str, target: &str) -> io::Result<()>;

    /// Adds a small file held in memory.
    fn bytes(&mut self, path: &str, bytes: &[u8]) -> io::Result<()> {
        self.file(path, bytes.len() as u64, &mut &bytes[..])
    }
}

/// The compressed (or not) output file of an archive.
enum Encoder {
    Plain(BufWriter<File>),
    Gzip(flate2::write::GzEncoder<BufWriter<File>>),
    Zstd(zstd::Encoder<'static, BufWriter<File>>),
}

impl Write for Encoder {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Encoder::Plain(w) => w.write(buf),
            Encoder::Gzip(w) => w.write(buf),
            Encoder::Zstd(w) => w.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Encoder::Plain(w) => w.flush(),
            Encoder::Gzip(w) => w.flush(),
            Encoder::Zstd(w) => w.flush(),
        }
    }
}

/// A tar archive being written.
pub(crate) struct TarSink {
    builder: tar::Builder<Encoder>,
}

impl TarSink {
    pub(crate) fn create(path: &Path, compression: Compression) -> io::Result<TarSink> {
        let file = BufWriter::with_capacity(256 * 1024, File::create(path)?);
        let encoder = match compression {
            Compression::None => Encoder::Plain(file),
            Compression::Gzip => Encoder::Gzip(flate2::write::GzEncoder::new(
                file,
                flate2::Compression::fast(),
            )),
            Compression::Zstd => Encoder::Zstd(zstd::Encoder::new(file, 1)?),
        };
        Ok(TarSink {
            builder: tar::Builder::new(encoder),
        })
    }

    /// Writes the tar trailer, ends the compressed stream, and syncs.
    pub(crate) fn finish(self) -> io::Result<()> {
        let file = match self.builder.into_inner()? {
            Encoder::Plain(w) => w,
            Encoder::Gzip(w) => w.finish()?,
            Encoder::Zstd(w) => w.finish()?,
        };
        file.into_inner().map_err(|e| e.into_error())?.sync_all()
    }

    fn header(kind: tar::EntryType, len: u64) -> tar::Header {
        let mut header = tar::Header::new_ustar();
        header.set_entry_type(kind);
        header.set_size(len);
        header.set_mode(0o644);
        header.set_mtime(0);
        header.set_uid(0);
        header.set_gid(0);
        header
    }
}

impl Sink for TarSink {
    fn file(&mut self, path: &str, len: u64, data: &mut dyn Read) -> io::Result<()> {
        let mut header = TarSink::header(tar::EntryType::Regular, len);
        self.builder.append_data(&mut header, path, data.take(len))
    }

    fn symlink(&mut self, path: &str, target: &str) -> io::Result<()> {
        let mut header = TarSink::header(tar::EntryType::Symlink, 0);
        self.builder.append_link(&mut header, path, target)
    }
}

/// A directory being filled.
pub(crate) struct DirSink {
    pub root: PathBuf,
}

impl Sink for DirSink {
    fn file(&mut self, path: &str, len: u64, data: &mut dyn Read) -> io::Result<()> {
        let target = self.root.join(path);
        if let Some(parent) = target.parent() {
            fs::create_dir_all(parent)?;
        }
        let mut file = BufWriter::with_capacity(256 * 1024, File::create(&target)?);
        let copied = io::copy(&mut data.take(len), &mut file)?;
        if copied != len {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{path}: {copied} of {len} bytes"),
            ));
        }
        file.flush()
    }

    fn symlink(&mut self, path: &str, target: &str) -> io::Result<()> {
        let link = self.root.join(path);
        if let Some(parent) = link.parent() {
            fs::create_dir_all(parent)?;
        }
        std::os::unix::fs::symlink(target, link)
    }
}
