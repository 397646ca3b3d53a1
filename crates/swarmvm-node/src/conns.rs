//! The HTTP server's connections, managed by hand on hyper: a bound on connections open at
//! once that sheds the one idle longest (or a long poll) rather than refuse a new one,
//! timeouts for headers, idle connections and requests, and a connection counted busy until
//! its answer's body is sent, so a client that stops reading is shed like an idle one. No
//! maintained crate sheds by idleness this way (tower's limits queue or refuse), which is why
//! it is here, apart from the routes.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::{Request, StatusCode, header};
use hyper::body::Incoming;
use parking_lot::Mutex;
use tokio::sync::Notify;
use tower::ServiceExt as _;

use crate::counters::HttpCounts;
use crate::tasks::Tasks;
use crate::web::{HostCheck, cross_origin_write, harden, refusal};

/// Bounds on the HTTP API's connections: slow or idle clients are shed, never waited for.
#[derive(Debug, Clone)]
pub struct HttpLimits {
    /// Connections open at once, at most. A new connection beyond it closes the connection
    /// that has waited longest without a request in progress (a slow or idle one); only when
    /// every connection is busy with a request is the new one refused.
    pub max_connections: usize,
    /// How long a client may take to send a request's headers.
    pub header_timeout: Duration,
    /// How long a connection may stay open without a request in progress.
    pub idle_timeout: Duration,
    /// How long a request may take, reading its body included.
    pub request_timeout: Duration,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            max_connections: 256,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(30),
        }
    }
}

/// One open connection, as the accept loop and the connection's task see it.
#[derive(Debug)]
struct Slot {
    /// Requests in progress on it (until their answer's body is sent).
    busy: AtomicUsize,
    /// When it last started or finished a request (or was accepted).
    last: Mutex<Instant>,
    /// Since when an answer's body waits for the client to read what it was handed (a frame
    /// was produced and the body was not asked for more since); `None` while the body itself
    /// has nothing to send yet (a quiet event stream), or no body is being sent.
    body_wait: Mutex<Option<Instant>>,
    /// Closes it.
    kill: Notify,
    /// True while a request on it waits in a long poll that may be ended early to make room;
    /// cleared by whichever of the poll and the accept loop ([`Connections::make_room`]) is
    /// first.
    long_poll: AtomicBool,
    /// Ends its long poll early.
    shed: Notify,
}

impl Slot {
    fn new(last: Instant) -> Self {
        Self {
            busy: AtomicUsize::new(0),
            last: Mutex::new(last),
            body_wait: Mutex::new(None),
            kill: Notify::new(),
            long_poll: AtomicBool::new(false),
            shed: Notify::new(),
        }
    }

    fn touch(&self) {
        *self.last.lock() = Instant::now();
    }

    /// How long the connection has waited on its client: with no request in progress, since
    /// the last one; while an answer is being sent, since the client last took a part of it.
    /// `None` while the node is still working on an answer (or has nothing new to stream).
    fn idle_for(&self) -> Option<Duration> {
        if self.busy.load(Ordering::Acquire) == 0 {
            let last = *self.last.lock();
            return Some(last.elapsed());
        }
        let wait = *self.body_wait.lock();
        wait.map(|since| since.elapsed())
    }

    fn set_body_wait(&self, since: Option<Instant>) {
        *self.body_wait.lock() = since;
    }
}

/// A request in progress on a connection, until dropped (when its answer's body is sent or
/// given up).
struct Busy(Arc<Slot>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.touch();
        self.0.set_body_wait(None);
        self.0.busy.fetch_sub(1, Ordering::AcqRel);
    }
}

/// An answer's body, with the request it answers marked busy until it is sent.
struct Sending {
    body: axum::body::Body,
    _busy: Busy,
}

impl axum::body::HttpBody for Sending {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        // Asked for more: the client took what it was handed. A frame handed out starts the
        // wait on the client again, so one that stops reading is shed like an idle one.
        let slot = self._busy.0.clone();
        slot.set_body_wait(None);
        let polled = std::pin::Pin::new(&mut self.body).poll_frame(cx);
        if let std::task::Poll::Ready(Some(Ok(_))) = &polled {
            slot.set_body_wait(Some(Instant::now()));
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

/// The open connections.
#[derive(Debug, Default)]
struct Connections {
    slots: Mutex<BTreeMap<u64, Arc<Slot>>>,
    next: AtomicU64,
}

impl Connections {
    /// Makes room for one more connection under `max`: closes the connection idle the
    /// longest; when every connection is busy, ends a long poll early (it answers with the
    /// head known, then its connection closes). False when every connection is busy with
    /// something else.
    fn make_room(&self, max: usize) -> bool {
        let mut slots = self.slots.lock();
        if slots.len() < max {
            return true;
        }
        let victim = slots
            .iter()
            .filter_map(|(id, s)| s.idle_for().map(|idle| (idle, *id)))
            .max()
            .map(|(_, id)| id);
        if let Some(slot) = victim.and_then(|id| slots.remove(&id)) {
            slot.kill.notify_one();
            return true;
        }
        // The oldest connection in a long poll: taken (unmarked) here, so that its poll, which
        // may be ending by itself just now, knows to close the connection after its answer.
        let poll = slots
            .iter()
            .find(|(_, s)| {
                s.long_poll
                    .compare_exchange(true, false, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
            })
            .map(|(id, _)| *id);
        match poll.and_then(|id| slots.remove(&id)) {
            Some(slot) => {
                slot.shed.notify_one();
                true
            }
            None => false,
        }
    }

    fn open(&self) -> (u64, Arc<Slot>) {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let slot = Arc::new(Slot::new(Instant::now()));
        self.slots.lock().insert(id, slot.clone());
        (id, slot)
    }

    fn close(&self, id: u64) {
        self.slots.lock().remove(&id);
    }

    fn len(&self) -> usize {
        self.slots.lock().len()
    }
}

/// Connections the kernel may queue before they are accepted. The usual 128 overflows under a
/// burst of connections (every slow client the limit sheds reconnects), and a connection that
/// finds the queue full waits a whole second for its SYN to be sent again.
const ACCEPT_BACKLOG: u32 = 1024;

pub(crate) fn listen(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(ACCEPT_BACKLOG)
}

/// What every connection's task shares.
#[derive(Clone)]
pub(crate) struct Served {
    /// The routes.
    pub(crate) app: Router,
    /// The `Host` headers answered.
    pub(crate) hosts: HostCheck,
    /// The bounds.
    pub(crate) limits: HttpLimits,
    /// This node's id in the `swarmvm-via` header: a forwarded submission that names it came
    /// back.
    pub(crate) node_id: String,
    /// The answers' counters.
    pub(crate) counts: Arc<HttpCounts>,
}

/// Serves `served` on `listener` until `tasks` stop, within its [`HttpLimits`].
pub(crate) fn serve(listener: tokio::net::TcpListener, served: Served, tasks: &Tasks) {
    let connections = Arc::new(Connections::default());
    let mut stop = tasks.stopping();
    let tasks_inner = tasks.clone();
    tasks.spawn(async move {
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                _ = stop.wait_for(|s| *s) => break,
            };
            let stream = match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of descriptors, say: wait a moment rather than spin.
                    tracing::warn!("http accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            if !connections.make_room(served.limits.max_connections) {
                tracing::debug!(
                    open = connections.len(),
                    "http: every connection is busy; refusing one"
                );
                continue;
            }
            let (id, slot) = connections.open();
            let conn = Conn { served: served.clone(), slot };
            let connections = connections.clone();
            let stop = tasks_inner.stopping();
            tokio::spawn(async move {
                conn.run(stream, stop).await;
                connections.close(id);
            });
        }
    });
}

/// The connection a request came on, for a long poll to be ended early to make room
/// ([`Connections::make_room`]). Absent when the router is served some other way.
#[derive(Clone)]
pub(crate) struct PollSlot(Arc<Slot>);

/// Marks a connection's long poll as sheddable while it waits; clears the mark however the
/// wait ends (the request given up included).
struct Polling<'a>(&'a Slot);

impl Drop for Polling<'_> {
    fn drop(&mut self) {
        self.0.long_poll.store(false, Ordering::Release);
    }
}

/// Waits for `wait` to end, or until the accept loop ends it early to make room for a new
/// connection: then true, and the answer should close the connection.
pub(crate) async fn wait_or_shed(
    slot: Option<&PollSlot>,
    wait: impl std::future::Future<Output = ()>,
) -> bool {
    let Some(PollSlot(slot)) = slot else {
        wait.await;
        return false;
    };
    slot.long_poll.store(true, Ordering::Release);
    let polling = Polling(slot);
    tokio::select! {
        () = wait => {}
        () = slot.shed.notified() => {}
    }
    // Still marked: this wait ended by itself. Unmarked: the accept loop took it (and counts
    // the connection gone already), whether or not the wait had just ended too.
    let shed = !slot.long_poll.swap(false, Ordering::AcqRel);
    drop(polling);
    shed
}

/// One connection's task.
struct Conn {
    served: Served,
    slot: Arc<Slot>,
}

impl Conn {
    async fn run(
        self,
        stream: tokio::net::TcpStream,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        let Self { served, slot } = self;
        let Served { app, hosts, limits, node_id, counts } = served;
        let request_timeout = limits.request_timeout;
        let service_slot = slot.clone();
        let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
            let app = app.clone();
            let (node_id, counts) = (node_id.clone(), counts.clone());
            let slot = service_slot.clone();
            let host = req.headers().get(header::HOST).and_then(|h| h.to_str().ok());
            let refused =
                hosts.refuse(host).map(|why| refusal(StatusCode::MISDIRECTED_REQUEST, why));
            let refused = refused.or_else(|| {
                cross_origin_write(&req).then(|| {
                    refusal(
                        StatusCode::FORBIDDEN,
                        "a page of another origin may not change this node".into(),
                    )
                })
            });
            // A forwarded submission that came back is refused before any route's bound on
            // requests at once, which the loop itself would hold.
            let refused = refused.or_else(|| {
                let via =
                    req.headers().get(crate::protocol::VIA_HEADER).and_then(|v| v.to_str().ok());
                via.is_some_and(|via| crate::protocol::went_through(via, &node_id))
                    .then(|| refusal(StatusCode::LOOP_DETECTED, crate::protocol::came_back()))
            });
            req.extensions_mut().insert(PollSlot(slot.clone()));
            slot.busy.fetch_add(1, Ordering::AcqRel);
            slot.touch();
            // Busy until the answer's body is sent, or the request is given up.
            let busy = Busy(slot);
            async move {
                let response = match refused {
                    Some(r) => r,
                    None => match tokio::time::timeout(request_timeout, app.oneshot(req)).await {
                        Ok(Ok(r)) => r,
                        Ok(Err(never)) => match never {},
                        Err(_) => refusal(
                            StatusCode::REQUEST_TIMEOUT,
                            format!(
                                "the request took longer than {}",
                                humantime::format_duration(request_timeout)
                            ),
                        ),
                    },
                };
                counts.record(response.status().as_u16());
                let mut response = response;
                harden(response.headers_mut());
                // The connection stays busy until the body is sent (a streamed state, an
                // event stream): the idle timeout and the make-room rule leave it alone.
                Ok::<_, std::convert::Infallible>(
                    response.map(|body| axum::body::Body::new(Sending { body, _busy: busy })),
                )
            }
        });
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(limits.header_timeout)
            .keep_alive(true)
            .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
        tokio::pin!(conn);
        let idle = async {
            loop {
                tokio::time::sleep(Duration::from_secs(1).min(limits.idle_timeout)).await;
                if slot.idle_for().is_some_and(|idle| idle >= limits.idle_timeout) {
                    return;
                }
            }
        };
        let stopping = async {
            let _ = stop.wait_for(|s| *s).await;
        };
        tokio::select! {
            _ = conn.as_mut() => {}
            () = slot.kill.notified() => {}
            () = idle => {}
            () = stopping => {
                conn.as_mut().graceful_shutdown();
                let _ = tokio::time::timeout(Duration::from_secs(5), conn).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_is_idle_without_a_request_or_while_its_client_does_not_read() {
        let slot = Slot::new(Instant::now() - Duration::from_secs(5));
        assert!(slot.idle_for().unwrap() >= Duration::from_secs(5), "no request: idle");
        slot.busy.fetch_add(1, Ordering::AcqRel);
        assert_eq!(slot.idle_for(), None, "the node works on the answer (or waits for news)");
        slot.set_body_wait(Some(Instant::now() - Duration::from_secs(3)));
        assert!(
            slot.idle_for().unwrap() >= Duration::from_secs(3),
            "a part handed out and not read for 3 s: idle for 3 s"
        );
        slot.set_body_wait(None);
        assert_eq!(slot.idle_for(), None, "the client read it");
    }
}
