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
    let per_core: Vec<u64> = server
        .stats()
        .cores
        .iter()
        .map(|c| {
            c.connections_total
                .load(std::sync::atomic::Ordering::Relaxed)
        })
        .collect();
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
