//! The HTTP API (axum, JSON). Every route calls the [`Node`] facade; bad requests get a 4xx
//! with `{"error": "<one line>"}`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{Method, Request, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use base64::Engine as _;
use hyper::body::Incoming;
use serde::Deserialize;
use serde_json::{Value, json};
use swarmvm_swarm::{MagnetLink, Source, TorrentFile};
use tokio::sync::Notify;
use tower::ServiceExt as _;

use crate::node::{Node, one_line};

/// An error response: a status and one line.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn bad_request(message: impl Into<String>) -> Self {
        Self { status: StatusCode::BAD_REQUEST, message: message.into() }
    }

    fn internal(message: impl Into<String>) -> Self {
        Self { status: StatusCode::INTERNAL_SERVER_ERROR, message: message.into() }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(json!({ "error": self.message }))).into_response()
    }
}

pub(crate) const ROUTES: [&str; 23] = [
    "GET / (the explorer page to browsers, Accept: text/html; this list otherwise)",
    "GET /v1 (this list)",
    "GET /v1/status",
    "GET /v1/events (server-sent events: a status event at once and at every change)",
    "GET /v1/health (200 ok, 503 unhealthy: the ledger unreadable, diverged, or stale)",
    "GET /metrics (Prometheus text exposition format)",
    "GET /v1/head?seq=N&iat=T&wait=SECONDS (the newest signed head; waits for a newer one)",
    "POST /v1/contracts (body: a signed contract, compact JWS, application/jose)",
    "POST /v1/registrations {\"tokens\": [...], \"modules\": [base64...], \"manifest\"?: ..., \"contracts\"?: [...]}",
    "GET /v1/authorities",
    "GET /v1/state (the whole state, streamed)",
    "GET /v1/state/root",
    "GET /v1/state/{table}?after=ID&limit=N",
    "GET /v1/operations",
    "GET /v1/wallets",
    "GET /v1/wallets/{id}",
    "GET /v1/bundles/{seq}",
    "GET /v1/contracts/{id}",
    "GET /v1/bundles?from=N&limit=N (every bundle known, oldest first; the status lists the newest)",
    "POST /v1/bundles {\"magnet\": ...} | {\"torrent_base64\": ...}",
    "GET /v1/receipts?from=N&limit=N",
    "GET /v1/log?from=N&limit=N",
    "GET /v1/evidence",
];

/// The largest request body: a bundle's torrent is well under 1 MiB (at most 512 MiB of
/// data in pieces of at least 16 KiB), 2 MiB holds it in base64 with room to spare.
const MAX_BODY: usize = 2 * 1024 * 1024;
/// `POST /v1/bundles` requests handled at once; more wait their turn, so bodies being read
/// never hold more than this many times [`MAX_BODY`] of memory.
const MAX_POSTS: usize = 8;

/// The API's routes over `node`.
pub fn router(node: Node) -> Router {
    Router::new()
        .route("/", get(crate::explorer::index))
        .route("/v1", get(|| async { Json(json!({ "routes": ROUTES })) }))
        .route("/explorer/{name}", get(crate::explorer::asset))
        .route("/v1/events", get(crate::events::stream))
        .route("/v1/status", get(|State(n): State<Node>| async move { Json(n.status()) }))
        .route(
            "/v1/health",
            get(|State(n): State<Node>| async move {
                let (ok, body) = crate::metrics::health(&n);
                let code = if ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
                (code, Json(body))
            }),
        )
        .route(
            "/metrics",
            get(|State(n): State<Node>| async move {
                let text = tokio::task::spawn_blocking(move || crate::metrics::render(&n))
                    .await
                    .unwrap_or_default();
                ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text)
            }),
        )
        .route("/v1/state", get(whole_state))
        .route("/v1/state/{table}", get(state_page))
        .route(
            "/v1/state/root",
            get(|State(n): State<Node>| async move {
                Json(json!({ "state_root": n.state_root().to_hex() }))
            }),
        )
        .route(
            "/v1/authorities",
            get(|State(n): State<Node>| async move {
                let mut set = n.authorities().to_json();
                set["network"] = json!(n.network().id());
                Json(set)
            }),
        )
        .route("/v1/operations", get(|State(n): State<Node>| async move { Json(n.operations()) }))
        .route("/v1/wallets", get(|State(n): State<Node>| async move { Json(n.wallets()) }))
        .route("/v1/wallets/{id}", get(wallet))
        .route("/v1/bundles/{seq}", get(bundle_at))
        .route("/v1/contracts/{id}", get(contract))
        .route("/v1/head", get(head))
        .route(
            "/v1/contracts",
            axum::routing::post(post_contract).layer(DefaultBodyLimit::max(MAX_CONTRACT_BODY)),
        )
        .route(
            "/v1/registrations",
            axum::routing::post(post_registrations)
                .layer::<_, std::convert::Infallible>(DefaultBodyLimit::max(MAX_REGISTRATIONS_BODY))
                .layer(tower::limit::ConcurrencyLimitLayer::new(2)),
        )
        .route(
            "/v1/bundles",
            get(list_bundles)
                .post(post_bundle)
                .layer(tower::limit::ConcurrencyLimitLayer::new(MAX_POSTS)),
        )
        .route("/v1/evidence", get(evidence))
        .route("/v1/receipts", get(receipts))
        .route("/v1/log", get(log))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(node)
}

async fn not_found(method: Method, uri: Uri) -> ApiError {
    ApiError {
        status: StatusCode::NOT_FOUND,
        message: format!("no route {method} {}; GET /v1 lists them", uri.path()),
    }
}

/// The 404 for a `GET` of `path`.
pub(crate) fn not_found_response(path: &str) -> Response {
    ApiError {
        status: StatusCode::NOT_FOUND,
        message: format!(
            "no route GET {}; GET /v1 lists them",
            swarmvm_primitives::text::shown(path)
        ),
    }
    .into_response()
}

async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError {
        status: StatusCode::METHOD_NOT_ALLOWED,
        message: format!("{method} is not allowed on {}", uri.path()),
    }
}

/// The largest `POST /v1/contracts` body: one contract token and a line end.
const MAX_CONTRACT_BODY: usize = swarmvm_token::MAX_TOKEN_LEN + 2;
/// The largest `POST /v1/registrations` body (tokens, modules in base64, a folder's files).
const MAX_REGISTRATIONS_BODY: usize = 64 * 1024 * 1024;
/// The longest `GET /v1/head` waits for a newer head.
const MAX_HEAD_WAIT: u64 = 25;
/// Long polls (`GET /v1/head?wait=`) waiting at once, at most (or a quarter of
/// `--max-connections`, if fewer); more are answered at once with the head known, without
/// waiting. With event streams (at most half the connections) they never take every
/// connection, and when every connection is busy a long poll is the first to be ended (early,
/// with the head known) to make room for a new one.
const MAX_LONG_POLLS: usize = 64;

/// Long polls waiting at once for this node: [`MAX_LONG_POLLS`], and at most a quarter of its
/// connections.
fn max_long_polls(node: &Node) -> usize {
    MAX_LONG_POLLS.min(node.http_settings().0.max_connections / 4).max(1)
}

/// One long poll counted among the node's, until dropped.
struct LongPoll(Node);

impl LongPoll {
    /// Counts one more long poll, unless as many as the node takes wait already.
    fn begin(node: &Node) -> Option<Self> {
        let polls = &node.inner.long_polls;
        if polls.fetch_add(1, Ordering::AcqRel) >= max_long_polls(node) {
            polls.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(Self(node.clone()))
    }
}

impl Drop for LongPoll {
    fn drop(&mut self) {
        self.0.inner.long_polls.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The connection a request came on, for a long poll to be ended early to make room
/// ([`Connections::make_room`]). Absent when the router is served some other way.
#[derive(Clone)]
struct PollSlot(Arc<Slot>);

/// Marks a connection's long poll as sheddable while it waits; clears the mark however the
/// wait ends (the request given up included).
struct Polling<'a>(&'a Slot);

impl Drop for Polling<'_> {
    fn drop(&mut self) {
        self.0.long_poll.store(false, Ordering::Release);
    }
}

/// Waits until a head newer than (`seq`, `iat`) is known, at most `wait`, or until the accept
/// loop ends the wait to make room for a new connection: then true, and the answer closes the
/// connection.
async fn wait_or_shed(
    node: &Node,
    slot: Option<&Slot>,
    seq: u64,
    iat: u64,
    wait: Duration,
) -> bool {
    let Some(slot) = slot else {
        node.wait_head(seq, iat, wait).await;
        return false;
    };
    slot.long_poll.store(true, Ordering::Release);
    let polling = Polling(slot);
    tokio::select! {
        () = node.wait_head(seq, iat, wait) => {}
        () = slot.shed.notified() => {}
    }
    // Still marked: this wait ended by itself. Unmarked: the accept loop took it (and counts
    // the connection gone already), whether or not the wait had just ended too.
    let shed = !slot.long_poll.swap(false, Ordering::AcqRel);
    drop(polling);
    shed
}

/// `?seq=N&iat=T&wait=SECONDS` for `GET /v1/head`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HeadQuery {
    seq: Option<u64>,
    iat: Option<u64>,
    wait: Option<u64>,
}

/// `GET /v1/head`: `{"head": "<JWS>"}`, the newest valid head this node knows (404 before
/// any, or once it expired). With `wait`, waits (at most 25 s) for a head newer than
/// (`seq`, `iat`) before answering with the newest; as a long poll, within the bounds of
/// [`MAX_LONG_POLLS`]: beyond them it answers at once, and a long poll ended early to make
/// room answers with the head known and closes its connection.
async fn head(
    State(node): State<Node>,
    slot: Option<axum::Extension<PollSlot>>,
    q: Result<Query<HeadQuery>, QueryRejection>,
) -> Response {
    let q = match q {
        Ok(Query(q)) => q,
        Err(e) => return ApiError::bad_request(one_line_rejection(&e.body_text())).into_response(),
    };
    let wait = Duration::from_secs(q.wait.unwrap_or(0).min(MAX_HEAD_WAIT));
    let mut shed = false;
    if !wait.is_zero()
        && let Some(_counted) = LongPoll::begin(&node)
    {
        let slot = slot.as_ref().map(|s| &*s.0.0);
        shed = wait_or_shed(&node, slot, q.seq.unwrap_or(0), q.iat.unwrap_or(0), wait).await;
    }
    let mut response = current_head(&node).into_response();
    if shed {
        response
            .headers_mut()
            .insert(header::CONNECTION, header::HeaderValue::from_static("close"));
    }
    response
}

/// The newest valid head this node knows, as `GET /v1/head` answers it.
fn current_head(node: &Node) -> Result<Json<Value>, ApiError> {
    match node.head() {
        Some((text, h)) if h.expires_at > swarmvm_token::unix_now() => {
            Ok(Json(json!({ "head": text })))
        }
        Some((_, h)) => Err(ApiError {
            status: StatusCode::NOT_FOUND,
            message: format!(
                "the newest head known here (seq {}) expired at {}: the sequencer stopped publishing or cannot be reached",
                h.seq, h.expires_at
            ),
        }),
        None => Err(ApiError {
            status: StatusCode::NOT_FOUND,
            message: "no head known here yet".into(),
        }),
    }
}

fn hops(headers: &axum::http::HeaderMap) -> u32 {
    headers
        .get(crate::follow::HOPS_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// The nodes a forwarded submission went through (the `swarmvm-via` header; empty for a
/// client's own).
fn via(headers: &axum::http::HeaderMap) -> &str {
    headers.get(crate::follow::VIA_HEADER).and_then(|v| v.to_str().ok()).unwrap_or("")
}

/// True when a forwarded submission came back to this node (its id is among those it went
/// through): the nodes it went through follow each other.
fn came_back(headers: &axum::http::HeaderMap, node: &Node) -> bool {
    let via = via(headers);
    !via.is_empty() && crate::follow::went_through(via, &node.node_id())
}

fn refused(r: crate::submit::Refusal) -> Response {
    let mut body = json!({ "error": r.message.replace('\n', " ") });
    if let Some(n) = r.next_nonce {
        body["next_nonce"] = json!(n);
    }
    if r.duplicate {
        body["duplicate"] = json!(true);
    }
    let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut response = (status, Json(body)).into_response();
    if let Some(secs) = r.retry_after
        && let Ok(v) = header::HeaderValue::from_str(&secs.to_string())
    {
        response.headers_mut().insert(header::RETRY_AFTER, v);
    }
    response
}

/// A body too large says so (413); other unusable bodies are bad requests.
fn body_refused(e: &axum::extract::rejection::BytesRejection) -> Response {
    let status = match e.status() {
        StatusCode::PAYLOAD_TOO_LARGE => StatusCode::PAYLOAD_TOO_LARGE,
        _ => StatusCode::BAD_REQUEST,
    };
    refusal(status, one_line_rejection(&e.body_text()))
}

/// `POST /v1/contracts`: 202 `{"id", "state": "pending"}` once the sequencer stored it.
async fn post_contract(
    State(node): State<Node>,
    headers: axum::http::HeaderMap,
    body: Result<bytes::Bytes, axum::extract::rejection::BytesRejection>,
) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(e) => return body_refused(&e),
    };
    match node.submit_contract(&body, hops(&headers), via(&headers)).await {
        Ok(id) => (StatusCode::ACCEPTED, Json(json!({ "id": id.to_hex(), "state": "pending" })))
            .into_response(),
        Err(r) => refused(r),
    }
}

/// `POST /v1/registrations`: 202 `{"queued": N}` for tokens and modules queued for the next
/// cut; 200 `{"seq", "bundle"}` for a signed folder published.
async fn post_registrations(
    State(node): State<Node>,
    headers: axum::http::HeaderMap,
    body: Result<bytes::Bytes, axum::extract::rejection::BytesRejection>,
) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(e) => return body_refused(&e),
    };
    match node.submit_registrations(&body, hops(&headers), via(&headers)).await {
        Ok((status, value)) => {
            (StatusCode::from_u16(status).unwrap_or(StatusCode::OK), Json(value)).into_response()
        }
        Err(r) => refused(r),
    }
}

/// `GET /v1/wallets/{id}`: one registered wallet with its last nonce (404 when unknown).
async fn wallet(State(node): State<Node>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    node.wallet(&id).map(Json).ok_or_else(|| ApiError {
        status: StatusCode::NOT_FOUND,
        message: format!("wallet {} is not registered", swarmvm_primitives::text::shown(&id)),
    })
}

/// `GET /v1/contracts/{id}`: what became of a contract (404 when no batch here held it).
async fn contract(
    State(node): State<Node>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let Ok(hash) = id.parse::<swarmvm_vm::Hash32>() else {
        return Err(ApiError::bad_request(
            "a contract id is the lowercase hex SHA-256 of its token (64 characters)",
        ));
    };
    match node.contract(&hash) {
        Ok(Some(v)) => Ok(Json(v)),
        Ok(None) => Err(ApiError {
            status: StatusCode::NOT_FOUND,
            message: format!("contract {id} is unknown here"),
        }),
        Err(e) => Err(ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            message: format!("cannot read the ledger: {e}"),
        }),
    }
}

/// `GET /v1/bundles/{seq}`: an applied bundle's identity, manifest and magnet (404 when this
/// node has not applied it).
async fn bundle_at(
    State(node): State<Node>,
    Path(seq): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let Ok(seq) = seq.parse::<u64>() else {
        return Err(ApiError::bad_request("seq is not a number"));
    };
    node.bundle_at(seq).map(Json).ok_or_else(|| ApiError {
        status: StatusCode::NOT_FOUND,
        message: format!("bundle seq {seq} is not applied here"),
    })
}

/// `GET /v1/bundles?from=N&limit=N`: a page of the bundles this node knows, oldest first
/// (position 1 is the oldest; 100 a page unless told, at most [`MAX_PAGE`]), as `{"bundles",
/// "known", "from", "next"}`, `next` the position of the next page (`null` after the last).
/// `GET /v1/status` lists only the newest.
async fn list_bundles(
    State(node): State<Node>,
    q: Result<Query<Page>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(p) = q.map_err(|e| ApiError::bad_request(one_line_rejection(&e.body_text())))?;
    let limit = p.limit.unwrap_or(100);
    if limit == 0 || limit > MAX_PAGE {
        return Err(ApiError::bad_request(format!("limit must be from 1 to {MAX_PAGE}")));
    }
    let page = node.bundles_page(p.from.unwrap_or(1), limit);
    Ok(Json(json!(page)))
}

/// `POST /v1/bundles`: exactly one of `magnet` and `torrent_base64`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AddBundle {
    magnet: Option<String>,
    torrent_base64: Option<String>,
}

async fn post_bundle(
    State(node): State<Node>,
    body: Result<Json<AddBundle>, JsonRejection>,
) -> Result<Response, ApiError> {
    // A body too large (413) or of another media type (415) says so; any other unusable
    // body is a bad request (400).
    let Json(body) = body.map_err(|e| ApiError {
        status: match e.status() {
            s @ (StatusCode::PAYLOAD_TOO_LARGE | StatusCode::UNSUPPORTED_MEDIA_TYPE) => s,
            _ => StatusCode::BAD_REQUEST,
        },
        message: one_line_rejection(&e.body_text()),
    })?;
    let source = match (body.magnet, body.torrent_base64) {
        (Some(m), None) => {
            Source::Magnet(MagnetLink::parse(&m).map_err(|e| ApiError::bad_request(e.to_string()))?)
        }
        (None, Some(b64)) => {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .map_err(|_| ApiError::bad_request("torrent_base64 is not base64"))?;
            Source::Torrent(
                TorrentFile::from_bytes(&bytes)
                    .map_err(|e| ApiError::bad_request(e.to_string()))?,
            )
        }
        _ => {
            return Err(ApiError::bad_request(
                "give exactly one of \"magnet\" and \"torrent_base64\"",
            ));
        }
    };
    let hash = match node.add(source) {
        Ok(hash) => hash,
        Err(e @ crate::NodeError::Busy { .. }) => {
            let mut response =
                ApiError { status: StatusCode::TOO_MANY_REQUESTS, message: one_line(&e) }
                    .into_response();
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("5"));
            return Ok(response);
        }
        Err(e) => return Err(ApiError::bad_request(one_line(&e))),
    };
    Ok((StatusCode::ACCEPTED, Json(json!({ "info_hash": hash.to_string() }))).into_response())
}

/// `GET /v1/state`: the whole state as one JSON object, written as it is read from a
/// snapshot (on a blocking thread), so its size is bounded by the disk, not by memory.
async fn whole_state(State(node): State<Node>) -> Result<Response, ApiError> {
    let snapshot = node.snapshot().ok_or_else(|| ApiError::internal("the node stopped"))?;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(4);
    tokio::task::spawn_blocking(move || {
        let mut out = ChunkWriter { tx, buf: Vec::with_capacity(CHUNK) };
        let result = snapshot.write_json(&mut out);
        match result {
            Ok(()) => {
                let _ = out.flush_chunk();
            }
            Err(e) => {
                let _ = out.tx.blocking_send(Err(std::io::Error::other(one_line(&e))));
            }
        }
    });
    let body = axum::body::Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx));
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// Bytes per chunk of a streamed response.
const CHUNK: usize = 64 * 1024;

/// Hands what is written to a response body, a chunk at a time.
struct ChunkWriter {
    tx: tokio::sync::mpsc::Sender<Result<bytes::Bytes, std::io::Error>>,
    buf: Vec<u8>,
}

impl ChunkWriter {
    fn flush_chunk(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = bytes::Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK)));
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the client left"))
    }
}

impl std::io::Write for ChunkWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.flush_chunk()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.flush_chunk()
    }
}

/// `?after=ID&limit=N` for `GET /v1/state/{table}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StatePage {
    after: Option<String>,
    limit: Option<usize>,
}

/// The most entries one page of a state table holds.
const MAX_PAGE: usize = 1000;

/// `GET /v1/state/{table}`: a page of one table, in id order, with the id to ask after for
/// the next one.
async fn state_page(
    State(node): State<Node>,
    Path(name): Path<String>,
    q: Result<Query<StatePage>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(p) = q.map_err(|e| ApiError::bad_request(one_line_rejection(&e.body_text())))?;
    let Some(table) = swarmvm_vm::Table::from_name(&name) else {
        let names: Vec<&str> = swarmvm_vm::Table::ALL.iter().map(|t| t.name()).collect();
        return Err(ApiError {
            status: StatusCode::NOT_FOUND,
            message: format!(
                "no state table '{}'; the tables are {}",
                swarmvm_primitives::text::shown(&name),
                names.join(", ")
            ),
        });
    };
    let limit = p.limit.unwrap_or(100);
    if limit == 0 || limit > MAX_PAGE {
        return Err(ApiError::bad_request(format!("limit must be from 1 to {MAX_PAGE}")));
    }
    let result = tokio::task::spawn_blocking(move || {
        let snapshot = node.snapshot().ok_or_else(|| ApiError::internal("the node stopped"))?;
        snapshot
            .page(table, p.after.as_deref(), limit)
            .map_err(|e| ApiError::internal(one_line(&e)))
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))?;
    let (entries, next) = result?;
    Ok(Json(json!({ "table": table.name(), "entries": entries, "next": next })))
}

async fn evidence(State(node): State<Node>) -> Result<Json<Value>, ApiError> {
    let list = node.evidence().map_err(|e| ApiError::internal(one_line(&e)))?;
    Ok(Json(json!({ "evidence": list })))
}

fn one_line_rejection(text: &str) -> String {
    text.replace('\n', " ")
}

/// `?from=N&limit=N` for the paged routes.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Page {
    from: Option<u64>,
    limit: Option<usize>,
}

fn page(q: Result<Query<Page>, QueryRejection>) -> Result<(u64, usize), ApiError> {
    let Query(p) = q.map_err(|e| ApiError::bad_request(one_line_rejection(&e.body_text())))?;
    let limit = p.limit.unwrap_or(100);
    if limit == 0 || limit > 10_000 {
        return Err(ApiError::bad_request("limit must be from 1 to 10000"));
    }
    Ok((p.from.unwrap_or(1), limit))
}

async fn receipts(
    State(node): State<Node>,
    q: Result<Query<Page>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let (from, limit) = page(q)?;
    let list = node.receipts(from, limit).map_err(|e| ApiError::internal(one_line(&e)))?;
    Ok(Json(json!({ "receipts": list })))
}

async fn log(
    State(node): State<Node>,
    q: Result<Query<Page>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let (from, limit) = page(q)?;
    let list = node.log(from, limit).map_err(|e| ApiError::internal(one_line(&e)))?;
    Ok(Json(json!({ "log": list })))
}

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
        *self.last.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Instant::now();
    }

    /// How long the connection has waited on its client: with no request in progress, since
    /// the last one; while an answer is being sent, since the client last took a part of it.
    /// `None` while the node is still working on an answer (or has nothing new to stream).
    fn idle_for(&self) -> Option<Duration> {
        if self.busy.load(Ordering::Acquire) == 0 {
            let last = *self.last.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            return Some(last.elapsed());
        }
        let wait = *self.body_wait.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        wait.map(|since| since.elapsed())
    }

    fn set_body_wait(&self, since: Option<Instant>) {
        *self.body_wait.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = since;
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
        let mut slots = self.slots.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
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
        self.slots
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(id, slot.clone());
        (id, slot)
    }

    fn close(&self, id: u64) {
        self.slots.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&id);
    }

    fn len(&self) -> usize {
        self.slots.lock().unwrap_or_else(std::sync::PoisonError::into_inner).len()
    }
}

/// Which `Host` headers the API answers: IP addresses (a page cannot rebind an IP literal),
/// `localhost` and its subdomains (browsers resolve them to loopback themselves), and the
/// names given with `--allow-host` (`name` for any port, `name:port` for one). A name
/// otherwise is refused, so a web page whose name an attacker rebinds to 127.0.0.1 cannot
/// talk to the node through a visitor's browser (DNS rebinding).
#[derive(Debug, Clone)]
pub(crate) struct HostCheck {
    port: u16,
    allowed: Vec<String>,
}

impl HostCheck {
    pub(crate) fn new(port: u16, allowed: &[String]) -> Self {
        Self { port, allowed: allowed.iter().map(|h| h.to_ascii_lowercase()).collect() }
    }

    /// Why `host` (a `Host` header's value) is refused, if it is.
    pub(crate) fn refuse(&self, host: Option<&str>) -> Option<String> {
        let Some(host) = host else { return Some("the request has no Host header".into()) };
        let lower = host.to_ascii_lowercase();
        if self.allowed.contains(&lower) {
            return None;
        }
        let (name, port) = match lower.rsplit_once(':') {
            // A bare IPv6 address: its colons are not a port.
            Some((n, _)) if !n.ends_with(']') && n.contains(':') => (lower.as_str(), None),
            Some((n, p)) => (n, Some(p)),
            None => (lower.as_str(), None),
        };
        let bare = name.trim_start_matches('[').trim_end_matches(']');
        let by_ip = bare.parse::<std::net::IpAddr>().is_ok();
        let local = bare == "localhost" || bare.ends_with(".localhost");
        let listed = self.allowed.iter().any(|a| a == name);
        let port_ok = port.is_none_or(|p| p.parse::<u16>() == Ok(self.port)) || listed;
        if (by_ip || local || listed) && port_ok {
            return None;
        }
        Some(format!(
            "host '{}' is not served here; use this node's address or add the name with --allow-host",
            swarmvm_primitives::text::shown(host)
        ))
    }
}

/// True when a request that may change something comes from a page of another origin.
fn cross_origin_write(req: &Request<Incoming>) -> bool {
    !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS)
        && from_other_origin(req.headers())
}

/// True when the request names an `Origin` that is not this node (the `Host` it asked for).
pub(crate) fn from_other_origin(headers: &axum::http::HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok()) else {
        return false;
    };
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("");
    let origin_host = origin.split_once("://").map_or(origin, |(_, rest)| rest);
    !origin_host.eq_ignore_ascii_case(host)
}

/// Headers on every answer: the API's answers are data, never a page a browser may render,
/// frame or sniff into one (no CORS header is ever sent, so pages of other origins cannot
/// read them either). The explorer's files set their own, still strict, policy.
fn harden(headers: &mut axum::http::HeaderMap) {
    use axum::http::HeaderValue;
    headers
        .entry(header::CONTENT_SECURITY_POLICY)
        .or_insert(HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
}

fn refusal(status: StatusCode, message: String) -> Response {
    ApiError { status, message }.into_response()
}

/// Connections the kernel may queue before they are accepted. The usual 128 overflows under a
/// burst of connections (every slow client the limit sheds reconnects), and a connection that
/// finds the queue full waits a whole second for its SYN to be sent again.
const ACCEPT_BACKLOG: u32 = 1024;

fn listen(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(ACCEPT_BACKLOG)
}

/// Binds `addr` and serves the API until the node stops, within [`HttpLimits`].
pub(crate) async fn serve(node: Node, addr: SocketAddr) -> Result<(), crate::NodeError> {
    let listener = listen(addr).map_err(|source| crate::NodeError::Http { addr, source })?;
    let bound = listener.local_addr().map_err(|source| crate::NodeError::Http { addr, source })?;
    node.set_http_addr(bound);
    let (limits, allowed) = node.http_settings();
    let limits = limits.clone();
    let hosts = HostCheck::new(bound.port(), allowed);
    let app = router(node.clone());
    let connections = Arc::new(Connections::default());
    let mut stop = node.stopping();
    let task_node = node.clone();
    node.spawn(async move {
        let node = task_node;
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
            if !connections.make_room(limits.max_connections) {
                tracing::debug!(
                    open = connections.len(),
                    "http: every connection is busy; refusing one"
                );
                continue;
            }
            let (id, slot) = connections.open();
            let conn = Conn {
                app: app.clone(),
                hosts: hosts.clone(),
                limits: limits.clone(),
                slot,
                node: node.clone(),
            };
            let connections = connections.clone();
            let stop = node.stopping();
            tokio::spawn(async move {
                conn.run(stream, stop).await;
                connections.close(id);
            });
        }
    });
    Ok(())
}

/// One connection's task.
struct Conn {
    app: Router,
    hosts: HostCheck,
    limits: HttpLimits,
    slot: Arc<Slot>,
    /// The node, for its counters.
    node: Node,
}

impl Conn {
    async fn run(
        self,
        stream: tokio::net::TcpStream,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        let Self { app, hosts, limits, slot, node } = self;
        let request_timeout = limits.request_timeout;
        let service_slot = slot.clone();
        let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
            let app = app.clone();
            let node = node.clone();
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
                came_back(req.headers(), &node)
                    .then(|| refusal(StatusCode::LOOP_DETECTED, crate::follow::came_back()))
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
                node.inner.metrics.http(response.status().as_u16());
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

    #[test]
    fn hosts_are_ip_addresses_localhost_or_allowed_names() {
        let check = HostCheck::new(8080, &["node.example.org".into(), "proxy.example:443".into()]);
        for ok in [
            "127.0.0.1:8080",
            "127.0.0.1",
            "10.1.2.3:8080",
            "[::1]:8080",
            "[::1]",
            "localhost:8080",
            "LOCALHOST:8080",
            "peer.localhost:8080",
            "node.example.org",
            "node.example.org:9999",
            "proxy.example:443",
        ] {
            assert_eq!(check.refuse(Some(ok)), None, "{ok}");
        }
        for bad in [
            "evil.example:8080",
            "evil.example",
            "127.0.0.1.nip.io:8080",
            "localhost.evil.example:8080",
            "127.0.0.1:8081",
            "localhost:80",
            "proxy.example:444",
            "proxy.example",
            "",
            "evil\u{202e}.example",
        ] {
            let why = check.refuse(Some(bad)).unwrap_or_else(|| panic!("{bad} accepted"));
            assert!(why.contains("--allow-host"), "{why}");
        }
        assert!(check.refuse(None).is_some());
    }
}
