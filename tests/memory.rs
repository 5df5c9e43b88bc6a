//! What an idle subscriber costs the server: its resident memory grows by a few KiB
//! per connection, not tens. (`loadgen idle` measures the published figure with 5,000
//! connections; this test guards against regressions with fewer.)

mod common;

use std::time::Duration;

use common::*;
use futures_util::StreamExt;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_subscribed_connection_costs_a_few_kib() {
    const CONNS: usize = 2_000;
    rlimit::increase_nofile_limit(8192).unwrap();
    let dir = std::env::temp_dir().join(format!("tickcast-memory-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("tickcast.toml");
    std::fs::write(&cfg, "[limits]\nmax_connections_per_ip = 3000\n").unwrap();
    let (child, addr) = spawn_binary(&[
        "--config",
        cfg.to_str().unwrap(),
        "--workers",
        "1",
        "--symbols",
        "100",
        "--rate",
        "1000",
    ]);
    let pid = child.id();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = rss_kib(pid);
    let mut readers = Vec::with_capacity(CONNS);
    for chunk in 0..CONNS / 100 {
        let opened = futures_util::future::join_all((0..100).map(|i| async move {
            let mut ws = connect(addr).await;
            let sym = format!("SYM{}", (chunk * 100 + i) % 100);
            send_json(&mut ws, json!({"op":"subscribe","symbols":[sym]})).await;
            until_type(&mut ws, "subscribed").await;
            ws
        }))
        .await;
        for mut ws in opened {
            // Keep reading, as a live subscriber does.
            readers.push(tokio::spawn(async move {
                while let Some(Ok(m)) = ws.next().await {
                    if let Message::Close(_) = m {
                        break;
                    }
                }
            }));
        }
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = rss_kib(pid);
    let per_conn = (after.saturating_sub(before) * 1024) as f64 / CONNS as f64;
    eprintln!("server RSS {before} KiB -> {after} KiB: {per_conn:.0} bytes per connection");
    assert!(
        per_conn <= 6.0 * 1024.0,
        "{per_conn:.0} bytes per idle connection ({before} -> {after} KiB)"
    );
    let (_, stats) = http_get(addr, "/stats").await;
    let stats: serde_json::Value = serde_json::from_str(&stats).unwrap();
    assert_eq!(stats["totals"]["connections"], CONNS, "all still open");
    for r in readers {
        r.abort();
    }
}
