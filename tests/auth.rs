//! Authentication at the upgrade and entitlements at subscribe, with real clients.

mod common;

use common::*;
use futures_util::SinkExt;
use jsonwebtoken::{encode, EncodingKey, Header};
use serde_json::json;
use tickcast::auth::{AuthConfig, Claims};
use tokio_tungstenite::tungstenite::{self, client::IntoClientRequest};

const SECRET: &str = "test-secret";

fn token(secret: &str, exp: u64, symbols: &[&str], max_subscriptions: Option<usize>) -> String {
    token_nbf(secret, exp, None, symbols, max_subscriptions)
}

fn token_nbf(
    secret: &str,
    exp: u64,
    nbf: Option<u64>,
    symbols: &[&str],
    max_subscriptions: Option<usize>,
) -> String {
    let claims = Claims {
        sub: Some("desk-7".into()),
        exp,
        nbf,
        symbols: symbols.iter().map(|s| s.to_string()).collect(),
        max_subscriptions,
    };
    encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

fn in_an_hour() -> u64 {
    tickcast::clock::now_ns() / 1_000_000_000 + 3_600
}

async fn status_of(url: &str, bearer: Option<&str>) -> Result<Ws, u16> {
    let mut req = url.into_client_request().unwrap();
    if let Some(t) = bearer {
        req.headers_mut()
            .insert("Authorization", format!("Bearer {t}").parse().unwrap());
    }
    match tokio_tungstenite::connect_async(req).await {
        Ok((ws, _)) => Ok(ws),
        Err(tungstenite::Error::Http(resp)) => Err(resp.status().as_u16()),
        Err(e) => panic!("unexpected {e}"),
    }
}

#[tokio::test]
async fn bad_tokens_get_401_and_entitlements_bound_subscriptions() {
    let mut cfg = config(20, 2_000);
    cfg.auth = Some(AuthConfig {
        jwt_secret: SECRET.into(),
        allow_query_token: true,
        leeway_secs: 0,
    });
    let server = start_server(cfg);
    let addr = server.local_addr();
    let url = format!("ws://{addr}/ws");

    // Every kind of bad token is refused before the upgrade.
    assert_eq!(status_of(&url, None).await.err(), Some(401), "missing");
    assert_eq!(
        status_of(&url, Some("garbage")).await.err(),
        Some(401),
        "malformed"
    );
    let expired = token(SECRET, 1_000, &["*"], None);
    assert_eq!(
        status_of(&url, Some(&expired)).await.err(),
        Some(401),
        "expired"
    );
    let forged = token("another-secret", in_an_hour(), &["*"], None);
    assert_eq!(
        status_of(&url, Some(&forged)).await.err(),
        Some(401),
        "bad signature"
    );
    let early = token_nbf(SECRET, in_an_hour(), Some(in_an_hour() - 60), &["*"], None);
    assert_eq!(
        status_of(&url, Some(&early)).await.err(),
        Some(401),
        "not valid yet (nbf in the future)"
    );
    let started = token_nbf(SECRET, in_an_hour(), Some(1_000), &["*"], None);
    assert!(
        status_of(&url, Some(&started)).await.is_ok(),
        "nbf in the past"
    );
    assert_eq!(
        server
            .stats()
            .rejected
            .auth
            .load(std::sync::atomic::Ordering::Relaxed),
        5
    );

    // A good token in the header: its patterns bound what can be subscribed.
    let good = token(SECRET, in_an_hour(), &["SYM1*", "SYM2"], Some(3));
    let mut ws = status_of(&url, Some(&good))
        .await
        .expect("valid token accepted");
    send_json(&mut ws, json!({"op":"subscribe","symbols":["SYM1","SYM3"]})).await;
    let e = next_json(&mut ws).await;
    assert_eq!(e["type"], "error");
    assert_eq!(e["message"], "not entitled to symbol \"SYM3\"");
    assert_eq!(e["symbols"], json!(["SYM3"]));
    // The wildcard covers only what the token allows: SYM1, SYM10..SYM19, SYM2 —
    // thirteen symbols, past the token's own limit of three.
    send_json(&mut ws, json!({"op":"subscribe","symbols":["*"]})).await;
    let e = next_json(&mut ws).await;
    assert_eq!(
        e["message"],
        "too many subscriptions: at most 3 symbols per connection"
    );
    send_json(
        &mut ws,
        json!({"op":"subscribe","symbols":["SYM1","SYM10","SYM2"],"format":"json"}),
    )
    .await;
    let ack = next_json(&mut ws).await;
    assert_eq!(ack["type"], "subscribed", "{ack}");

    // The same token in the query string, as a browser sends it.
    let (mut browser, _) = tokio_tungstenite::connect_async(format!("{url}?token={good}"))
        .await
        .expect("query token");
    send_json(&mut browser, json!({"op":"subscribe","symbols":["SYM2"]})).await;
    assert_eq!(next_json(&mut browser).await["type"], "subscribed");

    // The authenticated client keeps streaming after the refusals.
    let mut names = std::collections::HashMap::new();
    let mut got = 0;
    while got < 20 {
        if let Ok(ticks) = next_ticks(&mut ws, &mut names).await {
            for t in ticks {
                assert!(["SYM1", "SYM10", "SYM2"].contains(&t.symbol.as_str()));
                got += 1;
            }
        }
    }
    server.shutdown();
}

/// The Rust client sends `Options::token` as `Authorization: Bearer` on every
/// connection; without it the upgrade is refused. A plain GET of `/ws` (what the
/// dashboard sends to test a token) answers 401 with the reason unless the token is
/// good, and then 426 (no upgrade asked).
#[tokio::test]
async fn rust_client_token_option_and_the_plain_get_check() {
    use tickcast::client::{Client, ClientError, Event, Options};

    let mut cfg = config(20, 2_000);
    cfg.auth = Some(AuthConfig {
        jwt_secret: SECRET.into(),
        allow_query_token: false,
        leeway_secs: 0,
    });
    let server = start_server(cfg);
    let addr = server.local_addr();
    let url = format!("ws://{addr}/ws");
    let good = token(SECRET, in_an_hour(), &["SYM1"], None);

    let refused = Client::connect(&url, Options::symbols(["SYM1"])).await;
    assert!(
        matches!(refused, Err(ClientError::WebSocket(_))),
        "no token: {refused:?}"
    );
    let options = Options {
        token: Some(good.clone()),
        ..Options::symbols(["SYM1"])
    };
    let mut client = Client::connect(&url, options)
        .await
        .expect("token accepted");
    let mut records = 0;
    while records < 10 {
        let event = tokio::time::timeout(std::time::Duration::from_secs(10), client.next())
            .await
            .expect("ticks within 10 s")
            .expect("no client error");
        if let Event::Ticks(batch) = event {
            records += batch.len();
        }
    }

    let (status, body) = http_get(addr, "/ws").await;
    assert_eq!(
        (status, body.trim()),
        (
            401,
            "missing token: send Authorization: Bearer <token> or ?token=<token>"
        )
    );
    // With allow_query_token off, a query token counts as no token at all.
    let (status, _) = http_get(addr, &format!("/ws?token={good}")).await;
    assert_eq!(status, 401);
    server.shutdown();

    let mut cfg = config(20, 2_000);
    cfg.auth = Some(AuthConfig {
        jwt_secret: SECRET.into(),
        allow_query_token: true,
        leeway_secs: 0,
    });
    let server = start_server(cfg);
    let addr = server.local_addr();
    let (status, body) = http_get(addr, "/ws?token=garbage").await;
    assert_eq!((status, body.trim()), (401, "malformed token"));
    let expired = token(SECRET, 1_000, &["*"], None);
    let (status, body) = http_get(addr, &format!("/ws?token={expired}")).await;
    assert_eq!((status, body.trim()), (401, "token expired"));
    let (status, _) = http_get(addr, &format!("/ws?token={good}")).await;
    assert_eq!(
        status, 426,
        "a good token: the request only lacks the upgrade"
    );
    server.shutdown();
}

/// The echo route (`echo_path`) is served by the `/ws` code: it refuses a missing
/// token, a browser origin outside the allowlist, and connections past the limit,
/// exactly as `/ws` does, and echoes once admitted.
#[tokio::test]
async fn the_echo_route_has_the_checks_of_ws() {
    let mut cfg = config(2, 100);
    cfg.echo_path = Some("/echo".into());
    cfg.auth = Some(AuthConfig {
        jwt_secret: SECRET.into(),
        allow_query_token: true,
        leeway_secs: 0,
    });
    cfg.limits.allowed_origins = vec!["https://desk.example".into()];
    cfg.limits.max_connections = 1;
    let server = start_server(cfg);
    let addr = server.local_addr();
    let url = format!("ws://{addr}/echo");
    let good = token(SECRET, in_an_hour(), &["*"], None);

    assert_eq!(status_of(&url, None).await.err(), Some(401), "no token");
    let mut req = format!("{url}?token={good}").into_client_request().unwrap();
    req.headers_mut()
        .insert("Origin", "https://evil.example".parse().unwrap());
    match tokio_tungstenite::connect_async(req).await {
        Err(tungstenite::Error::Http(resp)) => assert_eq!(resp.status().as_u16(), 403),
        other => panic!("origin outside the allowlist: {other:?}"),
    }

    let mut ws = status_of(&url, Some(&good)).await.expect("admitted");
    ws.send(tungstenite::Message::text("héllo")).await.unwrap();
    assert_eq!(next(&mut ws).await, tungstenite::Message::text("héllo"));
    ws.send(tungstenite::Message::binary(vec![0u8, 1, 2]))
        .await
        .unwrap();
    assert_eq!(
        next(&mut ws).await,
        tungstenite::Message::binary(vec![0u8, 1, 2])
    );
    // The one connection allowed is taken: the next gets 503, as on /ws.
    assert_eq!(status_of(&url, Some(&good)).await.err(), Some(503), "full");
    let ws_url = format!("ws://{addr}/ws");
    assert_eq!(status_of(&ws_url, Some(&good)).await.err(), Some(503));
    server.shutdown();
}
