//! The web explorer: a static single-page app compiled into the binary.
//!
//! Design note: the page is three files (HTML, JS, CSS) included with `include_str!`, so a node
//! serves its explorer with no build step, no CDN and no file on disk. The page reads the same
//! public JSON endpoints as any client; it holds no server-side state. Assets are served with a
//! content hash as `ETag` and `Cache-Control: no-cache`: browsers revalidate on every load (a
//! cheap 304) and never run a stale script after the node is upgraded.

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

const HTML: &str = include_str!("../assets/explorer.html");
const JS: &str = include_str!("../assets/explorer.js");
const CSS: &str = include_str!("../assets/explorer.css");

/// The page may load only its own script, style and API; no inline script, no framing.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
                   img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// FNV-1a 64 of an asset, computed at compile time: a stable `ETag` per build.
const fn fnv1a(s: &str) -> u64 {
    let bytes = s.as_bytes();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < bytes.len() {
        h ^= bytes[i] as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
        i += 1;
    }
    h
}

/// One compiled-in asset.
struct Asset {
    body: &'static str,
    content_type: &'static str,
    hash: u64,
}

const PAGE: Asset = Asset {
    body: HTML,
    content_type: "text/html; charset=utf-8",
    hash: fnv1a(HTML),
};
const SCRIPT: Asset = Asset {
    body: JS,
    content_type: "text/javascript; charset=utf-8",
    hash: fnv1a(JS),
};
const STYLE: Asset = Asset {
    body: CSS,
    content_type: "text/css; charset=utf-8",
    hash: fnv1a(CSS),
};

impl Asset {
    fn respond(&self, request: &HeaderMap) -> Response {
        let etag = format!("\"{:016x}\"", self.hash);
        let mut headers = HeaderMap::new();
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        headers.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        if let Ok(v) = HeaderValue::from_str(&etag) {
            headers.insert(header::ETAG, v);
        }
        let fresh = request
            .get(header::IF_NONE_MATCH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
        if fresh {
            return (StatusCode::NOT_MODIFIED, headers).into_response();
        }
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(self.content_type),
        );
        if self.content_type.starts_with("text/html") {
            headers.insert(
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(CSP),
            );
            headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
        }
        (headers, self.body).into_response()
    }
}

async fn page(headers: HeaderMap) -> Response {
    PAGE.respond(&headers)
}

async fn script(headers: HeaderMap) -> Response {
    SCRIPT.respond(&headers)
}

async fn style(headers: HeaderMap) -> Response {
    STYLE.respond(&headers)
}

/// The explorer's routes: the page at `/` and `/explorer`, and its two assets.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(page))
        .route("/explorer", get(page))
        .route("/assets/explorer.js", get(script))
        .route("/assets/explorer.css", get(style))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assets_are_self_contained() {
        // No network fetch: every URL the page loads is one of ours.
        for asset in [HTML, JS, CSS] {
            assert!(!asset.contains("http://"), "absolute URL in an asset");
            assert!(!asset.contains("https://"), "absolute URL in an asset");
        }
        assert!(HTML.contains("/assets/explorer.js"));
        assert!(HTML.contains("/assets/explorer.css"));
    }

    #[test]
    fn etag_revalidation() {
        let first = SCRIPT.respond(&HeaderMap::new());
        assert_eq!(first.status(), StatusCode::OK);
        let etag = first.headers()[header::ETAG].clone();
        assert_eq!(
            first.headers()[header::CONTENT_TYPE],
            "text/javascript; charset=utf-8"
        );
        let mut again = HeaderMap::new();
        again.insert(header::IF_NONE_MATCH, etag);
        assert_eq!(SCRIPT.respond(&again).status(), StatusCode::NOT_MODIFIED);
    }
}
