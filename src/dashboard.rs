//! The browser dashboard: a watchlist page served at `/`, embedded in the binary.
//!
//! The page (`src/dashboard/`) is plain HTML, CSS and an ES module, `app.js`, built on
//! the JavaScript client package (`clients/js`, `tickcast-client`): the package's
//! compiled modules are committed in `src/dashboard/client/` and served at
//! `/client/`, so `cargo build` needs no npm (`tests/js/run.sh` checks they are the
//! build of `clients/js/src`). `docs/dashboard.md` describes what the page does and how
//! its browser test runs.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE, X_CONTENT_TYPE_OPTIONS};
use hyper::{Response, StatusCode};

/// One embedded file and the path it is served at.
#[derive(Debug)]
pub struct Asset {
    /// Request path, e.g. `/app.js`.
    pub path: &'static str,
    /// `Content-Type` header value.
    pub content_type: &'static str,
    /// The file's bytes.
    pub body: &'static [u8],
}

/// One module of the client package, served at `/client/NAME`.
macro_rules! client_module {
    ($name:literal) => {
        Asset {
            path: concat!("/client/", $name),
            content_type: "text/javascript; charset=utf-8",
            body: include_bytes!(concat!("dashboard/client/", $name)),
        }
    };
}

/// Every file the dashboard serves.
pub const ASSETS: &[Asset] = &[
    Asset {
        path: "/",
        content_type: "text/html; charset=utf-8",
        body: include_bytes!("dashboard/index.html"),
    },
    Asset {
        path: "/index.html",
        content_type: "text/html; charset=utf-8",
        body: include_bytes!("dashboard/index.html"),
    },
    Asset {
        path: "/app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("dashboard/app.js"),
    },
    Asset {
        path: "/style.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("dashboard/style.css"),
    },
    client_module!("index.js"),
    client_module!("backoff.js"),
    client_module!("book.js"),
    client_module!("client.js"),
    client_module!("decode.js"),
    client_module!("fixed.js"),
    client_module!("gaps.js"),
    client_module!("session.js"),
];

/// The asset served at `path`, if any.
pub fn asset(path: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|a| a.path == path)
}

/// Whether `path` is one of the dashboard's [`ASSETS`].
pub fn serves(path: &str) -> bool {
    asset(path).is_some()
}

/// The response for a dashboard path: the asset, or `404` when [`serves`] is false.
///
/// Assets carry `Cache-Control: no-cache`: a browser revalidates on every load, so a
/// page from an older server is never mixed with a newer protocol.
pub fn response(path: &str) -> Response<Full<Bytes>> {
    let (status, content_type, body) = match asset(path) {
        Some(a) => (StatusCode::OK, a.content_type, a.body),
        None => (
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            &b"not found\n"[..],
        ),
    };
    let mut r = Response::new(Full::new(Bytes::from_static(body)));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_is_served_with_its_type_and_no_cache() {
        for a in ASSETS {
            assert!(serves(a.path));
            let r = response(a.path);
            assert_eq!(r.status(), StatusCode::OK);
            assert_eq!(r.headers()[CONTENT_TYPE], a.content_type);
            assert_eq!(r.headers()[CACHE_CONTROL], "no-cache");
            assert!(!a.body.is_empty(), "{} is empty", a.path);
        }
    }

    #[test]
    fn unknown_paths_are_not_assets() {
        for p in ["/ws", "/symbols", "/app.js.map", "/dashboard/app.js", ""] {
            assert!(!serves(p), "{p}");
            assert_eq!(response(p).status(), StatusCode::NOT_FOUND, "{p}");
        }
    }

    /// Every module the page imports, and every module they import in turn, is
    /// embedded: a module added to `clients/js/src` must be listed in [`ASSETS`].
    #[test]
    fn every_imported_module_is_embedded() {
        let mut checked = 0;
        for a in ASSETS.iter().filter(|a| a.path.ends_with(".js")) {
            let text = std::str::from_utf8(a.body).unwrap();
            let dir = &a.path[..a.path.rfind('/').unwrap() + 1];
            for line in text.lines() {
                let line = line.trim_start();
                if !(line.starts_with("import ") || line.starts_with("export ")) {
                    continue;
                }
                let Some(from) = line.split(" from ").nth(1) else {
                    continue;
                };
                let spec = from.trim_matches(|c| c == '\'' || c == '"' || c == ';');
                let path = match spec.strip_prefix("./") {
                    Some(rest) => format!("{dir}{rest}"),
                    None => spec.to_string(),
                };
                assert!(
                    asset(&path).is_some(),
                    "{} imports {spec}: not embedded",
                    a.path
                );
                checked += 1;
            }
        }
        assert!(checked >= 7, "{checked} imports checked");
    }

    #[test]
    fn the_page_links_the_embedded_assets() {
        let html = std::str::from_utf8(asset("/").unwrap().body).unwrap();
        for linked in ["/app.js", "/style.css"] {
            assert!(html.contains(&format!("\"{linked}\"")), "{linked}");
            assert!(asset(linked).is_some(), "{linked}");
        }
    }
}
