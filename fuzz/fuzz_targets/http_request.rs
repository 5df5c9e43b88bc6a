//! The HTTP request head and the WebSocket upgrade, as the server handles them: any
//! bytes, sent to a real tickcast server in this process (one writer core, loopback),
//! reach hyper's parser and then our routing — methods and HEAD, the echo route,
//! `/publish`'s token check, the origin allowlist, admission, the upgrade and, past
//! it, the core's frame reader. The server must answer with well-formed HTTP (every
//! 405 with its `Allow`), never hang and never die: it serves every next input. The
//! token parsers are also called on the raw bytes directly.
#![no_main]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::OnceLock;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use tickcast::auth::AuthConfig;
use tickcast::config::Config;
use tickcast::server::{Server, ServerHandle};

fn server() -> SocketAddr {
    static SERVER: OnceLock<ServerHandle> = OnceLock::new();
    SERVER
        .get_or_init(|| {
            let mut config = Config {
                listen: "127.0.0.1:0".parse().unwrap(),
                workers: 1,
                pin_cores: false,
                echo_path: Some("/echo".into()),
                publish_token: Some("secret".into()),
                ..Config::default()
            };
            config.limits.allowed_origins = vec!["https://desk.example".into()];
            config.limits.max_connections_per_ip = 1 << 20;
            config.limits.max_input_bytes_per_sec = 1 << 30;
            config.limits.handshake_timeout_ms = 2_000;
            if let Some(tickcast::feed::FeedSpec::Synthetic(s)) = config.feeds.first_mut() {
                s.symbols = 4;
                s.rate = 100;
            }
            Server::start(config).expect("server starts")
        })
        .local_addr()
}

fn auth_config() -> &'static AuthConfig {
    static CFG: OnceLock<AuthConfig> = OnceLock::new();
    CFG.get_or_init(|| AuthConfig {
        jwt_secret: "s3cret".into(),
        allow_query_token: true,
        leeway_secs: 30,
    })
}

/// Every response head in `bytes` is HTTP/1.1 (HTTP/1.0 to an HTTP/1.0 request) with a
/// status, and a 405 says what is allowed.
fn check_responses(bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    if text.is_empty() {
        return;
    }
    assert!(
        text.starts_with("HTTP/1.1 ") || text.starts_with("HTTP/1.0 "),
        "not an HTTP response: {text:?}"
    );
    let mut rest = &text[..];
    let next_405 = |r: &str| {
        ["HTTP/1.1 405", "HTTP/1.0 405"]
            .iter()
            .filter_map(|p| r.find(p))
            .min()
    };
    while let Some(i) = next_405(rest) {
        let head_end = rest[i..].find("\r\n\r\n").map_or(rest.len(), |e| i + e);
        assert!(
            rest[i..head_end].contains("\r\nallow: GET, HEAD"),
            "405 without Allow: {:?}",
            &rest[i..head_end]
        );
        rest = &rest[head_end..];
    }
}

fuzz_target!(|data: &[u8]| {
    let text = std::str::from_utf8(data).ok();
    let _ = tickcast::auth::authenticate(auth_config(), Some(data), text);
    let _ = tickcast::publish::authorize(Some("secret"), text, Some(data));

    let addr = server();
    let mut tcp = TcpStream::connect(addr).expect("the server is still serving");
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    tcp.set_nodelay(true).unwrap();
    // The server may answer and close before it has read everything.
    let _ = tcp.write_all(data);
    let _ = tcp.shutdown(std::net::Shutdown::Write);
    let mut response = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        match tcp.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => {
                response.extend_from_slice(&chunk[..n]);
                if response.len() > 1 << 20 {
                    break;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                panic!("no end to the response within 10 s")
            }
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                panic!("no end to the response within 10 s")
            }
            Err(_) => break, // reset: the server refused the rest
        }
    }
    // Past a 101 the bytes are WebSocket frames; check the HTTP part.
    let head = match response.windows(12).position(|w| w == b"HTTP/1.1 101") {
        Some(i) => &response[..i + 12],
        None => &response[..],
    };
    check_responses(head);
});
