//! A small HTTP client for the API of other nodes: a follower polling heads and forwarding
//! submissions, and the command line (`contract submit`, `bundle submit`). Plain JSON over
//! HTTP/1.1 with pooled connections; every request is bounded in time.

use std::time::Duration;

use serde_json::Value;

/// Why a request got no answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The URL cannot be used.
    #[error("'{url}' is not an http:// or https:// URL of a node")]
    BadUrl {
        /// The URL given.
        url: String,
    },
    /// No answer: refused, reset, timed out.
    #[error("cannot reach {url}: {reason}")]
    Unreachable {
        /// The URL.
        url: String,
        /// Why.
        reason: String,
    },
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

    async fn send(
        &self,
        request: reqwest::RequestBuilder,
        url: &str,
    ) -> Result<Reply, ClientError> {
        let unreachable = |e: reqwest::Error| ClientError::Unreachable {
            url: url.to_owned(),
            reason: reason(&e),
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
