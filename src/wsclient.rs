//! The WebSocket client connection shared by the exchange feed and the Rust client:
//! a `ws://` or `wss://` URL parsed into a [`Target`], TCP, TLS with rustls (ring
//! provider, the webpki roots plus an optional extra CA file) for `wss://`, then the
//! WebSocket handshake of fastwebsockets over a hyper client connection.
//!
//! Either way the result is the same type ([`Ws`]): hyper hands back the connection
//! as [`Upgraded`], whatever stream it ran over.

use std::path::Path;
use std::sync::Arc;

use fastwebsockets::{WebSocket, WebSocketError};
use http_body_util::Empty;
use hyper::body::Bytes;
use hyper::header::{AUTHORIZATION, CONNECTION, HOST, UPGRADE, USER_AGENT};
use hyper::upgrade::Upgraded;
use hyper::{Request, Uri};
use hyper_util::rt::TokioIo;
use thiserror::Error;
use tokio::net::TcpStream;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;

/// An open client WebSocket, over TCP or TLS.
pub type Ws = WebSocket<TokioIo<Upgraded>>;

/// Why a connection could not be opened.
#[derive(Debug, Error)]
pub enum ConnectError {
    /// The URL is not a `ws://` or `wss://` URL with a host.
    #[error("invalid url {0:?}: expected ws://host[:port]/path or wss://…")]
    Url(String),
    /// TCP connect failed.
    #[error("connect failed: {0}")]
    Connect(std::io::Error),
    /// The TLS client could not be set up (CA file unreadable or invalid) or the TLS
    /// handshake failed.
    #[error("tls: {0}")]
    Tls(String),
    /// The WebSocket handshake failed.
    #[error("websocket: {0}")]
    WebSocket(#[from] WebSocketError),
}

/// Where to connect, from the URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `wss://`: TLS before the handshake.
    pub tls: bool,
    /// Host name or IP address (IPv6 without brackets), for TCP and TLS (SNI and
    /// certificate check).
    pub host: String,
    /// Port; when the URL has none, 443 for `wss://` and 80 for `ws://`.
    pub port: u16,
    /// `host` or `host:port` as in the URL, for the Host header.
    pub authority: String,
    /// Path and query, `/` when the URL has none.
    pub path: String,
}

impl Target {
    /// Parses `ws://host[:port]/path` or `wss://host[:port]/path`.
    pub fn parse(url: &str) -> Result<Target, ConnectError> {
        let bad = || ConnectError::Url(url.to_string());
        let uri: Uri = url.parse().map_err(|_| bad())?;
        let tls = match uri.scheme_str() {
            Some("wss") => true,
            Some("ws") => false,
            _ => return Err(bad()),
        };
        let host = uri.host().filter(|h| !h.is_empty()).ok_or_else(bad)?;
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let default_port = if tls { 443 } else { 80 };
        let port = uri.port_u16().unwrap_or(default_port);
        let authority = uri
            .authority()
            .map(|a| a.as_str().to_string())
            .ok_or_else(bad)?;
        let path = uri
            .path_and_query()
            .map(|p| p.as_str())
            .filter(|p| !p.is_empty())
            .unwrap_or("/")
            .to_string();
        Ok(Target {
            tls,
            host,
            port,
            authority,
            path,
        })
    }
}

/// The `set_max_message_size` that makes fastwebsockets accept a frame of up to `max`
/// bytes. It refuses a frame of `max_message_size` bytes *or more*, and tickcast's
/// limits are inclusive (a message of exactly the limit passes).
pub const fn inclusive_limit(max: usize) -> usize {
    max.saturating_add(1)
}

/// A TLS client trusting the webpki roots and, when given, the certificates of the
/// PEM file `ca_file` (a private CA, or a test server's self-signed certificate).
/// Offers ALPN `http/1.1`, as the WebSocket handshake needs.
pub fn tls_connector(ca_file: Option<&Path>) -> Result<TlsConnector, ConnectError> {
    let mut roots = RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = ca_file {
        let bad = |e: &dyn std::fmt::Display| ConnectError::Tls(format!("{}: {e}", path.display()));
        let certs = CertificateDer::pem_file_iter(path).map_err(|e| bad(&e))?;
        for cert in certs {
            let cert = cert.map_err(|e| bad(&e))?;
            roots.add(cert).map_err(|e| bad(&e))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ConnectError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsConnector::from(Arc::new(config)))
}

/// Runs hyper's connection task (which finishes once the connection is upgraded) on
/// the current runtime.
struct SpawnExecutor;

impl<Fut> hyper::rt::Executor<Fut> for SpawnExecutor
where
    Fut: std::future::Future + Send + 'static,
    Fut::Output: Send + 'static,
{
    fn execute(&self, fut: Fut) {
        tokio::task::spawn(fut);
    }
}

/// Connects to `target`: TCP (no Nagle), TLS through `tls` when the target is
/// `wss://`, then the WebSocket handshake, sending `user_agent` and, when given,
/// `Authorization: Bearer <bearer>`. No timeout here: callers wrap the whole in their
/// own.
///
/// A `wss://` target without a connector is an error ([`ConnectError::Tls`]); a
/// connector for a `ws://` target is ignored.
pub async fn connect(
    target: &Target,
    tls: Option<&TlsConnector>,
    user_agent: &str,
    bearer: Option<&str>,
) -> Result<Ws, ConnectError> {
    let connector = match (target.tls, tls) {
        (true, Some(c)) => Some(c),
        (true, None) => return Err(ConnectError::Tls("wss:// without a TLS connector".into())),
        (false, _) => None,
    };
    let tcp = TcpStream::connect((target.host.as_str(), target.port))
        .await
        .map_err(ConnectError::Connect)?;
    // Ticks are small and latency matters more than segment count.
    let _ = tcp.set_nodelay(true);
    let mut request = Request::builder()
        .method("GET")
        .uri(target.path.as_str())
        .header(HOST, target.authority.as_str())
        .header(UPGRADE, "websocket")
        .header(CONNECTION, "upgrade")
        .header(
            "Sec-WebSocket-Key",
            fastwebsockets::handshake::generate_key(),
        )
        .header("Sec-WebSocket-Version", "13")
        .header(USER_AGENT, user_agent);
    if let Some(token) = bearer {
        request = request.header(AUTHORIZATION, format!("Bearer {token}"));
    }
    let request = request
        .body(Empty::<Bytes>::new())
        .map_err(|_| ConnectError::Url(target.path.clone()))?;
    let (ws, _response) = match connector {
        Some(connector) => {
            let name = ServerName::try_from(target.host.clone())
                .map_err(|e| ConnectError::Tls(e.to_string()))?;
            let stream = connector
                .connect(name, tcp)
                .await
                .map_err(|e| ConnectError::Tls(e.to_string()))?;
            fastwebsockets::handshake::client(&SpawnExecutor, request, stream).await?
        }
        None => fastwebsockets::handshake::client(&SpawnExecutor, request, tcp).await?,
    };
    Ok(ws)
}

/// A plain HTTP GET over the same TCP and TLS, for the one REST call a feed makes
/// (Binance's depth snapshot).
pub mod rest {
    use http_body_util::{BodyExt, Empty, Limited};
    use hyper::body::Bytes;
    use hyper::header::{ACCEPT, HOST, USER_AGENT};
    use hyper::{Request, StatusCode, Uri};
    use hyper_util::rt::TokioIo;
    use tokio::io::{AsyncRead, AsyncWrite};
    use tokio::net::TcpStream;
    use tokio_rustls::rustls::pki_types::ServerName;
    use tokio_rustls::TlsConnector;

    /// GETs `url` (`http://` or `https://`, through `tls`) and returns the body of a
    /// `200 OK` of at most `max_bytes`. The error says what failed, for the log. No
    /// timeout here: callers wrap the call in their own.
    pub async fn get(
        url: &str,
        tls: Option<&TlsConnector>,
        user_agent: &str,
        max_bytes: usize,
    ) -> Result<Vec<u8>, String> {
        let uri: Uri = url
            .parse()
            .map_err(|e| format!("invalid url {url:?}: {e}"))?;
        let secure = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(format!("invalid url {url:?}: expected http:// or https://")),
        };
        let host = uri
            .host()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| format!("invalid url {url:?}: no host"))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = uri.port_u16().unwrap_or(if secure { 443 } else { 80 });
        let authority = uri.authority().map(|a| a.to_string()).unwrap_or_default();
        let path = uri
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| "/".into());
        let request = Request::builder()
            .method("GET")
            .uri(path)
            .header(HOST, authority)
            .header(USER_AGENT, user_agent)
            .header(ACCEPT, "application/json")
            .body(Empty::<Bytes>::new())
            .map_err(|e| e.to_string())?;
        let tcp = TcpStream::connect((host.as_str(), port))
            .await
            .map_err(|e| format!("connect failed: {e}"))?;
        let _ = tcp.set_nodelay(true);
        if !secure {
            return send(tcp, request, max_bytes).await;
        }
        let connector = tls.ok_or("https:// without a TLS connector")?;
        let name = ServerName::try_from(host).map_err(|e| format!("tls: {e}"))?;
        let stream = connector
            .connect(name, tcp)
            .await
            .map_err(|e| format!("tls: {e}"))?;
        send(stream, request, max_bytes).await
    }

    async fn send<S>(
        stream: S,
        request: Request<Empty<Bytes>>,
        max_bytes: usize,
    ) -> Result<Vec<u8>, String>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("http: {e}"))?;
        // The connection task ends with the response (or when this future is dropped
        // and the sender with it).
        tokio::task::spawn(async move {
            let _ = connection.await;
        });
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("http: {e}"))?;
        let status = response.status();
        let body = Limited::new(response.into_body(), max_bytes)
            .collect()
            .await
            .map_err(|e| format!("body: {e}"))?
            .to_bytes();
        if status != StatusCode::OK {
            let text = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
            return Err(format!("HTTP {status}: {text}"));
        }
        Ok(body.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// With `inclusive_limit(n)`, fastwebsockets reads a frame of exactly `n` bytes and
    /// refuses one of `n + 1`.
    #[tokio::test]
    async fn inclusive_limit_lets_a_frame_of_exactly_the_limit_through() {
        use fastwebsockets::{Frame, OpCode, Payload, Role};
        for (len, ok) in [(100usize, true), (101, false)] {
            let (a, b) = tokio::io::duplex(4096);
            let mut client = WebSocket::after_handshake(a, Role::Client);
            let mut server = WebSocket::after_handshake(b, Role::Server);
            server.set_max_message_size(inclusive_limit(100));
            client
                .write_frame(Frame::new(
                    true,
                    OpCode::Binary,
                    None,
                    Payload::Owned(vec![7; len]),
                ))
                .await
                .unwrap();
            match server.read_frame().await {
                Ok(f) => assert!(ok && f.payload.len() == len, "{len}"),
                Err(e) => assert!(
                    !ok && matches!(e, WebSocketError::FrameTooLarge),
                    "{len}: {e}"
                ),
            }
        }
    }

    #[test]
    fn targets_from_urls() {
        let t = Target::parse("wss://stream.binance.com:9443/stream").unwrap();
        assert_eq!(
            (
                t.tls,
                t.host.as_str(),
                t.port,
                t.authority.as_str(),
                t.path.as_str()
            ),
            (
                true,
                "stream.binance.com",
                9443,
                "stream.binance.com:9443",
                "/stream"
            )
        );
        let t = Target::parse("wss://ws-feed.exchange.coinbase.com").unwrap();
        assert_eq!((t.port, t.path.as_str()), (443, "/"));
        let t = Target::parse("ws://127.0.0.1:9000/ws?x=1").unwrap();
        assert_eq!((t.tls, t.port, t.path.as_str()), (false, 9000, "/ws?x=1"));
        let t = Target::parse("ws://[::1]/ws").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.authority.as_str()),
            ("::1", 80, "[::1]")
        );
        for bad in ["http://x/", "127.0.0.1:9000", "ws://", "nonsense", ""] {
            assert!(
                matches!(Target::parse(bad), Err(ConnectError::Url(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn tls_connector_builds_with_webpki_roots() {
        assert!(tls_connector(None).is_ok());
        let missing = Path::new("/nonexistent/ca.pem");
        assert!(matches!(
            tls_connector(Some(missing)),
            Err(ConnectError::Tls(_))
        ));
    }

    #[tokio::test]
    async fn wss_without_a_connector_is_a_tls_error() {
        let t = Target::parse("wss://127.0.0.1:1/ws").unwrap();
        assert!(matches!(
            connect(&t, None, "test", None).await,
            Err(ConnectError::Tls(_))
        ));
    }
}
