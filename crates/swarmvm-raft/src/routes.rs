//! The replica's HTTP routes, for the node to merge into its API: `GET /v1/cluster/whoami`
//! and `POST /v1/cluster/raft/{kind}` (a signed [`Envelope`] in, a signed one out; a refused
//! message gets 403 and a one-line reason).

use axum::Json;
use axum::Router;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::{Cluster, ClusterError, Envelope};

/// The largest message taken: an append of up to 32 entries, one of which may carry a
/// registration request of 64 MiB (its modules in base64, escaped twice as JSON).
pub const MAX_MESSAGE: usize = 256 * 1024 * 1024;

/// The routes of `cluster`.
pub fn router(cluster: Cluster) -> Router {
    Router::new()
        .route(
            "/v1/cluster/whoami",
            get(|State(c): State<Cluster>| async move { Json(c.whoami()) }),
        )
        .route("/v1/cluster/raft/{kind}", post(message).layer(DefaultBodyLimit::max(MAX_MESSAGE)))
        .with_state(cluster)
}

async fn message(
    State(cluster): State<Cluster>,
    Path(kind): Path<String>,
    Json(envelope): Json<Envelope>,
) -> Response {
    match cluster.handle(&kind, envelope).await {
        Ok(reply) => Json(reply).into_response(),
        Err(e @ ClusterError::Message(_)) => {
            (StatusCode::FORBIDDEN, format!("{e}\n")).into_response()
        }
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")).into_response(),
    }
}
