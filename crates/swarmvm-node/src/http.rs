//! The HTTP API (axum, JSON). Every route calls the [`Node`] facade; bad requests get a 4xx
//! with `{"error": "<one line>"}`.

use std::net::SocketAddr;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{Value, json};
use swarmvm_swarm::{MagnetLink, Source, TorrentFile};

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

const ROUTES: [&str; 9] = [
    "GET /v1/status",
    "GET /v1/state",
    "GET /v1/state/root",
    "GET /v1/operations",
    "GET /v1/wallets",
    "GET /v1/bundles",
    "POST /v1/bundles {\"magnet\": ...} | {\"torrent_base64\": ...}",
    "GET /v1/receipts?from=N&limit=N",
    "GET /v1/log?from=N&limit=N",
];

/// The largest request body: a 16 MiB torrent in base64, with room for JSON.
const MAX_BODY: usize = 23 * 1024 * 1024;

/// The API's routes over `node`.
pub fn router(node: Node) -> Router {
    Router::new()
        .route("/", get(|| async { Json(json!({ "routes": ROUTES })) }))
        .route("/v1/status", get(|State(n): State<Node>| async move { Json(n.status()) }))
        .route("/v1/state", get(|State(n): State<Node>| async move { Json(n.state()) }))
        .route(
            "/v1/state/root",
            get(|State(n): State<Node>| async move {
                Json(json!({ "state_root": n.state_root().to_hex() }))
            }),
        )
        .route("/v1/operations", get(|State(n): State<Node>| async move { Json(n.operations()) }))
        .route("/v1/wallets", get(|State(n): State<Node>| async move { Json(n.wallets()) }))
        .route("/v1/bundles", get(list_bundles).post(post_bundle))
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
        message: format!("no route {method} {}; GET / lists them", uri.path()),
    }
}

async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError {
        status: StatusCode::METHOD_NOT_ALLOWED,
        message: format!("{method} is not allowed on {}", uri.path()),
    }
}

async fn list_bundles(State(node): State<Node>) -> Json<Value> {
    Json(json!({ "bundles": node.bundles() }))
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
    let Json(body) = body.map_err(|e| ApiError::bad_request(one_line_rejection(&e.body_text())))?;
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
    let hash = node.add(source).map_err(|e| ApiError::bad_request(one_line(&e)))?;
    Ok((StatusCode::ACCEPTED, Json(json!({ "info_hash": hash.to_string() }))).into_response())
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

/// Binds `addr` and serves the API until the node stops.
pub(crate) async fn serve(node: Node, addr: SocketAddr) -> Result<(), crate::NodeError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| crate::NodeError::Http { addr, source })?;
    let bound = listener.local_addr().map_err(|source| crate::NodeError::Http { addr, source })?;
    node.set_http_addr(bound);
    let mut stop = node.stopping();
    let app = router(node.clone());
    node.spawn(async move {
        let shutdown = async move {
            let _ = stop.wait_for(|s| *s).await;
        };
        if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(shutdown).await {
            tracing::warn!("http api stopped: {e}");
        }
    });
    Ok(())
}
