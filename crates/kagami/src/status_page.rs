//! `GET /` of the metrics address: a page for people on the node, rendered
//! on the server as plain HTML with its style inline and no script, font
//! or image from anywhere (air-gapped clusters have no internet to load
//! them from). It shows who the node is, its peers, the images it holds,
//! its latest pulls and where their bytes came from, and its latest
//! errors; it refreshes itself every 10 seconds.

use std::fmt::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::extract::State;
use axum::response::Html;
use axum::routing::get;
use kagami_core::store::Store;
use kagami_registry::{Outcome, RequestStats};

use crate::p2p::P2p;

/// What the page is made from: the node's live sources.
#[derive(Clone)]
pub(crate) struct Page {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) p2p: Option<P2p>,
    pub(crate) requests: RequestStats,
    pub(crate) registry_addr: SocketAddr,
    /// The host names of the node's certificate, with cluster trust.
    pub(crate) names: Option<Vec<String>>,
    pub(crate) secure: bool,
    pub(crate) started: SystemTime,
}

/// Images listed at most; a node holding more says how many it left out.
const MAX_IMAGES: usize = 200;

pub(crate) fn routes(page: Page) -> axum::Router {
    axum::Router::new()
        .route("/", get(render))
        .with_state(Arc::new(page))
}

const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}\
h1{font-size:1.4em;margin:0 0 .2em}h2{font-size:1.1em;margin:1.4em 0 .4em}\
table{border-collapse:collapse}td,th{padding:.2em .8em .2em 0;text-align:left;vertical-align:top}\
th{border-bottom:1px solid #999}td.n{text-align:right}code{font-size:.95em}\
.muted{color:#777}.bad{color:#a00}dl{display:grid;grid-template-columns:max-content auto;gap:.1em 1em}\
dt{font-weight:600}dd{margin:0}";

async fn render(State(page): State<Arc<Page>>) -> Html<String> {
    let mut html = String::with_capacity(16 * 1024);
    let _ = write_page(&mut html, &page).await;
    Html(html)
}

async fn write_page(out: &mut String, page: &Page) -> std::fmt::Result {
    write!(
        out,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"refresh\" content=\"10\">\
         <title>kagami node</title><style>{STYLE}</style></head><body>"
    )?;
    write!(out, "<h1>kagami {}</h1>", escape(env!("CARGO_PKG_VERSION")))?;
    identity(out, page)?;
    peers(out, page).await?;
    ratio(out, page)?;
    pulls(out, page)?;
    images(out, page).await?;
    failures(out, page)?;
    out.push_str("</body></html>");
    Ok(())
}

fn identity(out: &mut String, page: &Page) -> std::fmt::Result {
    out.push_str("<section id=\"node\"><h2>Node</h2><dl>");
    if let Some(p2p) = &page.p2p {
        write!(
            out,
            "<dt>Peer ID</dt><dd id=\"peer-id\"><code>{}</code></dd>",
            escape(&p2p.peer_id().to_string())
        )?;
    }
    if let Some(names) = &page.names {
        write!(out, "<dt>Names</dt><dd>{}</dd>", escape(&names.join(", ")))?;
    }
    let scheme = if page.secure {
        "https, client certificates required"
    } else {
        "plain http (insecure)"
    };
    write!(
        out,
        "<dt>Registry API</dt><dd><code>{}</code> ({scheme})</dd>",
        page.registry_addr
    )?;
    match &page.p2p {
        Some(p2p) => {
            let addrs: Vec<String> = p2p.listen_addrs().iter().map(ToString::to_string).collect();
            write!(
                out,
                "<dt>P2P addresses</dt><dd><code>{}</code></dd>",
                escape(&addrs.join(" "))
            )?;
        }
        None => out.push_str("<dt>P2P</dt><dd>off: serving this node's own images only</dd>"),
    }
    let up = page.started.elapsed().unwrap_or_default();
    write!(
        out,
        "<dt>Up for</dt><dd>{}</dd></dl></section>",
        humantime::format_duration(Duration::from_secs(up.as_secs()))
    )
}

async fn peers(out: &mut String, page: &Page) -> std::fmt::Result {
    let Some(p2p) = &page.p2p else {
        return Ok(());
    };
    let table = p2p.router().routing_table().await;
    write!(
        out,
        "<section id=\"peers\"><h2>Peers ({})</h2>",
        table.len()
    )?;
    if table.is_empty() {
        out.push_str("<p class=\"muted\">No peers yet.</p></section>");
        return Ok(());
    }
    out.push_str("<table><tr><th>Peer ID</th><th>Addresses</th></tr>");
    for (id, addrs) in table {
        let addrs: Vec<String> = addrs.iter().map(ToString::to_string).collect();
        write!(
            out,
            "<tr><td><code>{}</code></td><td><code>{}</code></td></tr>",
            escape(&id.to_string()),
            escape(&addrs.join(" "))
        )?;
    }
    out.push_str("</table></section>");
    Ok(())
}

fn ratio(out: &mut String, page: &Page) -> std::fmt::Result {
    let mut by = [0u64; 4];
    for (_, _, outcome, n) in page.requests.requests() {
        by[outcome as usize] += n;
    }
    let total: u64 = by.iter().sum();
    out.push_str("<section id=\"hits\"><h2>Requests</h2>");
    if total == 0 {
        out.push_str("<p class=\"muted\">No manifest or blob requests yet.</p></section>");
        return Ok(());
    }
    let served = total - by[Outcome::Miss as usize];
    write!(
        out,
        "<p>Hit ratio <strong id=\"hit-ratio\">{:.1}%</strong> ({served} of {total} answered)</p>\
         <table><tr><th>Source</th><th>Requests</th></tr>",
        percent(served, total)
    )?;
    for outcome in Outcome::ALL {
        write!(
            out,
            "<tr><td>{}</td><td class=\"n\">{}</td></tr>",
            outcome.as_str(),
            by[outcome as usize]
        )?;
    }
    out.push_str("</table></section>");
    Ok(())
}

fn pulls(out: &mut String, page: &Page) -> std::fmt::Result {
    let pulls = page.requests.recent_pulls();
    out.push_str("<section id=\"pulls\"><h2>Recent pulls</h2>");
    if pulls.is_empty() {
        out.push_str("<p class=\"muted\">None yet.</p></section>");
        return Ok(());
    }
    out.push_str(
        "<table><tr><th>When</th><th>Reference</th><th>Kind</th><th>From</th>\
         <th>Size</th><th>Speed</th></tr>",
    );
    for pull in pulls {
        let seconds = pull.took.as_secs_f64();
        let speed = if seconds > 0.0 && pull.bytes > 0 {
            format!("{}/s", size(pull.bytes as f64 / seconds))
        } else {
            "–".to_owned()
        };
        write!(
            out,
            "<tr><td>{}</td><td><code>{}</code></td><td>{}</td><td>{}</td>\
             <td class=\"n\">{}</td><td class=\"n\">{speed}</td></tr>",
            ago(pull.at),
            escape(&pull.reference),
            pull.kind.as_str(),
            pull.outcome.as_str(),
            size(pull.bytes as f64),
        )?;
    }
    out.push_str("</table></section>");
    Ok(())
}

async fn images(out: &mut String, page: &Page) -> std::fmt::Result {
    out.push_str("<section id=\"images\"><h2>Images held</h2>");
    let listed = tokio::time::timeout(Duration::from_secs(5), page.store.list_images()).await;
    let mut images = match listed {
        Ok(Ok(images)) => images,
        Ok(Err(error)) => {
            write!(
                out,
                "<p class=\"bad\">Cannot list the images: {}</p></section>",
                escape(&error.to_string())
            )?;
            return Ok(());
        }
        Err(_) => {
            out.push_str(
                "<p class=\"bad\">The store did not list its images in time.</p></section>",
            );
            return Ok(());
        }
    };
    if images.is_empty() {
        out.push_str("<p class=\"muted\">None.</p></section>");
        return Ok(());
    }
    images.sort_by_key(|image| image.reference.to_string());
    let total = images.len();
    out.push_str("<table><tr><th>Reference</th><th>Digest</th></tr>");
    for image in images.into_iter().take(MAX_IMAGES) {
        write!(
            out,
            "<tr><td><code>{}</code></td><td><code>{}</code></td></tr>",
            escape(&image.reference.to_string()),
            escape(&image.digest.to_string())
        )?;
    }
    out.push_str("</table>");
    if total > MAX_IMAGES {
        write!(
            out,
            "<p class=\"muted\">and {} more</p>",
            total - MAX_IMAGES
        )?;
    }
    out.push_str("</section>");
    Ok(())
}

fn failures(out: &mut String, page: &Page) -> std::fmt::Result {
    let failures = page.requests.recent_failures();
    out.push_str("<section id=\"errors\"><h2>Recent errors</h2>");
    if failures.is_empty() {
        out.push_str("<p class=\"muted\">None.</p></section>");
        return Ok(());
    }
    out.push_str("<table><tr><th>When</th><th>Request</th><th>Error</th></tr>");
    for failure in failures {
        write!(
            out,
            "<tr><td>{}</td><td><code>{}</code></td><td class=\"bad\">{}</td></tr>",
            ago(failure.at),
            escape(&failure.request),
            escape(&failure.error)
        )?;
    }
    out.push_str("</table></section>");
    Ok(())
}

fn percent(part: u64, whole: u64) -> f64 {
    part as f64 * 100.0 / whole as f64
}

/// `1.5 MB`-style sizes, in powers of 1000 as registries count.
fn size(bytes: f64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut value = bytes;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{value:.0} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

fn ago(at: SystemTime) -> String {
    let secs = at.elapsed().unwrap_or_default().as_secs();
    format!(
        "{} ago",
        humantime::format_duration(Duration::from_secs(secs))
    )
}

/// Text made safe for HTML: names and errors come from clients and peers.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_in_names_is_escaped() {
        assert_eq!(
            escape("<script>alert('x')</script>&\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;&quot;"
        );
    }

    #[test]
    fn sizes_read_as_registries_count() {
        assert_eq!(size(999.0), "999 B");
        assert_eq!(size(1500.0), "1.5 kB");
        assert_eq!(size(100_000_000.0), "100.0 MB");
    }
}
