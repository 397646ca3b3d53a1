//! The HTTP client for the API of other nodes: a follower polling heads and forwarding
//! submissions, and the command line (`contract submit`, `bundle submit`). It speaks the
//! [`protocol`](crate::protocol): each route's method returns its typed answer, and every other
//! answer becomes a [`ClientError`] classed as the command line exits on it (4xx refused,
//! 5xx failed, no answer in time timed out), so no caller reads status codes. Plain JSON over
//! HTTP/1.1 with pooled connections; every request is bounded in time.

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_json::Value;
use swarmvm_primitives::{Classify, ErrorClass, Hash32};

use crate::protocol::{
    BundleAt, ContractView, ErrorBody, HeadAnswer, HeadQuery, RegistrationsAnswer,
    RegistrationsBody, Status, WalletView,
};

/// Why a request failed: no answer, or an answer that is not the one asked for.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The URL cannot be used.
    #[error("'{url}' is not an http:// or https:// URL of a node")]
    BadUrl {
        /// The URL given.
        url: String,
    },
    /// No answer: refused, reset.
    #[error("cannot reach {url}: {reason}")]
    Unreachable {
        /// The URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// No answer in time.
    #[error("{url} did not answer in time")]
    TimedOut {
        /// The URL.
        url: String,
    },
    /// The node refused the request (a 4xx), with its line.
    #[error("{url} refused it: {}", body.error)]
    Refused {
        /// The URL.
        url: String,
        /// The status.
        status: u16,
        /// `Retry-After`, in seconds (429).
        retry_after: Option<u64>,
        /// Its answer.
        body: ErrorBody,
    },
    /// The node failed to answer it (a 5xx, or a status this request never gets), with its
    /// line.
    #[error("{url} could not take it: {line}")]
    Failed {
        /// The URL.
        url: String,
        /// The status.
        status: u16,
        /// `Retry-After`, in seconds (503).
        retry_after: Option<u64>,
        /// Its line.
        line: String,
    },
    /// The answer is not what the route answers.
    #[error("{url} answered something else than {what}: {reason}")]
    Invalid {
        /// The URL.
        url: String,
        /// What was asked for.
        what: &'static str,
        /// Why it is not that.
        reason: String,
    },
}

impl ClientError {
    /// The answer's status, when there was one.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Refused { status, .. } | Self::Failed { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// `Retry-After`, when the answer gave one.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            Self::Refused { retry_after, .. } | Self::Failed { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// The refusal's body (4xx).
    pub fn refusal(&self) -> Option<&ErrorBody> {
        match self {
            Self::Refused { body, .. } => Some(body),
            _ => None,
        }
    }

    /// True when the node is busy or cannot reach the sequencer for now (429, 503): the same
    /// request may go through later.
    pub fn is_passing(&self) -> bool {
        matches!(self.status(), Some(429 | 503))
    }
}

impl Classify for ClientError {
    fn class(&self) -> ErrorClass {
        match self {
            Self::Refused { .. } => ErrorClass::Refused,
            Self::TimedOut { .. } => ErrorClass::TimedOut,
            Self::BadUrl { .. }
            | Self::Unreachable { .. }
            | Self::Failed { .. }
            | Self::Invalid { .. } => ErrorClass::Failed,
        }
    }
}

/// A node's answer: its status, `Retry-After` if any, and the body as JSON (`Value::Null` when
/// it is not JSON).
#[derive(Debug, Clone)]
pub struct Reply {
    /// The HTTP status code.
    pub status: u16,
    /// `Retry-After`, in seconds, when given.
    pub retry_after: Option<u64>,
    /// The body.
    pub body: Value,
}

impl Reply {
    /// True for a 2xx status.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The answer to a request answered `expected` with a `T`; any other is the error it is.
    fn expect<T: DeserializeOwned>(
        self,
        url: &str,
        expected: u16,
        what: &'static str,
    ) -> Result<T, ClientError> {
        if self.status != expected {
            return Err(self.error(url));
        }
        self.parse(url, what)
    }

    fn parse<T: DeserializeOwned>(self, url: &str, what: &'static str) -> Result<T, ClientError> {
        serde_json::from_value(self.body).map_err(|e| ClientError::Invalid {
            url: url.to_owned(),
            what,
            reason: e.to_string(),
        })
    }

    /// This answer as the error it is: a refusal (4xx) with its body, or a failure.
    pub fn error(&self, url: &str) -> ClientError {
        if (400..500).contains(&self.status) {
            let body = serde_json::from_value::<ErrorBody>(self.body.clone())
                .unwrap_or_else(|_| ErrorBody { error: self.error_line(), ..ErrorBody::default() });
            ClientError::Refused {
                url: url.to_owned(),
                status: self.status,
                retry_after: self.retry_after,
                body,
            }
        } else {
            ClientError::Failed {
                url: url.to_owned(),
                status: self.status,
                retry_after: self.retry_after,
                line: self.error_line(),
            }
        }
    }

    /// The `"error"` line of an error answer, else the status.
    pub fn error_line(&self) -> String {
        match self.body.get("error").and_then(Value::as_str) {
            Some(line) => line.to_owned(),
            None => format!("HTTP {}", self.status),
        }
    }
}

/// The client. Cloning shares its connection pool.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
}

/// The largest answer read (a head, a bundle record with its manifest, a status).
const MAX_REPLY: usize = 4 * 1024 * 1024;

impl Client {
    /// A client whose requests each take at most `timeout`. Redirects are never followed: a
    /// node answering one is answered as it is (a 3xx), so a submission is never posted again
    /// to wherever it points.
    pub fn new(timeout: Duration) -> Self {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .pool_idle_timeout(Duration::from_secs(20))
            .no_proxy()
            .build()
            .unwrap_or_default();
        Self { http }
    }

    /// `GET base + path`.
    pub async fn get(&self, base: &str, path: &str) -> Result<Reply, ClientError> {
        let url = join(base, path)?;
        self.send(self.http.get(&url), &url).await
    }

    /// `POST base + path` with `body` of `content_type` and extra `headers`.
    pub async fn post(
        &self,
        base: &str,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
        headers: &[(&str, String)],
    ) -> Result<Reply, ClientError> {
        let url = join(base, path)?;
        let mut request = self.http.post(&url).header("content-type", content_type).body(body);
        for (name, value) in headers {
            request = request.header(*name, value.as_str());
        }
        self.send(request, &url).await
    }

    /// `GET base + path`, answered `200` with a `T`; `404` is `None` when `missing` says
    /// it may be.
    async fn read<T: DeserializeOwned>(
        &self,
        base: &str,
        path: &str,
        what: &'static str,
    ) -> Result<Option<T>, ClientError> {
        let reply = self.get(base, path).await?;
        if reply.status == 404 {
            return Ok(None);
        }
        reply.expect(&join(base, path)?, 200, what).map(Some)
    }

    /// `GET /v1/status`.
    pub async fn status(&self, base: &str) -> Result<Status, ClientError> {
        let url = join(base, "/v1/status")?;
        self.get(base, "/v1/status").await?.expect(&url, 200, "a status")
    }

    /// `GET /v1/authorities`'s network id.
    pub async fn network(&self, base: &str) -> Result<String, ClientError> {
        #[derive(serde::Deserialize)]
        struct Authorities {
            network: String,
        }
        let url = join(base, "/v1/authorities")?;
        let a: Authorities =
            self.get(base, "/v1/authorities").await?.expect(&url, 200, "an authority set")?;
        Ok(a.network)
    }

    /// `GET /v1/wallets/{id}`: `None` when it is not registered.
    pub async fn wallet(&self, base: &str, id: &str) -> Result<Option<WalletView>, ClientError> {
        self.read(base, &format!("/v1/wallets/{id}"), "a wallet").await
    }

    /// `GET /v1/contracts/{id}`: `None` when it is unknown there.
    pub async fn contract(
        &self,
        base: &str,
        id: &Hash32,
    ) -> Result<Option<ContractView>, ClientError> {
        self.read(base, &format!("/v1/contracts/{id}"), "a contract").await
    }

    /// `GET /v1/bundles/{seq}`: `None` when it is not applied there.
    pub async fn bundle_at(&self, base: &str, seq: u64) -> Result<Option<BundleAt>, ClientError> {
        self.read(base, &format!("/v1/bundles/{seq}"), "a bundle").await
    }

    /// `GET /v1/head?seq=&iat=&wait=`: `None` when no fresh head is known there.
    pub async fn head(&self, base: &str, q: &HeadQuery) -> Result<Option<HeadAnswer>, ClientError> {
        let mut path = "/v1/head".to_owned();
        let params: Vec<String> = [("seq", q.seq), ("iat", q.iat), ("wait", q.wait)]
            .iter()
            .filter_map(|(k, v)| v.map(|v| format!("{k}={v}")))
            .collect();
        if !params.is_empty() {
            path = format!("{path}?{}", params.join("&"));
        }
        self.read(base, &path, "a head").await
    }

    /// `POST /v1/contracts`: the contract taken (202, pending).
    pub async fn submit_contract(
        &self,
        base: &str,
        token: &str,
    ) -> Result<ContractView, ClientError> {
        let url = join(base, "/v1/contracts")?;
        let reply = self
            .post(base, "/v1/contracts", "application/jose", token.as_bytes().to_vec(), &[])
            .await?;
        reply.expect(&url, 202, "a contract taken")
    }

    /// `POST /v1/registrations`.
    pub async fn submit_registrations(
        &self,
        base: &str,
        body: &RegistrationsBody,
    ) -> Result<RegistrationsAnswer, ClientError> {
        let url = join(base, "/v1/registrations")?;
        let bytes = serde_json::to_vec(body).map_err(|e| ClientError::Invalid {
            url: url.clone(),
            what: "a request",
            reason: e.to_string(),
        })?;
        let reply = self.post(base, "/v1/registrations", "application/json", bytes, &[]).await?;
        if !reply.is_success() {
            return Err(reply.error(&url));
        }
        reply.parse(&url, "registrations taken")
    }

    async fn send(
        &self,
        request: reqwest::RequestBuilder,
        url: &str,
    ) -> Result<Reply, ClientError> {
        let unreachable = |e: reqwest::Error| {
            if e.is_timeout() {
                ClientError::TimedOut { url: url.to_owned() }
            } else {
                ClientError::Unreachable { url: url.to_owned(), reason: reason(&e) }
            }
        };
        let mut response = request.send().await.map_err(unreachable)?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok());
        let mut bytes = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(unreachable)? {
            if bytes.len() + chunk.len() > MAX_REPLY {
                return Err(ClientError::Unreachable {
                    url: url.to_owned(),
                    reason: format!("the answer is larger than {MAX_REPLY} bytes"),
                });
            }
            bytes.extend_from_slice(&chunk);
        }
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Ok(Reply { status, retry_after, body })
    }
}

/// The error and its causes on one line.
fn reason(err: &reqwest::Error) -> String {
    let mut out = if err.is_timeout() { "timed out".to_owned() } else { err.to_string() };
    let mut cause = std::error::Error::source(err);
    while let Some(c) = cause {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cause = c.source();
    }
    out
}

/// `base` (a node's URL, with or without a trailing slash) followed by `path` (from `/`).
fn join(base: &str, path: &str) -> Result<String, ClientError> {
    let trimmed = base.trim_end_matches('/');
    if !(trimmed.starts_with("http://") || trimmed.starts_with("https://")) {
        return Err(ClientError::BadUrl { url: base.to_owned() });
    }
    Ok(format!("{trimmed}{path}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_join_with_one_slash_and_must_be_http() {
        assert_eq!(
            join("http://127.0.0.1:8080/", "/v1/head").unwrap(),
            "http://127.0.0.1:8080/v1/head"
        );
        assert_eq!(join("http://a:1", "/v1").unwrap(), "http://a:1/v1");
        assert!(matches!(join("127.0.0.1:8080", "/v1"), Err(ClientError::BadUrl { .. })));
        assert!(matches!(join("file:///etc", "/v1"), Err(ClientError::BadUrl { .. })));
    }
}
