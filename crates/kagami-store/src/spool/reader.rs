//! A reader of one entry: the bytes of its range that are in the file now,
//! then, while the entry arrives, more as the writer reports them; never
//! the entry's last byte before the writer has matched the digest.

use std::fs::File;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use bytes::Bytes;
use kagami_core::store::BlobStream;
use tokio::sync::watch;

use super::ReadGuard;
use super::entries::{Progress, Written};

/// Bytes read per step.
const CHUNK: u64 = 256 * 1024;

struct Reading {
    file: Arc<File>,
    at: u64,
    end: u64,
    size: u64,
    progress: Option<watch::Receiver<Written>>,
    _guard: ReadGuard,
}

/// A stream of `range` of an entry of `size` bytes in `file`, following
/// `progress` while it arrives.
pub(super) fn stream(
    file: File,
    range: Range<u64>,
    size: u64,
    progress: Option<Progress>,
    guard: ReadGuard,
) -> BlobStream {
    let reading = Reading {
        file: Arc::new(file),
        at: range.start,
        end: range.end,
        size,
        progress: progress.map(|p| p.subscribe()),
        _guard: guard,
    };
    Box::pin(futures::stream::unfold(
        Some(reading),
        |reading| async move {
            let mut reading = reading?;
            loop {
                if reading.at >= reading.end {
                    return None;
                }
                let readable = match &reading.progress {
                    None => reading.size,
                    Some(progress) => match &*progress.borrow() {
                        // The last byte waits for the digest.
                        Written::Bytes(n) => (*n).min(reading.size.saturating_sub(1)),
                        Written::Done => reading.size,
                        Written::Failed(reason) => {
                            let error =
                                std::io::Error::other(format!("the fetch failed: {reason}"));
                            return Some((Err(error), None));
                        }
                    },
                };
                let until = readable.min(reading.end);
                if reading.at < until {
                    let len = (until - reading.at).min(CHUNK);
                    let (file, at) = (reading.file.clone(), reading.at);
                    let read = tokio::task::spawn_blocking(move || read_at(&file, at, len)).await;
                    let bytes = match read {
                        Ok(Ok(bytes)) => bytes,
                        Ok(Err(error)) => return Some((Err(error), None)),
                        Err(error) => return Some((Err(std::io::Error::other(error)), None)),
                    };
                    reading.at += bytes.len() as u64;
                    return Some((Ok(bytes), Some(reading)));
                }
                let Some(progress) = reading.progress.as_mut() else {
                    let error = std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "the kept file is shorter than its entry",
                    );
                    return Some((Err(error), None));
                };
                if progress.changed().await.is_err() {
                    let error = std::io::Error::other("the fetch stopped");
                    return Some((Err(error), None));
                }
            }
        },
    ))
}

/// `len` bytes of `file` from `at`; fewer only at its end.
fn read_at(file: &File, at: u64, len: u64) -> std::io::Result<Bytes> {
    let mut buffer = vec![0; usize::try_from(len).unwrap_or(0)];
    let mut filled = 0;
    while filled < buffer.len() {
        match file.read_at(&mut buffer[filled..], at + filled as u64) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    if filled == 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "the file ended before its recorded size",
        ));
    }
    buffer.truncate(filled);
    Ok(Bytes::from(buffer))
}
