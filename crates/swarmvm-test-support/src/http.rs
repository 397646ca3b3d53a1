//! A minimal HTTP/1.1 client over a real socket, for API tests.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use serde_json::Value;

/// Sends one request (`Connection: close`) and returns the status code and the JSON body
/// (`Value::Null` if the body is not JSON).
pub fn request(addr: SocketAddr, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
    let host = addr.to_string();
    let r = exchange(addr, method, path, &[("Host", &host)], body.unwrap_or(""));
    (r.status, r.json)
}

/// A response: status, header lines (lowercase names) and body.
#[derive(Debug, Clone)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// `(name, value)` in order, names lowercase.
    pub headers: Vec<(String, String)>,
    /// The body as JSON (`Value::Null` when it is not).
    pub json: Value,
    /// The body as text.
    pub body: String,
}

impl Response {
    /// The first value of header `name` (lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// Sends one request with exactly these headers (plus `Connection: close`, a JSON content
/// type and the length) and reads the whole response. A server may answer before it has read
/// a large body, and a node under load sheds connections (a reset, as a new connection beyond
/// its limit gets): the response is read even when the body could not be sent, and a
/// connection reset before any response is tried again, at most five times, as a client would.
pub fn exchange(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Response {
    let mut head = format!("{method} {path} HTTP/1.1\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!(
        "Connection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    ));
    let mut last = None;
    for attempt in 0..5 {
        if attempt > 0 {
            std::thread::sleep(Duration::from_millis(50 * attempt));
        }
        let mut stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let sent =
            stream.write_all(head.as_bytes()).and_then(|()| stream.write_all(body.as_bytes()));
        let mut raw = Vec::new();
        let read = stream.read_to_end(&mut raw);
        if raw.starts_with(b"HTTP/") {
            return parse_response(&raw);
        }
        match (sent, read) {
            (Err(e), _) | (_, Err(e)) if is_reset(&e) => last = Some(e),
            (Err(e), _) | (_, Err(e)) => panic!("{method} {path}: {e}"),
            (Ok(()), Ok(_)) => return parse_response(&raw),
        }
    }
    panic!("{method} {path}: the connection was reset five times: {last:?}")
}

fn is_reset(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::BrokenPipe
            | std::io::ErrorKind::ConnectionAborted
    )
}

/// Parses a whole HTTP/1.1 response.
pub fn parse_response(raw: &[u8]) -> Response {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status: u16 = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an http response: {text:?}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let chunked = headers.iter().any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"));
    let body = if chunked { dechunk(body) } else { body.to_owned() };
    Response { status, headers, json: serde_json::from_str(&body).unwrap_or(Value::Null), body }
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        body = &rest[n + 2..];
    }
    out
}

/// `GET path`.
pub fn get(addr: SocketAddr, path: &str) -> (u16, Value) {
    request(addr, "GET", path, None)
}

/// `POST path` with a JSON body.
pub fn post(addr: SocketAddr, path: &str, body: &str) -> (u16, Value) {
    request(addr, "POST", path, Some(body))
}
