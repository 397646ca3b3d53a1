//! Live updates: `GET /v1/events`, a stream of server-sent events. Each `status` event
//! carries the whole `GET /v1/status` document; one is sent when the stream opens and
//! another whenever the status changes (a bundle arrives, moves on, applies; a head comes;
//! a transfer makes progress). The explorer page redraws from these events instead of
//! polling. Like the status, an event lists only the newest bundles
//! ([`STATUS_BUNDLES`](crate::STATUS_BUNDLES)), with their count and transfers summed over
//! all, so its size stays bounded however long the chain (`GET /v1/bundles` pages through
//! the rest).
//!
//! One task per node samples the status (every half second, and at once when a bundle
//! applies or a head arrives) and only while someone listens, so open pages share one
//! status a sample (each new stream reads one more when it opens). Streams are bounded in
//! number (at most half the node's connections), refused to pages of other sites, and end
//! when the node stops.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tokio::sync::watch;

use crate::api::Api;

/// Event streams open at once, at most (or half of `--max-connections`, if fewer); more are
/// refused with 503 and `Retry-After`.
pub(crate) const MAX_STREAMS: usize = 64;
/// How often the status is sampled while someone listens.
const SAMPLE: Duration = Duration::from_millis(500);
/// How long a browser waits before it reconnects a dropped stream.
const RETRY: Duration = Duration::from_secs(2);
/// A comment line this often keeps proxies from closing a quiet stream.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// The node's event streams: the newest status as JSON text, and how many listen.
pub(crate) struct Events {
    api: Api,
    /// Streams open at once, at most: [`MAX_STREAMS`], and at most half the node's
    /// connections, so streams can never take every connection.
    max_streams: usize,
    latest: watch::Sender<Arc<str>>,
    sampling: AtomicBool,
    streams: AtomicUsize,
}

impl Events {
    pub(crate) fn new(api: Api, max_connections: usize) -> Self {
        Self {
            api,
            max_streams: MAX_STREAMS.min(max_connections / 2).max(1),
            latest: watch::channel(Arc::from("")).0,
            sampling: AtomicBool::new(false),
            streams: AtomicUsize::new(0),
        }
    }

    /// Streams open now.
    pub(crate) fn streams(&self) -> usize {
        self.streams.load(Ordering::Acquire)
    }
}

/// The status as JSON text, read off the runtime (it reads the ledger).
async fn status_text(node: &Api) -> Option<Arc<str>> {
    let node = node.clone();
    let text = tokio::task::spawn_blocking(move || serde_json::to_string(&node.status()))
        .await
        .ok()?
        .ok()?;
    Some(Arc::from(text))
}

/// Samples the status while anyone listens, until the node stops.
async fn sample(events: Arc<Events>) {
    let node = &events.api;
    let mut stop = node.tasks().stopping();
    let mut applied = node.applier().subscribe();
    let mut heads = node.heads().subscribe();
    let mut tick = tokio::time::interval(SAMPLE);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            r = applied.changed() => { if r.is_err() { return } }
            r = heads.changed() => { if r.is_err() { return } }
            _ = stop.wait_for(|s| *s) => return,
        }
        if events.latest.receiver_count() == 0 {
            continue;
        }
        if let Some(text) = status_text(node).await {
            events.latest.send_if_modified(|current| {
                let changed = **current != *text;
                if changed {
                    *current = text;
                }
                changed
            });
        }
    }
}

/// Counts one open stream until dropped.
struct Open(Arc<Events>);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.streams.fetch_sub(1, Ordering::AcqRel);
    }
}

fn status_event(text: &str) -> Result<Event, Infallible> {
    Ok(Event::default().event("status").data(text))
}

fn refuse(status: StatusCode, message: String) -> Response {
    let mut refused = (status, axum::Json(json!({ "error": message }))).into_response();
    if status == StatusCode::SERVICE_UNAVAILABLE {
        refused.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from_static("5"));
    }
    refused
}

/// True when a page of another site opened the stream (browsers send `Origin` with every
/// `EventSource` request, and `Sec-Fetch-Site`): the budget of streams is this node's own
/// pages', not any site's its visitors open.
fn cross_site(headers: &HeaderMap) -> bool {
    let site = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok());
    matches!(site, Some("cross-site" | "same-site")) || crate::web::from_other_origin(headers)
}

/// `GET /v1/events`: `text/event-stream` of `status` events (see the module's doc).
pub(crate) async fn stream(events: Arc<Events>, headers: HeaderMap) -> Response {
    if cross_site(&headers) {
        return refuse(
            StatusCode::FORBIDDEN,
            "a page of another site may not open this node's event stream".into(),
        );
    }
    let max = events.max_streams;
    if events.streams.fetch_add(1, Ordering::AcqRel) >= max {
        events.streams.fetch_sub(1, Ordering::AcqRel);
        return refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{max} event streams are open already; try again later"),
        );
    }
    let open = Open(events.clone());
    if !events.sampling.swap(true, Ordering::AcqRel) {
        events.api.tasks().spawn(sample(events.clone()));
    }
    // Subscribe first, then read: a sample sent in between is then seen as a change (and
    // skipped below if it equals this read), never missed.
    let mut rx = events.latest.subscribe();
    rx.mark_changed();
    let Some(first) = status_text(&events.api).await else {
        return refuse(StatusCode::SERVICE_UNAVAILABLE, "the node's status cannot be read".into());
    };
    let stop = events.api.tasks().stopping();
    let retry = Event::default().retry(RETRY);
    let first_event = status_event(&first);
    // Each stream skips a status equal to the last it sent.
    let state = (rx, stop, first, open);
    let updates =
        futures_util::stream::unfold(state, |(mut rx, mut stop, mut last, open)| async move {
            loop {
                let changed = tokio::select! {
                    r = rx.changed() => r.is_ok(),
                    _ = stop.wait_for(|s| *s) => false,
                };
                if !changed {
                    return None;
                }
                let text = rx.borrow_and_update().clone();
                if !text.is_empty() && text != last {
                    last = text;
                    return Some((status_event(&last), (rx, stop, last, open)));
                }
            }
        });
    let stream = futures_util::StreamExt::chain(
        futures_util::stream::iter([Ok::<_, Infallible>(retry), first_event]),
        updates,
    );
    Sse::new(stream).keep_alive(KeepAlive::new().interval(KEEP_ALIVE)).into_response()
}
