//! `wss://` and `https://` with a certificate generated in the test, through a real
//! TLS client (rustls) and a real WebSocket client (tungstenite), and the Rust client
//! (`tickcast::client`) over `wss://`.

mod common;

use std::collections::HashMap;
use std::sync::Arc;

use common::*;
use futures_util::SinkExt;
use serde_json::json;
use tickcast::client::{Client, ClientError, Event, Options};
use tickcast::config::TlsConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::rustls::{self, pki_types::ServerName, RootCertStore};
use tokio_tungstenite::tungstenite::Message;

/// A self-signed certificate for 127.0.0.1 written to a fresh directory.
fn certificate() -> (TlsConfig, rustls::pki_types::CertificateDer<'static>) {
    let ck =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .unwrap();
    let dir = std::env::temp_dir().join(format!(
        "tickcast-tls-{}-{}",
        std::process::id(),
        tickcast::clock::now_ns()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let cert_path = dir.join("cert.pem");
    let key_path = dir.join("key.pem");
    std::fs::write(&cert_path, ck.cert.pem()).unwrap();
    std::fs::write(&key_path, ck.key_pair.serialize_pem()).unwrap();
    (
        TlsConfig {
            cert_path,
            key_path,
        },
        ck.cert.der().clone(),
    )
}

fn connector(ca: rustls::pki_types::CertificateDer<'static>) -> tokio_rustls::TlsConnector {
    let mut roots = RootCertStore::empty();
    roots.add(ca).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

async fn tls_stream(
    addr: std::net::SocketAddr,
    connector: &tokio_rustls::TlsConnector,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = ServerName::IpAddress(addr.ip().into());
    connector
        .connect(name, tcp)
        .await
        .expect("TLS handshake with the server's certificate")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wss_and_https_with_a_generated_certificate() {
    let (tls, ca) = certificate();
    let mut cfg = config(10, 5_000);
    cfg.tls = Some(tls);
    let server = start_server(cfg);
    let addr = server.local_addr();
    let connector = connector(ca);

    // https: a plain GET over TLS.
    let mut s = tls_stream(addr, &connector).await;
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut body = Vec::new();
    let _ = s.read_to_end(&mut body).await;
    let text = String::from_utf8_lossy(&body);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("\"status\":\"ok\""));

    // wss: binary ticks decode and arrive with no gap; bad input still gets errors.
    let stream = tls_stream(addr, &connector).await;
    let (mut ws, _) = tokio_tungstenite::client_async(format!("wss://{addr}/ws"), stream)
        .await
        .expect("wss upgrade");
    ws.send(Message::text("nonsense")).await.unwrap();
    assert!(next_json(&mut ws).await["message"]
        .as_str()
        .unwrap()
        .starts_with("invalid JSON"));
    send_json(
        &mut ws,
        json!({"op":"subscribe","symbols":["SYM1","SYM2","SYM3"]}),
    )
    .await;
    let mut names = HashMap::new();
    let mut last: HashMap<String, u64> = HashMap::new();
    let mut live = 0;
    while live < 500 {
        if let Ok(ticks) = next_ticks(&mut ws, &mut names).await {
            for t in ticks {
                if t.flags.is_empty() {
                    if let Some(prev) = last.get(&t.symbol) {
                        assert_eq!(t.seq, prev + 1, "no gap over TLS in {}", t.symbol);
                    }
                    live += 1;
                }
                last.insert(t.symbol, t.seq);
            }
        }
    }

    // An oversize message over TLS still closes with 1009, cleanly.
    let stream = tls_stream(addr, &connector).await;
    let (mut big, _) = tokio_tungstenite::client_async(format!("wss://{addr}/ws"), stream)
        .await
        .unwrap();
    big.send(Message::text("x".repeat(1 << 20))).await.unwrap();
    let code = loop {
        match next(&mut big).await {
            Message::Close(Some(f)) => break u16::from(f.code),
            Message::Close(None) => panic!("close without code"),
            _ => {}
        }
    };
    assert_eq!(code, 1009);

    // A plain-TCP client cannot talk to a TLS port, and does not disturb it.
    let (status, _) = tokio::time::timeout(WAIT, async {
        let mut raw = tokio::net::TcpStream::connect(addr).await.unwrap();
        raw.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = Vec::new();
        let _ = raw.read_to_end(&mut buf).await;
        (buf.starts_with(b"HTTP/1.1 200"), ())
    })
    .await
    .expect("the server drops a non-TLS client");
    assert!(!status, "no plaintext answer on a TLS port");
    let mut more = 0;
    while more < 100 {
        if let Ok(ticks) = next_ticks(&mut ws, &mut names).await {
            more += ticks.len();
        }
    }
    server.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_client_over_wss_with_an_extra_ca_file() {
    let (tls, _) = certificate();
    let ca_file = tls.cert_path.clone();
    let mut cfg = config(10, 5_000);
    cfg.tls = Some(tls);
    let server = start_server(cfg);
    let url = format!("wss://{}/ws", server.local_addr());
    let options = Options {
        connect_timeout_ms: 5_000,
        ..Options::symbols(["SYM1", "SYM2"])
    };

    // The self-signed certificate is not among the webpki roots.
    let err = Client::connect(&url, options.clone()).await.unwrap_err();
    assert!(matches!(err, ClientError::Tls(_)), "{err}");
    // A CA file that cannot be read fails before connecting.
    let missing = Options {
        ca_file: Some("/nonexistent/ca.pem".into()),
        ..options.clone()
    };
    let err = Client::connect(&url, missing).await.unwrap_err();
    assert!(
        matches!(err, ClientError::Tls(ref m) if m.contains("/nonexistent/ca.pem")),
        "{err}"
    );

    // Trusting the certificate: subscribed, named, and live ticks in sequence.
    let options = Options {
        ca_file: Some(ca_file),
        ..options
    };
    let mut client = Client::connect(&url, options).await.unwrap();
    let mut subscribed = false;
    let mut last: HashMap<String, u64> = HashMap::new();
    let mut live = 0;
    while live < 200 {
        let event = tokio::time::timeout(WAIT, client.next())
            .await
            .expect("an event in time")
            .expect("no client error");
        match event {
            Event::Subscribed { symbols } => {
                assert_eq!(symbols, ["SYM1", "SYM2"]);
                subscribed = true;
            }
            Event::Ticks(batch) => {
                for r in batch.records() {
                    let name = batch
                        .symbol(r.symbol_id.to_native())
                        .expect("named")
                        .to_string();
                    let seq = r.seq.to_native();
                    if r.flags == 0 {
                        if let Some(prev) = last.get(&name) {
                            assert_eq!(seq, prev + 1, "no gap over wss in {name}");
                        }
                        live += 1;
                    }
                    last.insert(name, seq);
                }
            }
            Event::Symbols(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(subscribed);
    let mut names: Vec<_> = last.into_keys().collect();
    names.sort();
    assert_eq!(names, ["SYM1", "SYM2"]);
    client.close().await.unwrap();
    server.shutdown();
}

#[test]
fn unreadable_certificate_is_a_clear_start_error() {
    let mut cfg = config(1, 1);
    cfg.tls = Some(TlsConfig {
        cert_path: "/nonexistent/cert.pem".into(),
        key_path: "/nonexistent/key.pem".into(),
    });
    let err = tickcast::server::Server::start(cfg)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("cannot read certificates from /nonexistent/cert.pem"),
        "{err}"
    );
}
