//! What an operator meets first: binding, readiness, errors, the command line, the
//! environment, logs, metrics and the service unit. The command-line tests run the
//! real `tickcast` binary.

mod common;

use common::*;
use tickcast::server::{Server, ServerError};

/// The error of a server started on `listen`, which must fail to bind.
fn bind_error(listen: std::net::SocketAddr) -> std::io::Error {
    let mut c = config(5, 100);
    c.listen = listen;
    match Server::start(c) {
        Err(ServerError::Bind { addr, source }) => {
            assert_eq!(addr, listen);
            source
        }
        Err(other) => panic!("expected a bind error, got {other}"),
        Ok(s) => {
            let a = s.local_addr();
            s.shutdown();
            panic!("a second server started on {a}, a port already in use")
        }
    }
}

#[test]
fn a_busy_port_is_an_error_whoever_holds_it() {
    // Another tickcast (whose per-core listeners share the port with each other).
    let first = start_server(config(5, 100));
    let addr = first.local_addr();
    let e = bind_error(addr);
    assert_eq!(e.kind(), std::io::ErrorKind::AddrInUse, "{e}");
    // The first server still answers alone.
    first.shutdown();

    // A plain listener of another program.
    let other = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    assert_eq!(
        bind_error(other.local_addr().unwrap()).kind(),
        std::io::ErrorKind::AddrInUse
    );

    // A program that set SO_REUSEPORT itself, as tickcast's own cores do.
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    s.set_reuse_port(true).unwrap();
    s.bind(
        &"127.0.0.1:0"
            .parse::<std::net::SocketAddr>()
            .unwrap()
            .into(),
    )
    .unwrap();
    s.listen(16).unwrap();
    let addr = s.local_addr().unwrap().as_socket().unwrap();
    assert_eq!(bind_error(addr).kind(), std::io::ErrorKind::AddrInUse);
}

#[tokio::test]
async fn the_cores_of_one_server_share_its_port() {
    let mut c = config(5, 100);
    c.workers = 4;
    let server = start_server(c);
    let mut conns = Vec::new();
    for _ in 0..40 {
        conns.push(connect(server.local_addr()).await);
    }
    // A core counts a connection once its own task runs, just after the handshake.
    let per_core = || -> Vec<u64> {
        server
            .stats()
            .cores
            .iter()
            .map(|c| {
                c.connections_total
                    .load(std::sync::atomic::Ordering::Relaxed)
            })
            .collect()
    };
    let deadline = std::time::Instant::now() + WAIT;
    while per_core().iter().sum::<u64>() < 40 {
        assert!(std::time::Instant::now() < deadline, "{:?}", per_core());
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let per_core = per_core();
    assert_eq!(per_core.iter().sum::<u64>(), 40, "{per_core:?}");
    // The kernel hashes connections over the group: 40 on one core of four would
    // mean the other listeners never joined it (a chance of 4^-39).
    assert!(
        per_core.iter().filter(|&&n| n > 0).count() > 1,
        "{per_core:?}"
    );
    drop(conns);
    server.shutdown();
}

// ---------------------------------------------------------------------------------
// The binary: errors, the command line, the environment, logs.

use std::io::BufRead;
use std::process::{Child, Command, Stdio};

use futures_util::StreamExt;

const BIN: &str = env!("CARGO_BIN_EXE_tickcast");

/// The binary with a clean environment for tickcast's own variables.
fn tickcast(args: &[&str]) -> Command {
    let mut c = Command::new(BIN);
    c.args(args)
        .env("RUST_BACKTRACE", "1")
        .env_remove("RUST_LOG");
    for (k, _) in std::env::vars() {
        if k.starts_with("TICKCAST_") {
            c.env_remove(k);
        }
    }
    c
}

/// Runs a command that must fail: its exit code and its stderr.
fn fails(cmd: &mut Command) -> (i32, String) {
    let out = cmd.stdin(Stdio::null()).output().expect("tickcast runs");
    assert!(!out.status.success(), "succeeded: {out:?}");
    (
        out.status.code().expect("an exit code, not a signal"),
        String::from_utf8(out.stderr).unwrap(),
    )
}

/// A user error: printed once, on one line, without a backtrace, with code `want`.
fn user_error(cmd: &mut Command, want: i32) -> String {
    let (code, err) = fails(cmd);
    assert_eq!(code, want, "{err}");
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    if want == 1 {
        assert_eq!(lines.len(), 1, "one line: {err}");
        assert!(lines[0].starts_with("tickcast: error: "), "{err}");
    } else {
        assert!(lines.len() <= 4, "a few lines: {err}");
    }
    for noise in [
        "Caused by",
        "backtrace",
        "Stack backtrace",
        "panicked",
        "\x1b[",
    ] {
        assert!(!err.contains(noise), "{noise:?} in {err}");
    }
    err
}

fn temp_file(name: &str, text: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("tickcast-ops-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running `tickcast` child: killed on drop.
struct Running {
    child: Child,
    addr: std::net::SocketAddr,
    stderr: std::sync::mpsc::Receiver<String>,
}

impl Running {
    /// Starts `cmd` and waits for its "listening on" line.
    fn start(mut cmd: Command) -> Running {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .stdin(Stdio::null())
            .spawn()
            .expect("tickcast starts");
        let (tx, stderr) = std::sync::mpsc::channel();
        let err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(err).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .expect("startup line");
        let addr = line
            .split("http://")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| {
                let err: Vec<String> = stderr.try_iter().collect();
                panic!("no address in {line:?}; stderr: {err:?}")
            });
        Running {
            child,
            addr,
            stderr,
        }
    }

    /// Stderr lines until one contains `needle` (that one included).
    fn stderr_until(&self, needle: &str) -> Vec<String> {
        let mut out = Vec::new();
        loop {
            let line = self
                .stderr
                .recv_timeout(WAIT)
                .unwrap_or_else(|_| panic!("no {needle:?} on stderr; got {out:?}"));
            let done = line.contains(needle);
            out.push(line);
            if done {
                return out;
            }
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn user_errors_print_once_on_one_line_with_the_right_exit_code() {
    // Usage errors: 2.
    let err = user_error(&mut tickcast(&["--symbols", "0"]), 2);
    assert!(err.contains("--symbols"), "{err}");
    user_error(&mut tickcast(&["--feed", "kraken"]), 2);
    user_error(&mut tickcast(&["--listen", "nowhere"]), 2);
    user_error(&mut tickcast(&["--log-format", "xml"]), 2);
    user_error(&mut tickcast(&["check-config"]), 2);

    // Everything else: 1, naming what is wrong.
    let err = user_error(
        &mut tickcast(&[
            "--listen",
            "127.0.0.1:0",
            "--feed",
            "replay:no-such-capture.jsonl",
        ]),
        1,
    );
    assert!(
        err.contains("no-such-capture.jsonl") && err.contains("No such file"),
        "{err}"
    );

    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap().to_string();
    let err = user_error(&mut tickcast(&["--listen", &addr, "--no-pin"]), 1);
    assert!(err.contains(&addr) && err.contains("in use"), "{err}");

    let cases = [
        (
            "ring_capacity = 1000\n",
            "ring_capacity must be a power of two",
        ),
        (
            "[[feeds]]\nkind = \"synthetic\"\nsymbols = 0\n",
            "feeds[0] (synthetic): symbols must be at least 1",
        ),
        (
            "[[feeds]]\nkind = \"synthetic\"\nrate = 0\n",
            "rate must be at least 1",
        ),
        (
            "[limits]\nmax_connections = 0\n",
            "limits.max_connections must be at least 1",
        ),
        ("[limits]\nmax_conections = 5\n", "`limits.max_conections`"),
        ("listen = 5\n", "`listen`"),
        ("listen = [\n", "line 1 column"),
    ];
    for (i, (text, want)) in cases.into_iter().enumerate() {
        let path = temp_file(&format!("bad-{i}.toml"), text);
        let path = path.to_str().unwrap();
        for args in [vec!["--config", path], vec!["check-config", path]] {
            let err = user_error(&mut tickcast(&args), 1);
            assert!(err.contains(want), "{text:?}: {err}");
        }
    }
    let err = user_error(&mut tickcast(&["check-config", "/no/such/file.toml"]), 1);
    assert!(err.contains("/no/such/file.toml"), "{err}");
}

#[test]
fn help_lists_every_feed_form_and_the_subcommands() {
    let out = tickcast(&["--help"]).output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for form in [
        "synthetic",
        "replay:PATH",
        "binance",
        "coinbase",
        "binance:ws(s)://URL",
        "coinbase:ws(s)://URL",
        "check-config",
        "serve",
        "--log-format",
    ] {
        assert!(help.contains(form), "{form} missing from --help:\n{help}");
    }
}

#[test]
fn serve_flags_work_without_the_subcommand() {
    let capture = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/feeds/binance-spot-btcusdt-ethusdt.jsonl"
    );
    let feed = format!("replay:{capture}");
    for args in [
        vec!["--feed", &feed, "--listen", "127.0.0.1:0", "--no-pin"],
        vec![
            "serve",
            "--feed",
            &feed,
            "--listen",
            "127.0.0.1:0",
            "--no-pin",
        ],
    ] {
        let server = Running::start(tickcast(&args));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let symbols = rt.block_on(async {
            let deadline = std::time::Instant::now() + WAIT;
            loop {
                let (_, body) = http_get(server.addr, "/symbols").await;
                if body.contains("BINANCE:BTCUSDT") {
                    return body;
                }
                assert!(std::time::Instant::now() < deadline, "{body}");
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        });
        assert!(symbols.contains("BINANCE:ETHUSDT"), "{symbols}");
    }
}

/// The settings `check-config` prints for `file` under `env`.
fn effective(file: &std::path::Path, env: &[(&str, &str)]) -> String {
    let mut cmd = tickcast(&["check-config", file.to_str().unwrap()]);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(out.stderr.is_empty(), "{out:?}");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn settings_come_from_flags_then_env_then_file_then_defaults() {
    let file = temp_file(
        "layers.toml",
        "workers = 2\nmax_symbols = 500\n[limits]\nmax_connections = 10\n",
    );
    let shown = effective(&file, &[]);
    let toml: toml::Table = toml::from_str(&shown).expect("check-config prints TOML");
    assert_eq!(toml["workers"].as_integer(), Some(2), "file over defaults");
    assert_eq!(toml["ring_capacity"].as_integer(), Some(65_536), "defaults");
    assert_eq!(toml["limits"]["max_connections"].as_integer(), Some(10));
    // The printed settings are themselves a valid config of the same values.
    let again = temp_file("again.toml", &shown);
    assert_eq!(effective(&again, &[]), shown);

    let shown = effective(
        &file,
        &[
            ("TICKCAST_WORKERS", "3"),
            ("TICKCAST_LIMITS__MAX_CONNECTIONS", "7"),
            ("TICKCAST_LISTEN", "0.0.0.0:9100"),
            ("TICKCAST_LOG_FORMAT", "json"),
            ("TICKCAST_READINESS__MAX_FEED_OUTAGE_MS", "2500"),
            ("TICKCAST_PUBLISH_TOKEN", "s3cret"),
            (
                "TICKCAST_FEEDS",
                r#"[{kind="synthetic", symbols=7, rate=70}]"#,
            ),
            // Not a setting: left alone and reported.
            ("TICKCAST_BIN", "/usr/bin/true"),
        ],
    );
    let toml: toml::Table = toml::from_str(&shown).unwrap();
    assert_eq!(toml["workers"].as_integer(), Some(3), "env over file");
    assert_eq!(toml["max_symbols"].as_integer(), Some(500), "file kept");
    assert_eq!(toml["limits"]["max_connections"].as_integer(), Some(7));
    assert_eq!(toml["listen"].as_str(), Some("0.0.0.0:9100"));
    assert_eq!(toml["log_format"].as_str(), Some("json"));
    assert_eq!(
        toml["readiness"]["max_feed_outage_ms"].as_integer(),
        Some(2500)
    );
    assert_eq!(toml["publish_token"].as_str(), Some("<redacted>"));
    assert!(!shown.contains("s3cret"));
    assert_eq!(toml["feeds"][0]["symbols"].as_integer(), Some(7));
    assert!(shown.contains("# ignored: TICKCAST_BIN"), "{shown}");

    // A bad value from the environment names the variable.
    let err = user_error(
        tickcast(&["check-config", file.to_str().unwrap()])
            .env("TICKCAST_LIMITS__MAX_CONNECTIONS", "many"),
        1,
    );
    assert!(
        err.contains("limits.max_connections") && err.contains("TICKCAST_LIMITS__MAX_CONNECTIONS"),
        "{err}"
    );

    // Flags over the environment: the server runs on the flag's values.
    let port = free_port();
    let mut cmd = tickcast(&[
        "--config",
        file.to_str().unwrap(),
        "--workers",
        "1",
        "--symbols",
        "4",
        "--no-pin",
    ]);
    cmd.env("TICKCAST_WORKERS", "3")
        .env("TICKCAST_LISTEN", format!("127.0.0.1:{port}"));
    let server = Running::start(cmd);
    assert_eq!(server.addr.port(), port, "listen from the environment");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let stats: serde_json::Value =
        serde_json::from_str(&rt.block_on(http_get(server.addr, "/stats")).1).unwrap();
    assert_eq!(
        stats["cores"].as_array().unwrap().len(),
        1,
        "--workers over env"
    );
}

#[test]
fn logs_are_plain_text_off_a_terminal_or_json_on_request() {
    let serving = "tickcast serving";
    let text = Running::start(tickcast(&["--listen", "127.0.0.1:0", "--no-pin"]));
    let lines = text.stderr_until(serving);
    assert!(
        lines.iter().all(|l| !l.contains('\x1b')),
        "ANSI in {lines:?}"
    );
    assert!(lines.last().unwrap().contains("INFO"), "{lines:?}");

    let mut by_env = tickcast(&["--listen", "127.0.0.1:0", "--no-pin"]);
    by_env.env("TICKCAST_LOG_FORMAT", "json");
    for cmd in [
        tickcast(&[
            "--listen",
            "127.0.0.1:0",
            "--no-pin",
            "--log-format",
            "json",
        ]),
        by_env,
    ] {
        let json = Running::start(cmd);
        let lines = json.stderr_until(serving);
        for line in &lines {
            let v: serde_json::Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}"));
            assert!(v["timestamp"].is_string() && v["level"].is_string(), "{v}");
        }
        let last: serde_json::Value = serde_json::from_str(lines.last().unwrap()).unwrap();
        assert_eq!(last["level"], "INFO");
        assert_eq!(last["fields"]["message"], serving);
        assert_eq!(
            last["fields"]["addr"].as_str(),
            Some(json.addr.to_string().as_str())
        );
    }
}

/// One JSON log line per connection opened and closed, with its peer, core and (on
/// close) the close code, duration and records written.
#[test]
fn every_connection_gets_an_open_and_a_close_log_line() {
    let server = Running::start(tickcast(&[
        "--listen",
        "127.0.0.1:0",
        "--no-pin",
        "--workers",
        "1",
        "--log-format",
        "json",
    ]));
    server.stderr_until("tickcast serving");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let peer = rt.block_on(async {
        let mut ws = connect(server.addr).await;
        let peer = match ws.get_ref() {
            tokio_tungstenite::MaybeTlsStream::Plain(s) => s.local_addr().unwrap(),
            _ => unreachable!("a plain connection"),
        };
        send_json(
            &mut ws,
            serde_json::json!({"op":"subscribe","symbols":["SYM1"]}),
        )
        .await;
        until_type(&mut ws, "subscribed").await;
        // At least one record written before the close.
        loop {
            let m = tokio::time::timeout(WAIT, ws.next())
                .await
                .expect("a record within the wait")
                .expect("open")
                .unwrap();
            if m.is_binary() {
                break;
            }
        }
        ws.close(None).await.unwrap();
        // Read until the server's close answer so that the close is complete.
        while let Some(Ok(m)) = ws.next().await {
            if m.is_close() {
                break;
            }
        }
        peer
    });
    let parse = |l: &String| serde_json::from_str::<serde_json::Value>(l).ok();
    let opened = server.stderr_until("connection opened");
    let opened = parse(opened.last().unwrap()).unwrap();
    assert_eq!(opened["fields"]["peer"], peer.to_string(), "{opened}");
    assert_eq!(opened["fields"]["core"], 0, "{opened}");
    let closed = server.stderr_until("connection closed");
    let closed = parse(closed.last().unwrap()).unwrap();
    assert_eq!(closed["fields"]["peer"], peer.to_string(), "{closed}");
    assert_eq!(
        closed["fields"]["conn"], opened["fields"]["conn"],
        "{closed}"
    );
    assert_eq!(closed["fields"]["code"], 1000, "{closed}");
    assert!(closed["fields"]["duration_ms"].is_u64(), "{closed}");
    assert!(
        closed["fields"]["records"].as_u64().unwrap() >= 1,
        "{closed}"
    );
}

// ---------------------------------------------------------------------------------
// The Grafana dashboard and the metrics it queries.

/// Metric names (`tickcast_…`, `process_…`) in PromQL text.
fn metric_names(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let bytes = expr.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c == b':';
        if word(bytes[i]) && (i == 0 || !word(bytes[i - 1])) {
            let end = (i..bytes.len())
                .find(|&j| !word(bytes[j]))
                .unwrap_or(bytes.len());
            let w = &expr[i..end];
            if w.starts_with("tickcast_") || w.starts_with("process_") {
                out.push(w.to_string());
            }
            i = end;
        } else {
            i += 1;
        }
    }
    out
}

#[tokio::test]
async fn the_grafana_dashboard_queries_only_exported_metrics() {
    let server = start_server(config(5, 1_000));
    let mut ws = connect(server.local_addr()).await;
    send_json(
        &mut ws,
        serde_json::json!({"op":"subscribe","symbols":["*"]}),
    )
    .await;
    let _ = until_type(&mut ws, "subscribed").await;
    let mut exported = http_get(server.local_addr(), "/metrics").await.1;
    // The bus metrics of scale-out nodes (a standalone node has none).
    for role in [tickcast::bus::Role::Ingest, tickcast::bus::Role::Edge] {
        tickcast::bus::BusStatus::new(role).render_metrics(&mut exported);
    }
    let names: std::collections::HashSet<&str> = exported
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .collect();

    let dashboard: serde_json::Value =
        serde_json::from_str(include_str!("../docs/grafana-dashboard.json")).expect("JSON");
    let panels = dashboard["panels"].as_array().expect("panels");
    assert!(panels.len() >= 10);
    let mut queried = 0;
    for panel in panels {
        let targets = panel["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{}", panel["title"]);
        for t in targets {
            let expr = t["expr"].as_str().expect("expr");
            let used = metric_names(expr);
            assert!(!used.is_empty(), "{expr}");
            for name in used {
                assert!(
                    names.contains(name.as_str()),
                    "{name} (in {expr:?}) is not exported"
                );
                queried += 1;
            }
        }
    }
    for must in [
        "tickcast_ingest_to_write_latency_seconds_bucket",
        "tickcast_event_to_write_latency_seconds_bucket",
        "tickcast_build_info",
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_open_fds",
        "tickcast_feed_connected",
        "tickcast_feed_lag_seconds",
    ] {
        assert!(
            include_str!("../docs/grafana-dashboard.json").contains(must),
            "the dashboard shows {must}"
        );
    }
    assert!(queried > 30);
    server.shutdown();
}

// ---------------------------------------------------------------------------------
// The systemd unit.

/// `systemd-analyze` (Debian's `systemd` package; tests/extra-deps installs it).
fn systemd_analyze() -> std::path::PathBuf {
    ["/usr/bin/systemd-analyze", "/bin/systemd-analyze"]
        .iter()
        .map(std::path::PathBuf::from)
        .find(|p| p.is_file())
        .expect("systemd-analyze is installed (scripts/test installs the systemd package)")
}

/// `systemd-analyze verify` of `unit` (with `ExecStart` pointing at the built
/// binary, which verify requires to exist): its exit status and everything it said.
fn verify_unit(unit: &str) -> (bool, String) {
    let dir = std::env::temp_dir().join(format!("tickcast-unit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("tickcast.service");
    std::fs::write(&path, unit.replace("/usr/local/bin/tickcast", BIN)).unwrap();
    let out = Command::new(systemd_analyze())
        .arg("verify")
        .arg(&path)
        .output()
        .expect("systemd-analyze runs");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), said)
}

#[test]
fn the_systemd_unit_verifies_and_is_hardened() {
    let unit = include_str!("../deploy/tickcast.service");
    let (ok, said) = verify_unit(unit);
    assert!(
        ok && said.trim().is_empty(),
        "systemd-analyze verify: {said}"
    );

    // The check is real: a misspelt key and a missing binary are reported.
    let (_, said) = verify_unit(&unit.replace("NoNewPrivileges=", "NoNewPrivilege="));
    assert!(said.contains("NoNewPrivilege"), "{said}");
    let (ok, said) = verify_unit(&unit.replace(
        "ExecStart=/usr/local/bin/tickcast",
        "ExecStart=/nonexistent/tickcast",
    ));
    assert!(
        !ok || !said.trim().is_empty(),
        "a missing binary passed verify"
    );

    for line in [
        "DynamicUser=yes",
        "NoNewPrivileges=yes",
        "LimitNOFILE=1048576",
        "Restart=on-failure",
        "RestartPreventExitStatus=1 2",
        "ProtectSystem=strict",
    ] {
        assert!(unit.lines().any(|l| l == line), "{line} in the unit");
    }
    // The commands it runs exist: the unit starts the server and checks its config.
    assert!(unit.contains("ExecStart=/usr/local/bin/tickcast serve --config "));
    assert!(unit.contains("ExecStartPre=/usr/local/bin/tickcast check-config "));

    // systemd's own exposure score of the sandbox (0 best, 10 worst), of the real unit.
    assert!(verify_unit(unit).0);
    let dir = std::env::temp_dir().join(format!("tickcast-unit-{}", std::process::id()));
    let out = Command::new(systemd_analyze())
        .args(["security", "--offline=true", "--no-pager"])
        .arg(dir.join("tickcast.service"))
        .output()
        .expect("systemd-analyze security runs");
    let text = String::from_utf8_lossy(&out.stdout);
    let score: f64 = text
        .lines()
        .find_map(|l| {
            l.split("Overall exposure level for tickcast.service: ")
                .nth(1)
        })
        .and_then(|r| r.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in {text}"));
    assert!(score <= 2.0, "exposure {score}: {text}");
}

/// A SIGTERM sent the moment the server says it is listening shuts it down cleanly
/// (exit 0), never with the signal's default action: the handlers are installed before
/// the port opens. Before they were, about half of these attempts died of the signal.
#[test]
fn sigterm_right_after_the_listening_line_is_a_clean_shutdown() {
    for attempt in 0..20 {
        let mut run = Running::start(tickcast(&["serve", "--listen", "127.0.0.1:0"]));
        // SAFETY: kill(2) on our own child's pid, which is not reaped before `wait`.
        let sent = unsafe { libc::kill(run.child.id() as libc::pid_t, libc::SIGTERM) };
        assert_eq!(sent, 0);
        let exit = run.child.wait().unwrap();
        assert!(exit.success(), "attempt {attempt}: {exit:?}");
    }
}
