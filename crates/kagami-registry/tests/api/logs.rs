//! The request log: one DEBUG line per request, nothing at INFO, and a
//! WARN line with the cause chain for each 5xx.
//!
//! One global subscriber at DEBUG writes each event to a buffer of the
//! thread that logged it. Per-test scoped subscribers would race: tracing
//! caches each callsite's interest process-wide, and a callsite first hit
//! on another test's thread can be cached as uninteresting.

use std::cell::RefCell;
use std::io::Write;
use std::sync::{Arc, Mutex, Once};

use kagami_core::MediaType;

use crate::support::*;

thread_local! {
    static BUFFER: RefCell<Option<Arc<Mutex<Vec<u8>>>>> = const { RefCell::new(None) };
}

struct ThreadWriter;

impl Write for ThreadWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        BUFFER.with(|buffer| {
            if let Some(buffer) = &*buffer.borrow() {
                buffer.lock().unwrap().extend_from_slice(bytes);
            }
        });
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Collects this thread's log lines until dropped. The tests run on
/// tokio's current-thread runtime, so their requests log on this thread.
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Capture {
    fn start() -> Capture {
        static INSTALL: Once = Once::new();
        INSTALL.call_once(|| {
            let subscriber = tracing_subscriber::fmt()
                .with_max_level(tracing::Level::DEBUG)
                .with_ansi(false)
                .with_writer(|| ThreadWriter)
                .finish();
            tracing::subscriber::set_global_default(subscriber).unwrap();
        });
        let buffer = Arc::new(Mutex::new(Vec::new()));
        BUFFER.with(|slot| *slot.borrow_mut() = Some(buffer.clone()));
        Capture(buffer)
    }

    /// The lines logged so far, as (level, line).
    fn lines(&self) -> Vec<(String, String)> {
        let text = String::from_utf8(self.0.lock().unwrap().clone()).unwrap();
        text.lines()
            .map(|line| {
                let level = line.split_whitespace().nth(1).unwrap_or_default();
                (level.to_owned(), line.to_owned())
            })
            .collect()
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        BUFFER.with(|slot| *slot.borrow_mut() = None);
    }
}

#[tokio::test]
async fn each_request_logs_one_debug_line_and_nothing_at_info() {
    let store = MemoryStore::new();
    let digest = store.add_blob(pattern(1000));
    let app = app(&store);

    let capture = Capture::start();
    get(&app, &format!("/v2/a/blobs/{digest}")).await;
    get(&app, "/v2/a/manifests/missing").await;
    let lines = capture.lines();
    assert_eq!(lines.len(), 2, "{lines:#?}");
    assert!(
        lines.iter().all(|(level, _)| level == "DEBUG"),
        "{lines:#?}"
    );
    let (first, second) = (&lines[0].1, &lines[1].1);
    assert!(
        first.contains("status=200") && first.contains("bytes=1000"),
        "{first}"
    );
    assert!(first.contains("method=GET"), "{first}");
    assert!(
        second.contains("status=404") && second.contains("bytes="),
        "{second}"
    );
    assert!(second.contains("/v2/a/manifests/missing"), "{second}");
}

#[tokio::test]
async fn server_errors_are_logged_at_warn_with_their_cause() {
    let store = MemoryStore::new();
    let digest = store.add_manifest(MediaType::OciManifest, manifest_json("x"));
    let app = app(&store);
    store.fail(Some(Fault::Backend));

    let capture = Capture::start();
    assert_eq!(
        get(&app, &format!("/v2/a/manifests/{digest}")).await.status,
        500
    );
    let warnings: Vec<String> = capture
        .lines()
        .into_iter()
        .filter(|(level, _)| level != "DEBUG")
        .map(|(level, line)| {
            assert_eq!(level, "WARN", "{line}");
            line
        })
        .collect();
    assert_eq!(warnings.len(), 1, "{warnings:#?}");
    assert!(
        warnings[0].contains("read the content directory") && warnings[0].contains("disk on fire"),
        "the cause chain is missing: {}",
        warnings[0]
    );
}
