//! loadgen against a tickcast server in the same process: the histogram fills, no
//! sequence gap appears, and the records received equal what the server says it sent.

use loadgen::report;
use loadgen::settings::{Format, Select, Settings};

fn small(name: &str) -> Settings {
    Settings {
        name: name.into(),
        connections: 8,
        symbols_per_conn: 5,
        select: Select::Zipf,
        rate: 2_000,
        symbols: 20,
        duration_s: 2.0,
        warmup_s: 0.5,
        // Generous bound on the drain; a healthy run ends it as soon as counts agree.
        drain_s: 30.0,
        threads: 2,
        ..Settings::default()
    }
}

fn check(s: &report::Summary) {
    assert!(s.records_measured > 0, "empty histogram: {s:#?}");
    assert!(s.percentiles_ns.p50 > 0 && s.percentiles_ns.max >= s.percentiles_ns.p99);
    assert_eq!(s.gaps, 0, "gaps: {s:#?}");
    assert_eq!(s.errors, 0, "errors: {s:#?}");
    assert_eq!(s.connections, s.settings.connections as u64);
    assert!(s.drained, "not drained: {s:#?}");
    assert_eq!(Some(s.records), s.server_records_out, "received vs sent");
}

/// The `books` scenario, small: every connection rebuilds its symbols' books from
/// the book channel alone, with no gap, and once the feed stopped each equals the
/// server's.
#[test]
fn books_rebuilt_by_every_connection_equal_the_servers() {
    let settings = Settings {
        channels: vec!["book".into()],
        book_depth: 5,
        ..small("books")
    };
    let (s, _) = loadgen::run::run(&settings, false).unwrap();
    check(&s);
    assert_eq!((s.book_gaps, s.duplicates), (0, 0), "{s:#?}");
    assert_eq!(
        s.books_checked,
        8 * 5,
        "every connection's every symbol: {s:#?}"
    );
    assert_eq!(s.book_mismatches, 0, "{s:#?}");
}

#[test]
fn synthetic_feed_binary_subscribers() {
    let (s, h) = loadgen::run::run(&small("synthetic"), false).unwrap();
    check(&s);
    assert_eq!(s.records_measured, h.len());
    assert!(
        s.snapshots > 0,
        "subscribing to live symbols starts with snapshots"
    );
}

#[test]
fn against_a_server_whose_feed_keeps_going_every_counted_record_arrives() {
    // A server loadgen did not start (as with --url): its feed cannot be stopped, so
    // the drain waits for every record up to the count /stats gave at the end.
    let server = tickcast::server::Server::start(tickcast::config::Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        workers: 1,
        pin_cores: false,
        feeds: vec![tickcast::feed::FeedSpec::Synthetic(
            tickcast::feed::synthetic::SyntheticConfig {
                symbols: 20,
                rate: 2_000,
                ..Default::default()
            },
        )],
        ..Default::default()
    })
    .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while server.symbols().len() < 20 {
        assert!(
            std::time::Instant::now() < deadline,
            "symbols never appeared"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let settings = Settings {
        url: Some(format!("ws://{}/ws", server.local_addr())),
        ..small("external")
    };
    let (s, _) = loadgen::run::run(&settings, false).unwrap();
    let sent_by_then = server.stats().total(|c| &c.records_out);
    server.shutdown();
    assert!(s.records_measured > 0, "empty histogram: {s:#?}");
    assert_eq!(s.gaps, 0, "gaps: {s:#?}");
    assert!(s.drained, "not drained: {s:#?}");
    let mark = s.server_records_out.expect("the count was read");
    assert!(
        mark > 0 && s.records >= mark,
        "received {} of {mark}",
        s.records
    );
    assert!(
        sent_by_then >= s.records,
        "the feed kept going: {sent_by_then} sent, {} received",
        s.records
    );
}

#[test]
fn open_loop_publisher_json_subscribers_to_everything() {
    let settings = Settings {
        connections: 4,
        symbols_per_conn: 0,
        select: Select::All,
        format: Format::Json,
        rate: 0,
        publish_rate: 1_000,
        publish_format: Format::Json,
        ..small("publish")
    };
    let (s, _) = loadgen::run::run(&settings, false).unwrap();
    check(&s);
    // Every subscriber sees every published tick (no feed, nothing before them).
    assert!(s.published > 0);
    assert_eq!(s.records, s.published * 4);
    assert_eq!(s.snapshots, 0);
}

#[test]
fn cli_writes_hgrm_json_and_svg_then_plots_and_compares() {
    let dir = std::env::temp_dir().join(format!("loadgen-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let exe = env!("CARGO_BIN_EXE_loadgen");
    let file = |n: &str| dir.join(n).to_string_lossy().into_owned();
    for (name, format) in [("a", "binary"), ("b", "json")] {
        let out = std::process::Command::new(exe)
            .args([
                "run",
                "--quiet",
                "--connections",
                "4",
                "--symbols-per-conn",
                "3",
                "--format",
                format,
                "--rate",
                "1000",
                "--symbols",
                "10",
                "--duration",
                "1",
                "--warmup",
                "200ms",
                "--drain",
                "30",
                "--threads",
                "1",
            ])
            .args(["--json", &file(&format!("{name}.json"))])
            .args(["--hgrm", &file(&format!("{name}.hgrm"))])
            .args(["--plot", &file(&format!("{name}.svg"))])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let table = String::from_utf8_lossy(&out.stdout);
        assert!(
            table.contains("p99.99") && table.contains("records"),
            "{table}"
        );
    }
    // The .hgrm parses back into the summary's percentiles.
    let summary: report::Summary =
        serde_json::from_str(&std::fs::read_to_string(file("a.json")).unwrap()).unwrap();
    let lines = report::parse_hgrm(&std::fs::read_to_string(file("a.hgrm")).unwrap()).unwrap();
    let p = summary.percentiles_ns;
    for (q, want) in [
        (0.5, p.p50),
        (0.9, p.p90),
        (0.99, p.p99),
        (0.999, p.p99_9),
        (0.9999, p.p99_99),
        (1.0, p.max),
    ] {
        assert_eq!(report::hgrm_percentile(&lines, q), Some(want), "q = {q}");
    }
    let svg = std::fs::read_to_string(file("a.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    assert_eq!(svg.matches("<polyline").count(), 1);

    let out = std::process::Command::new(exe)
        .args([
            "plot",
            &file("a.json"),
            &file("b.json"),
            "-o",
            &file("cmp.svg"),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cmp = std::fs::read_to_string(file("cmp.svg")).unwrap();
    assert_eq!(cmp.matches("<polyline").count(), 2);

    let out = std::process::Command::new(exe)
        .args(["compare", &file("a.json"), &file("b.json")])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("latency p99") && text.contains("records/s"),
        "{text}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
