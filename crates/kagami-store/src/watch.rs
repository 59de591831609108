//! Noticing changes another process makes to the layout (`kagami image
//! import` while `kagami server` runs): `index.json` is polled, and a new
//! version is read, diffed and announced.

use std::sync::Weak;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::MissedTickBehavior;

use crate::layout::Inner;

/// Starts the watcher. It holds only a weak reference, and ends as soon as
/// `stop` is dropped with the last `Layout` clone.
pub(crate) fn spawn(inner: Weak<Inner>, interval: Duration, mut stop: oneshot::Receiver<()>) {
    let interval = interval.max(Duration::from_millis(10));
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        ticker.tick().await; // the first tick is immediate; we just loaded
        let mut last_error: Option<String> = None;
        loop {
            tokio::select! {
                _ = &mut stop => break,
                _ = ticker.tick() => {}
            }
            let Some(inner) = inner.upgrade() else { break };
            match inner.refresh(false).await {
                Ok(()) => last_error = None,
                Err(error) => {
                    // Said once per distinct problem, not once a second.
                    let text = error.to_string();
                    if last_error.as_deref() != Some(text.as_str()) {
                        tracing::warn!(error = %text, root = %inner.paths.root().display(), "cannot re-read the layout; serving what was last read");
                        last_error = Some(text);
                    }
                }
            }
        }
        tracing::debug!("layout watcher stopped");
    });
}
