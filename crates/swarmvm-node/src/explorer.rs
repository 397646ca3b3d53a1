//! The explorer: a read-only page served at `/` to browsers, built into the binary (its files
//! are in `crates/swarmvm-node/explorer/`, embedded at compile time; no build step, no CDN).
//! It reads the same `/v1` routes as scripts and redraws from `GET /v1/events`.
//!
//! `/` answers the page when the request prefers HTML (`Accept: text/html`, as browsers
//! send) and the JSON list of routes otherwise, so scripts see what they always saw. The page
//! and its files carry a strict Content-Security-Policy: scripts, styles and images from this
//! node only, requests to this node only, no inline code, no framing, and Trusted Types
//! required, so a value from the network can never become markup or code.

use std::sync::LazyLock;

use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// The page's policy: its own files only, no inline script or style, requests only to this
/// node, no framing, no forms, no `<base>`, and DOM sinks locked by Trusted Types.
pub(crate) const PAGE_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; \
    frame-ancestors 'none'; require-trusted-types-for 'script'; trusted-types 'none'";

/// One embedded file.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
}

const PAGE: Asset = Asset {
    name: "index.html",
    content_type: "text/html; charset=utf-8",
    bytes: include_bytes!("../explorer/index.html"),
};

/// The files under `/explorer/`.
const ASSETS: [Asset; 8] = [
    Asset {
        name: "app.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../explorer/app.js"),
    },
    Asset {
        name: "proof.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../explorer/proof.js"),
    },
    Asset {
        name: "wallet.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../explorer/wallet.js"),
    },
    // The client module for wallet holders, served as it is committed.
    Asset {
        name: "swarmvm.mjs",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../../../clients/js/swarmvm.mjs"),
    },
    Asset {
        name: "style.css",
        content_type: "text/css; charset=utf-8",
        bytes: include_bytes!("../explorer/style.css"),
    },
    Asset {
        name: "icon.svg",
        content_type: "image/svg+xml",
        bytes: include_bytes!("../explorer/icon.svg"),
    },
    Asset {
        name: "uPlot.iife.min.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../explorer/vendor/uPlot.iife.min.js"),
    },
    Asset {
        name: "uPlot.min.css",
        content_type: "text/css; charset=utf-8",
        bytes: include_bytes!("../explorer/vendor/uPlot.min.css"),
    },
];

/// Each file's entity tag: the start of its SHA-256, so a browser revalidates cheaply.
static TAGS: LazyLock<Vec<String>> = LazyLock::new(|| {
    std::iter::once(&PAGE)
        .chain(ASSETS.iter())
        .map(|a| format!("\"{}\"", &swarmvm_primitives::Hash32::digest(a.bytes).to_hex()[..16]))
        .collect()
});

/// True when the request prefers HTML to JSON: `text/html` listed, before any JSON type.
pub(crate) fn wants_html(headers: &HeaderMap) -> bool {
    let accept = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect::<Vec<_>>()
        .join(",")
        .to_ascii_lowercase();
    let position = |kind: &str| {
        accept.split(',').position(|part| {
            let mut fields = part.split(';');
            let matches = fields.next().is_some_and(|t| t.trim() == kind);
            // `q=0` means "not this".
            let refused = fields.any(|f| {
                f.trim().strip_prefix("q=").is_some_and(|q| q.trim().parse::<f32>() == Ok(0.0))
            });
            matches && !refused
        })
    };
    match (position("text/html"), position("application/json")) {
        (Some(html), Some(json)) => html < json,
        (Some(_), None) => true,
        (None, _) => false,
    }
}

fn serve(asset: &Asset, tag: &str, request: &HeaderMap) -> Response {
    let mut headers = HeaderMap::new();
    headers.insert(header::ETAG, HeaderValue::from_str(tag).expect("hex is a valid header"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(PAGE_CSP));
    let fresh = request
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == tag));
    if fresh {
        return (StatusCode::NOT_MODIFIED, headers).into_response();
    }
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(asset.content_type));
    (headers, asset.bytes).into_response()
}

/// `GET /`: the page for browsers, the list of routes for scripts.
pub(crate) async fn index(request: HeaderMap) -> Response {
    let mut response = if wants_html(&request) {
        serve(&PAGE, &TAGS[0], &request)
    } else {
        axum::Json(json!({ "routes": crate::protocol::ROUTES })).into_response()
    };
    response.headers_mut().insert(header::VARY, HeaderValue::from_static("Accept"));
    response
}

/// `GET /explorer/{name}`: one of the page's files.
pub(crate) async fn asset(Path(name): Path<String>, request: HeaderMap) -> Response {
    match ASSETS.iter().position(|a| a.name == name) {
        Some(i) => serve(&ASSETS[i], &TAGS[i + 1], &request),
        None => crate::web::not_found_response(&format!("/explorer/{name}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT, HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn browsers_get_the_page_and_scripts_get_json() {
        // Chromium's and Firefox's navigation Accept headers.
        assert!(wants_html(&accept(
            "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,*/*;q=0.8"
        )));
        assert!(wants_html(&accept("text/html")));
        assert!(wants_html(&accept("text/html, application/json")));
        // curl, reqwest and fetch() send */* or nothing; scripts ask for JSON.
        assert!(!wants_html(&HeaderMap::new()));
        assert!(!wants_html(&accept("*/*")));
        assert!(!wants_html(&accept("application/json")));
        assert!(!wants_html(&accept("application/json, text/html")));
        assert!(!wants_html(&accept("text/html;q=0, application/json")));
        assert!(!wants_html(&accept("text/htmlx")));
    }

    #[test]
    fn every_file_the_page_names_is_served() {
        let page = std::str::from_utf8(PAGE.bytes).unwrap();
        for a in &ASSETS {
            if a.name.ends_with(".js") || a.name.ends_with(".css") || a.name.ends_with(".svg") {
                assert!(page.contains(&format!("/explorer/{}", a.name)), "{}", a.name);
            }
        }
        // Nothing inline: the policy would refuse it.
        assert!(!page.contains("<script>") && !page.contains("style="), "inline code in the page");
    }
}
