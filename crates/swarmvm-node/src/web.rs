//! What every answer of the HTTP API shares: the error body, the `Host` and `Origin`
//! checks that keep web pages of other sites out, and the headers on every answer.

use axum::Json;
use axum::http::{Method, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hyper::body::Incoming;

use crate::protocol::ErrorBody;

/// An error response: a status and one line.
#[derive(Debug)]
pub struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) message: String,
}

impl ApiError {
    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self { status: StatusCode::BAD_REQUEST, message: message.into() }
    }

    pub(crate) fn internal(message: impl Into<String>) -> Self {
        Self { status: StatusCode::INTERNAL_SERVER_ERROR, message: message.into() }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(ErrorBody { error: self.message, ..ErrorBody::default() }))
            .into_response()
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
pub(crate) fn cross_origin_write(req: &Request<Incoming>) -> bool {
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
pub(crate) fn harden(headers: &mut axum::http::HeaderMap) {
    use axum::http::HeaderValue;
    headers
        .entry(header::CONTENT_SECURITY_POLICY)
        .or_insert(HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
}

pub(crate) fn refusal(status: StatusCode, message: String) -> Response {
    ApiError { status, message }.into_response()
}

/// A rejection's text on one line.
pub(crate) fn one_line_rejection(text: &str) -> String {
    text.replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use super::*;

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
