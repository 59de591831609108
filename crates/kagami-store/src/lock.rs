//! The writers' lock: one import or remove at a time across processes,
//! through an exclusive `flock` on `<root>/.lock`. Readers never take it.

use std::fs::OpenOptions;
use std::io;
use std::time::{Duration, Instant};

use crate::Error;
use crate::paths::Paths;

/// How often a waiting writer tries again.
const RETRY: Duration = Duration::from_millis(50);

/// Runs `work` while holding the lock, waiting at most `timeout` for it.
/// Blocking: call from `spawn_blocking`.
pub(crate) fn with_write_lock<T>(
    paths: &Paths,
    timeout: Duration,
    work: impl FnOnce() -> Result<T, Error>,
) -> Result<T, Error> {
    let path = paths.lock();
    let fail = |source| Error::Lock {
        path: path.clone(),
        source,
    };
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(fail)?;
    let mut lock = fd_lock::RwLock::new(file);
    let started = Instant::now();
    loop {
        match lock.try_write() {
            // The guard lives until `work` returns.
            Ok(_guard) => return work(),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if started.elapsed() >= timeout {
                    return Err(Error::LockTimeout {
                        path,
                        waited: started.elapsed(),
                    });
                }
                std::thread::sleep(RETRY);
            }
            Err(e) => return Err(fail(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_writer_waits_then_gives_up() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths::new(dir.path().to_owned());
        let outcome = with_write_lock(&paths, Duration::from_secs(5), || {
            // A second open of the file is a second lock, even in-process.
            Ok(with_write_lock(&paths, Duration::from_millis(120), || {
                Ok(())
            }))
        })
        .unwrap();
        assert!(
            matches!(outcome, Err(Error::LockTimeout { .. })),
            "{outcome:?}"
        );
        with_write_lock(&paths, Duration::from_millis(10), || Ok(())).unwrap();
    }
}
