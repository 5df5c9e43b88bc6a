//! The one HTTP port: `/ws` (WebSocket upgrade), `/publish`, `/healthz` (liveness),
//! `/readyz` (readiness), `/symbols`, `/stats`, `/metrics`, the dashboard, and the
//! echo route when `echo_path` is set.
//!
//! Every route is a GET; HEAD gets the same answer without its body (hyper leaves a
//! HEAD response's body out and keeps its `Content-Length`), and any other method on
//! a route gets `405` with `Allow: GET, HEAD`.
//!
//! Each writer core runs [`accept_loop`] on its own listener (with the TLS handshake
//! when `[tls]` is set) and serves HTTP/1.1 with hyper; an upgraded WebSocket stays on
//! that core ([`Handle::adopt`]).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::json;
use tokio::net::TcpStream;

use std::sync::atomic::Ordering;

use crate::admission::Refusal;
use crate::app::App;
use crate::fanout::{Handle, Mode};
use crate::transport::Transport;

type Body = Full<Bytes>;

/// Accepts connections on one core's listener until the core stops: TLS handshake (when
/// configured, bounded by `handshake_timeout_ms`), then HTTP.
pub async fn accept_loop(listener: std::net::TcpListener, core: Handle, app: Arc<App>) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(core = core.core_id(), error = %e, "cannot register listener");
            return;
        }
    };
    loop {
        match listener.accept().await {
            Ok((tcp, peer)) => {
                let _ = tcp.set_nodelay(true);
                let core = core.clone();
                let app = app.clone();
                match app.tls.clone() {
                    None => {
                        tokio::task::spawn_local(serve(tcp, peer, core, app));
                    }
                    Some(config) => {
                        let acceptor = tokio_rustls::TlsAcceptor::from(config);
                        tokio::task::spawn_local(async move {
                            let limit =
                                Duration::from_millis(app.config.limits.handshake_timeout_ms);
                            match tokio::time::timeout(limit, acceptor.accept(tcp)).await {
                                Ok(Ok(tls)) => serve(tls, peer, core, app).await,
                                Ok(Err(e)) => {
                                    tracing::debug!(%peer, error = %e, "TLS handshake failed")
                                }
                                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                            }
                        });
                    }
                }
            }
            Err(e) => {
                // Out of descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Serves one accepted TCP connection.
pub async fn serve<IO>(io: IO, peer: SocketAddr, core: Handle, shared: Arc<App>)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let handshake_ms = shared.config.limits.handshake_timeout_ms;
    let svc = service_fn(move |req| {
        let core = core.clone();
        let shared = shared.clone();
        async move { Ok::<_, Infallible>(route(req, core, shared, peer)) }
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_millis(handshake_ms))
        .serve_connection(TokioIo::new(io), svc)
        .with_upgrades();
    if let Err(e) = conn.await {
        tracing::debug!(%peer, error = %e, "http connection ended with an error");
    }
}

fn route(
    mut req: Request<Incoming>,
    core: Handle,
    shared: Arc<App>,
    peer: SocketAddr,
) -> Response<Body> {
    let path = req.uri().path().to_string();
    let method = if req.method() == Method::HEAD {
        Method::GET
    } else {
        req.method().clone()
    };
    let echo = shared.config.echo_path.as_deref() == Some(path.as_str());
    match (&method, path.as_str()) {
        (&Method::GET, "/ws") => upgrade(&mut req, core, &shared, peer, Mode::Subscriber),
        (&Method::GET, _) if echo => upgrade(&mut req, core, &shared, peer, Mode::Echo),
        (&Method::GET, "/publish") => publish_upgrade(&mut req, shared, peer),
        (&Method::GET, "/healthz") => {
            let (status, body) = shared.stats.bus.healthz(shared.symbols.len());
            json_response(status, &body)
        }
        (&Method::GET, "/readyz") => {
            let (status, body) = shared.stats.readyz(&shared.config.readiness);
            json_response(status, &body)
        }
        (&Method::GET, "/symbols") => {
            let list: Vec<_> = shared
                .symbols
                .all()
                .iter()
                .enumerate()
                .map(|(id, s)| json!({"id": id, "name": s.as_str()}))
                .collect();
            json_response(StatusCode::OK, &json!(list))
        }
        (&Method::GET, "/stats") => json_response(StatusCode::OK, &shared.stats.to_json()),
        (&Method::GET, "/metrics") => {
            let mut r = text_response(
                StatusCode::OK,
                &crate::metrics::render(&shared.stats, &shared.config.readiness),
            );
            r.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            r
        }
        (&Method::GET, p) if crate::dashboard::serves(p) => crate::dashboard::response(p),
        (_, p) if echo || is_builtin_path(p) => {
            let mut r = text_response(
                StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed: use GET\n",
            );
            r.headers_mut()
                .insert(hyper::header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            r
        }
        _ => text_response(StatusCode::NOT_FOUND, "not found\n"),
    }
}

/// The API's own paths; the dashboard's are [`crate::dashboard::serves`].
const ROUTES: &[&str] = &[
    "/ws", "/publish", "/healthz", "/readyz", "/symbols", "/stats", "/metrics",
];

/// Whether `path` is one of the server's own routes (the API's or the dashboard's), so
/// that `echo_path` cannot shadow it.
pub fn is_builtin_path(path: &str) -> bool {
    ROUTES.contains(&path) || crate::dashboard::serves(path)
}

/// Whether `req` may be upgraded: a GET (not a HEAD) asking for a WebSocket.
fn wants_websocket(req: &Request<Incoming>) -> bool {
    req.method() == Method::GET && fastwebsockets::upgrade::is_upgrade_request(req)
}

/// Upgrades `/ws` (or the echo route, `mode`) after the origin, auth and admission
/// checks, and hands the socket to this core.
fn upgrade(
    req: &mut Request<Incoming>,
    core: Handle,
    shared: &App,
    peer: SocketAddr,
    mode: Mode,
) -> Response<Body> {
    let rejected = &shared.stats.rejected;
    let allowed = &shared.config.limits.allowed_origins;
    if let Some(origin) = req.headers().get(hyper::header::ORIGIN) {
        if !allowed.is_empty() && !allowed.iter().any(|a| a.as_bytes() == origin.as_bytes()) {
            rejected.origin.fetch_add(1, Ordering::Relaxed);
            return text_response(StatusCode::FORBIDDEN, "origin not allowed\n");
        }
    }
    let entitlements = match &shared.config.auth {
        None => None,
        Some(cfg) => {
            let header = req
                .headers()
                .get(hyper::header::AUTHORIZATION)
                .map(|v| v.as_bytes());
            match crate::auth::authenticate(cfg, header, req.uri().query()) {
                Ok(e) => Some(e),
                Err(e) => {
                    rejected.auth.fetch_add(1, Ordering::Relaxed);
                    let mut r = text_response(StatusCode::UNAUTHORIZED, &format!("{e}\n"));
                    r.headers_mut().insert(
                        hyper::header::WWW_AUTHENTICATE,
                        HeaderValue::from_static("Bearer error=\"invalid_token\""),
                    );
                    return r;
                }
            }
        }
    };
    // After the token check, so that a page can test a token with a plain GET (which
    // answers 426 when the token is good): a browser's failed WebSocket says nothing.
    if !wants_websocket(req) {
        return upgrade_required();
    }
    let permit = match shared.admission.admit(peer.ip()) {
        Ok(p) => p,
        Err(e) => {
            let status = match e {
                Refusal::ServerFull(_) => {
                    rejected.server_full.fetch_add(1, Ordering::Relaxed);
                    StatusCode::SERVICE_UNAVAILABLE
                }
                Refusal::PerIp(_) => {
                    rejected.per_ip.fetch_add(1, Ordering::Relaxed);
                    StatusCode::TOO_MANY_REQUESTS
                }
            };
            return text_response(status, &format!("{e}\n"));
        }
    };
    let (response, fut) = match fastwebsockets::upgrade::upgrade(&mut *req) {
        Ok(v) => v,
        Err(e) => {
            return text_response(
                StatusCode::BAD_REQUEST,
                &format!("bad WebSocket handshake: {e}\n"),
            )
        }
    };
    tokio::task::spawn_local(async move {
        let ws = match fut.await {
            Ok(ws) => ws,
            Err(e) => {
                tracing::debug!(%peer, error = %e, "upgrade failed");
                return;
            }
        };
        let upgraded = ws.into_inner().into_inner();
        // Take the socket back from hyper: the writer core writes to it directly.
        let (transport, read_buf) = match upgraded.downcast::<TokioIo<TcpStream>>() {
            Ok(parts) => (Transport::Plain(parts.io.into_inner()), parts.read_buf),
            Err(upgraded) => {
                match upgraded.downcast::<TokioIo<tokio_rustls::server::TlsStream<TcpStream>>>() {
                    Ok(parts) => {
                        let (tcp, session) = parts.io.into_inner().into_inner();
                        (
                            Transport::Tls(tcp, Box::new(std::cell::RefCell::new(session))),
                            parts.read_buf,
                        )
                    }
                    Err(_) => {
                        tracing::error!(%peer, "upgraded connection is neither TCP nor TLS over TCP");
                        return;
                    }
                }
            }
        };
        core.adopt(transport, read_buf, peer, permit, entitlements, mode);
    });
    response.map(|_| Full::new(Bytes::new()))
}

/// Handles `GET /publish`: checks the token, then upgrades and runs the connection on
/// the current writer core's runtime.
fn publish_upgrade(
    req: &mut Request<Incoming>,
    shared: Arc<App>,
    peer: SocketAddr,
) -> Response<Body> {
    let auth = crate::publish::authorize(
        shared.config.publish_token.as_deref(),
        req.uri().query(),
        req.headers()
            .get(hyper::header::AUTHORIZATION)
            .map(|h| h.as_bytes()),
    );
    match auth {
        Ok(()) => {}
        Err(crate::publish::AuthError::Disabled) => {
            return text_response(
                StatusCode::NOT_FOUND,
                &format!("{}\n", crate::publish::AuthError::Disabled),
            )
        }
        Err(e) => {
            let mut r = text_response(StatusCode::UNAUTHORIZED, &format!("{e}\n"));
            r.headers_mut().insert(
                hyper::header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer"),
            );
            return r;
        }
    }
    if !wants_websocket(req) {
        return upgrade_required();
    }
    let Some(tx) = shared.publish.sender() else {
        return text_response(StatusCode::SERVICE_UNAVAILABLE, "server shutting down\n");
    };
    let (response, fut) = match fastwebsockets::upgrade::upgrade(&mut *req) {
        Ok(v) => v,
        Err(e) => {
            return text_response(
                StatusCode::BAD_REQUEST,
                &format!("bad WebSocket handshake: {e}\n"),
            )
        }
    };
    tokio::task::spawn_local(async move {
        match fut.await {
            Ok(ws) => crate::publish::run(ws, shared, tx, peer).await,
            Err(e) => tracing::debug!(%peer, error = %e, "publish upgrade failed"),
        }
    });
    response.map(|_| Full::new(Bytes::new()))
}

/// `426`, with the `Upgrade` header RFC 9110 §15.5.22 asks of it.
fn upgrade_required() -> Response<Body> {
    let mut r = text_response(
        StatusCode::UPGRADE_REQUIRED,
        "this endpoint speaks WebSocket: send an Upgrade: websocket request\n",
    );
    r.headers_mut().insert(
        hyper::header::UPGRADE,
        HeaderValue::from_static("websocket"),
    );
    r
}

/// A JSON response.
pub fn json_response(status: StatusCode, v: &serde_json::Value) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(
        serde_json::to_vec(v).unwrap_or_default(),
    )));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

/// A plain-text response.
pub fn text_response(status: StatusCode, body: &str) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}
