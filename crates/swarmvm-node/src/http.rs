//! The HTTP API (axum, JSON). Every route calls the [`Api`]; request and answer types are
//! the [`protocol`](crate::protocol)'s; bad requests get a 4xx with `{"error": "<one line>"}`.

use std::net::SocketAddr;
use std::ops::Deref;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use base64::Engine as _;
use serde_json::json;
use swarmvm_swarm::{MagnetLink, Source, TorrentFile};

use crate::api::Api;
use crate::conns::{HttpLimits, PollSlot, Served, listen, wait_or_shed};
use crate::counters::HttpCounts;
use crate::error::one_line;
use crate::events::Events;
use crate::protocol::{
    AddBundle, BundleAdded, EvidenceList, HeadAnswer, HeadQuery, Log, PageQuery, ROUTES, Receipts,
    Refusal, StatePageQuery, StateRoot,
};
use crate::web::{ApiError, HostCheck, one_line_rejection, refusal};

/// What every route shares: the node's [`Api`], and the server's own state.
#[derive(Clone)]
pub(crate) struct Web(Arc<WebInner>);

pub(crate) struct WebInner {
    api: Api,
    events: Arc<Events>,
    counts: Arc<HttpCounts>,
    limits: HttpLimits,
    /// `GET /v1/head` requests waiting for a newer head now (long polls).
    long_polls: AtomicUsize,
}

impl Deref for Web {
    type Target = Api;

    fn deref(&self) -> &Api {
        &self.0.api
    }
}

/// The largest request body: a bundle's torrent is well under 1 MiB (at most 512 MiB of
/// data in pieces of at least 16 KiB), 2 MiB holds it in base64 with room to spare.
const MAX_BODY: usize = 2 * 1024 * 1024;
/// `POST /v1/bundles` requests handled at once; more wait their turn, so bodies being read
/// never hold more than this many times [`MAX_BODY`] of memory.
const MAX_POSTS: usize = 8;

/// The API's routes over `node`.
fn router(node: Web) -> Router {
    Router::new()
        .route("/", get(crate::explorer::index))
        .route("/v1", get(|| async { Json(json!({ "routes": ROUTES })) }))
        .route("/explorer/{name}", get(crate::explorer::asset))
        .route(
            "/v1/events",
            get(|State(n): State<Web>, headers: axum::http::HeaderMap| async move {
                crate::events::stream(n.0.events.clone(), headers).await
            }),
        )
        .route("/v1/status", get(|State(n): State<Web>| async move { Json(n.status()) }))
        .route(
            "/v1/health",
            get(|State(n): State<Web>| async move {
                let body = crate::metrics::health(&n);
                let ok = body.problems.is_empty();
                let code = if ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
                (code, Json(body))
            }),
        )
        .route(
            "/metrics",
            get(|State(n): State<Web>| async move {
                let text = tokio::task::spawn_blocking(move || {
                    crate::metrics::render(&n, &n.0.counts, n.0.events.streams())
                })
                .await
                .unwrap_or_default();
                ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text)
            }),
        )
        .route("/v1/state", get(whole_state))
        .route("/v1/state/{table}", get(state_page))
        .route("/v1/state/{table}/{*id}", get(state_entry))
        .route("/v1/proof/{table}/{*id}", get(proof))
        .route(
            "/v1/state/root",
            get(|State(n): State<Web>| async move {
                Json(StateRoot { state_root: n.state_root() })
            }),
        )
        .route(
            "/v1/authorities",
            get(|State(n): State<Web>| async move {
                let mut set = n.authorities().to_json();
                set["network"] = json!(n.network().id());
                Json(set)
            }),
        )
        .route("/v1/operations", get(|State(n): State<Web>| async move { Json(n.operations()) }))
        .route("/v1/wallets", get(|State(n): State<Web>| async move { Json(n.wallets()) }))
        .route("/v1/wallets/{id}", get(wallet))
        .route("/v1/bundles/{seq}", get(bundle_at))
        .route("/v1/contracts/{id}", get(contract))
        .route("/v1/head", get(head))
        .route(
            "/v1/contracts",
            axum::routing::post(post_contract).layer(DefaultBodyLimit::max(MAX_CONTRACT_BODY)),
        )
        .route(
            "/v1/contracts/batch",
            axum::routing::post(post_contracts)
                .layer::<_, std::convert::Infallible>(DefaultBodyLimit::max(
                    crate::relay::MAX_BATCH_BODY,
                ))
                .layer(tower::limit::ConcurrencyLimitLayer::new(MAX_BATCH_POSTS)),
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

async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError {
        status: StatusCode::METHOD_NOT_ALLOWED,
        message: format!("{method} is not allowed on {}", uri.path()),
    }
}

/// The largest `POST /v1/contracts` body: one contract token and a line end.
const MAX_CONTRACT_BODY: usize = swarmvm_token::MAX_TOKEN_LEN + 2;
/// `POST /v1/contracts/batch` requests handled at once (each at most
/// [`MAX_BATCH_BODY`](crate::relay::MAX_BATCH_BODY)); more wait.
const MAX_BATCH_POSTS: usize = 8;
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
fn max_long_polls(node: &Web) -> usize {
    MAX_LONG_POLLS.min(node.0.limits.max_connections / 4).max(1)
}

/// One long poll counted among the node's, until dropped.
struct LongPoll(Web);

impl LongPoll {
    /// Counts one more long poll, unless as many as the node takes wait already.
    fn begin(node: &Web) -> Option<Self> {
        let polls = &node.0.long_polls;
        if polls.fetch_add(1, Ordering::AcqRel) >= max_long_polls(node) {
            polls.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(Self(node.clone()))
    }
}

impl Drop for LongPoll {
    fn drop(&mut self) {
        self.0.0.long_polls.fetch_sub(1, Ordering::AcqRel);
    }
}

/// `GET /v1/head`: `{"head": "<JWS>"}`, the newest valid head this node knows (404 before
/// any, or once it expired). With `wait`, waits (at most 25 s) for a head newer than
/// (`seq`, `iat`) before answering with the newest; as a long poll, within the bounds of
/// [`MAX_LONG_POLLS`]: beyond them it answers at once, and a long poll ended early to make
/// room answers with the head known and closes its connection.
async fn head(
    State(node): State<Web>,
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
        let slot = slot.as_ref().map(|s| &s.0);
        let newer = node.wait_head(q.seq.unwrap_or(0), q.iat.unwrap_or(0), wait);
        shed = wait_or_shed(slot, newer).await;
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
fn current_head(node: &Web) -> Result<Json<HeadAnswer>, ApiError> {
    match node.head() {
        Some((text, h)) if h.expires_at > swarmvm_token::unix_now() => {
            let items = node.head_items(&text);
            Ok(Json(HeadAnswer { head: text, items }))
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
        .get(crate::protocol::HOPS_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// The nodes a forwarded submission went through (the `swarmvm-via` header; empty for a
/// client's own).
fn via(headers: &axum::http::HeaderMap) -> &str {
    headers.get(crate::protocol::VIA_HEADER).and_then(|v| v.to_str().ok()).unwrap_or("")
}

fn refused(r: Refusal) -> Response {
    let body = r.body();
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

/// A submission as it comes: its headers (which nodes forwarded it) and its body.
struct Submitted {
    headers: axum::http::HeaderMap,
    body: Result<bytes::Bytes, axum::extract::rejection::BytesRejection>,
}

impl<S: Send + Sync> axum::extract::FromRequest<S> for Submitted {
    type Rejection = std::convert::Infallible;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        let headers = req.headers().clone();
        let body = bytes::Bytes::from_request(req, state).await;
        Ok(Self { headers, body })
    }
}

impl Submitted {
    /// Its body, the nodes it went through (`swarmvm-hops`) and their ids (`swarmvm-via`);
    /// or why its body cannot be taken.
    fn parts(
        &self,
    ) -> Result<(bytes::Bytes, u32, &str), &axum::extract::rejection::BytesRejection> {
        let body = self.body.as_ref()?;
        Ok((body.clone(), hops(&self.headers), via(&self.headers)))
    }
}

/// A route's path parameters; parameters that cannot be read (not UTF-8 once decoded) get a
/// 400 with a JSON error like every other bad request.
struct Path<T>(T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned + Send> axum::extract::FromRequestParts<S>
    for Path<T>
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, ApiError> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(t)| Self(t))
            .map_err(|e| ApiError::bad_request(one_line_rejection(&e.body_text())))
    }
}

/// `POST /v1/contracts`: 202 `{"id", "state": "pending"}` once the sequencer stored it.
async fn post_contract(State(node): State<Web>, post: Submitted) -> Response {
    let (body, hops, via) = match post.parts() {
        Ok(parts) => parts,
        Err(e) => return body_refused(e),
    };
    match node.submit_contract(&body, hops, via).await {
        Ok(id) => {
            (StatusCode::ACCEPTED, Json(crate::protocol::ContractView::pending(id))).into_response()
        }
        Err(r) => refused(r),
    }
}

/// `POST /v1/contracts/batch`: 200 `{"results": [...]}`, one answer for each line, each with
/// the status and body `POST /v1/contracts` would have answered it alone with.
async fn post_contracts(State(node): State<Web>, post: Submitted) -> Response {
    let (body, hops, via) = match post.parts() {
        Ok(parts) => parts,
        Err(e) => return body_refused(e),
    };
    match node.submit_contracts(&body, hops, via).await {
        Ok(results) => Json(crate::protocol::BatchAnswer { results }).into_response(),
        Err(r) => refused(r),
    }
}

/// `POST /v1/registrations`: 202 `{"queued": N}` for tokens and modules queued for the next
/// cut; 200 `{"seq", "bundle"}` for a signed folder published.
async fn post_registrations(State(node): State<Web>, post: Submitted) -> Response {
    let (body, hops, via) = match post.parts() {
        Ok(parts) => parts,
        Err(e) => return body_refused(e),
    };
    match node.submit_registrations(&body, hops, via).await {
        Ok((status, value)) => {
            (StatusCode::from_u16(status).unwrap_or(StatusCode::OK), Json(value)).into_response()
        }
        Err(r) => refused(r),
    }
}

/// `GET /v1/wallets/{id}`: one registered wallet with its last nonce (404 when unknown).
async fn wallet(
    State(node): State<Web>,
    Path(id): Path<String>,
) -> Result<Json<crate::protocol::WalletView>, ApiError> {
    node.wallet(&id).map(Json).ok_or_else(|| ApiError {
        status: StatusCode::NOT_FOUND,
        message: format!("wallet {} is not registered", swarmvm_primitives::text::shown(&id)),
    })
}

/// `GET /v1/contracts/{id}`: what became of a contract (404 when no batch here held it).
async fn contract(
    State(node): State<Web>,
    Path(id): Path<String>,
) -> Result<Json<crate::protocol::ContractView>, ApiError> {
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
    State(node): State<Web>,
    Path(seq): Path<String>,
) -> Result<Json<crate::protocol::BundleAt>, ApiError> {
    let Ok(seq) = seq.parse::<u64>() else {
        return Err(ApiError::bad_request("seq is not a number"));
    };
    if let Some(message) = node.bundle_gone(seq) {
        return Err(ApiError { status: StatusCode::GONE, message });
    }
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
    State(node): State<Web>,
    q: Result<Query<PageQuery>, QueryRejection>,
) -> Result<Json<crate::protocol::BundlePage>, ApiError> {
    let Query(p) = q.map_err(|e| ApiError::bad_request(one_line_rejection(&e.body_text())))?;
    let limit = p.limit.unwrap_or(100);
    if limit == 0 || limit > MAX_PAGE {
        return Err(ApiError::bad_request(format!("limit must be from 1 to {MAX_PAGE}")));
    }
    let page = node.bundles_page(p.from.unwrap_or(1), limit);
    Ok(Json(page))
}

async fn post_bundle(
    State(node): State<Web>,
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
    Ok((StatusCode::ACCEPTED, Json(BundleAdded { info_hash: hash.to_string() })).into_response())
}

/// `GET /v1/state`: the whole state as one JSON object, written as it is read from a
/// snapshot (on a blocking thread), so its size is bounded by the disk, not by memory.
async fn whole_state(State(node): State<Web>) -> Result<Response, ApiError> {
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

/// The most entries one page of a state table holds.
const MAX_PAGE: usize = 1000;

/// `GET /v1/state/{table}`: a page of one table, in id order, with the id to ask after for
/// the next one.
async fn state_page(
    State(node): State<Web>,
    Path(name): Path<String>,
    q: Result<Query<StatePageQuery>, QueryRejection>,
) -> Result<Json<crate::protocol::StatePage>, ApiError> {
    let Query(p) = q.map_err(|e| ApiError::bad_request(one_line_rejection(&e.body_text())))?;
    let table = table_named(&name)?;
    let limit = p.limit.unwrap_or(100);
    if limit == 0 || limit > MAX_PAGE {
        return Err(ApiError::bad_request(format!("limit must be from 1 to {MAX_PAGE}")));
    }
    let page = tokio::task::spawn_blocking(move || {
        node.state_page(table, p.after.as_deref(), limit)
            .ok_or_else(|| ApiError::internal("the node stopped"))?
            .map_err(|e| ApiError::internal(one_line(&e)))
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(Json(page?))
}

/// The state table `name`, or a 404 that lists the tables.
fn table_named(name: &str) -> Result<swarmvm_vm::Table, ApiError> {
    swarmvm_vm::Table::from_name(name).ok_or_else(|| {
        let names: Vec<&str> = swarmvm_vm::Table::ALL.iter().map(|t| t.name()).collect();
        ApiError {
            status: StatusCode::NOT_FOUND,
            message: format!(
                "no state table '{}'; the tables are {}",
                swarmvm_primitives::text::shown(name),
                names.join(", ")
            ),
        }
    })
}

/// `GET /v1/state/{table}/{id}`: one entry (its id may hold `/`, as an enrollment's or a
/// vote's does), 404 when absent.
async fn state_entry(
    State(node): State<Web>,
    Path((name, id)): Path<(String, String)>,
) -> Result<Json<crate::protocol::StateEntry>, ApiError> {
    let table = table_named(&name)?;
    let entry = node
        .state_entry(table, &id)
        .ok_or_else(|| ApiError::internal("the node stopped"))?
        .map_err(|e| ApiError::internal(one_line(&e)))?;
    entry.map(Json).ok_or_else(|| ApiError {
        status: StatusCode::NOT_FOUND,
        message: format!(
            "no entry '{}' in the state table {}",
            swarmvm_primitives::text::shown(&id),
            table.name()
        ),
    })
}

/// `GET /v1/proof/{table}/{id}`: the entry or its absence, with a proof against the head of
/// the last commit.
async fn proof(
    State(node): State<Web>,
    Path((name, id)): Path<(String, String)>,
) -> Result<Json<crate::protocol::ProofAnswer>, ApiError> {
    let table = table_named(&name)?;
    if id.len() > MAX_PROVED_ID {
        return Err(ApiError::bad_request(format!("an id is at most {MAX_PROVED_ID} bytes")));
    }
    let answer = tokio::task::spawn_blocking(move || {
        node.proof(table, &id).ok_or_else(|| ApiError::internal("the node stopped"))?.map_err(|e| {
            match e {
                crate::reads::ProveError::OldHashing => {
                    ApiError { status: StatusCode::CONFLICT, message: one_line(&e) }
                }
                other => ApiError::internal(one_line(&other)),
            }
        })
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(Json(answer?))
}

/// The longest id a proof is asked for: longer than any id the machine stores.
const MAX_PROVED_ID: usize = 1024;

async fn evidence(State(node): State<Web>) -> Result<Json<EvidenceList>, ApiError> {
    let list = node.evidence().map_err(|e| ApiError::internal(one_line(&e)))?;
    Ok(Json(EvidenceList { evidence: list, equivocations: node.equivocations() }))
}

fn page(q: Result<Query<PageQuery>, QueryRejection>) -> Result<(u64, usize), ApiError> {
    let Query(p) = q.map_err(|e| ApiError::bad_request(one_line_rejection(&e.body_text())))?;
    let limit = p.limit.unwrap_or(100);
    if limit == 0 || limit > 10_000 {
        return Err(ApiError::bad_request("limit must be from 1 to 10000"));
    }
    Ok((p.from.unwrap_or(1), limit))
}

async fn receipts(
    State(node): State<Web>,
    q: Result<Query<PageQuery>, QueryRejection>,
) -> Result<Json<Receipts>, ApiError> {
    let (from, limit) = page(q)?;
    let list = node.receipts(from, limit).map_err(|e| ApiError::internal(one_line(&e)))?;
    Ok(Json(Receipts { receipts: list }))
}

async fn log(
    State(node): State<Web>,
    q: Result<Query<PageQuery>, QueryRejection>,
) -> Result<Json<Log>, ApiError> {
    let (from, limit) = page(q)?;
    let list = node.log(from, limit).map_err(|e| ApiError::internal(one_line(&e)))?;
    Ok(Json(Log { log: list }))
}

/// Binds `addr` and serves the API of `api` until the node stops, within `limits`, for the
/// `Host` names `allow_hosts` besides addresses and `localhost`.
pub(crate) fn serve(
    api: &Api,
    addr: SocketAddr,
    limits: HttpLimits,
    allow_hosts: &[String],
) -> Result<(), crate::NodeError> {
    let listener = listen(addr).map_err(|source| crate::NodeError::Http { addr, source })?;
    let bound = listener.local_addr().map_err(|source| crate::NodeError::Http { addr, source })?;
    api.set_http_addr(bound);
    let counts = Arc::new(HttpCounts::default());
    let web = Web(Arc::new(WebInner {
        api: api.clone(),
        events: Arc::new(Events::new(api.clone(), limits.max_connections)),
        counts: counts.clone(),
        limits: limits.clone(),
        long_polls: AtomicUsize::new(0),
    }));
    let mut app = router(web);
    if let Some(replica) = api.replica() {
        app = app.merge(swarmvm_raft::router(replica.cluster().clone()));
    }
    let served = Served {
        app,
        hosts: HostCheck::new(bound.port(), allow_hosts),
        limits,
        node_id: api.node_id().to_owned(),
        counts,
    };
    crate::conns::serve(listener, served, api.tasks());
    Ok(())
}
