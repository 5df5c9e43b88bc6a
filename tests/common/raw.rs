//! A raw-socket WebSocket client for tests that must send what a friendly client
//! never would: unmasked frames, bad opcodes, endless fragments, floods without
//! reading. It does the RFC 6455 handshake by hand and reads server frames itself.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use tickcast::wire::frame::{client_frame, OP_CLOSE, OP_TEXT};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::WAIT;

/// A frame from the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub fin: bool,
    pub opcode: u8,
    pub payload: Vec<u8>,
}

impl Frame {
    /// The close code and reason of a close frame.
    pub fn close(&self) -> Option<(u16, String)> {
        (self.opcode == OP_CLOSE && self.payload.len() >= 2).then(|| {
            (
                u16::from_be_bytes([self.payload[0], self.payload[1]]),
                String::from_utf8_lossy(&self.payload[2..]).into_owned(),
            )
        })
    }
}

/// What reading the next frame found.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    Frame(Frame),
    /// The server closed the TCP connection (or reset it).
    Closed,
}

pub const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

pub struct RawWs {
    pub tcp: TcpStream,
    buf: Vec<u8>,
}

impl RawWs {
    /// Connects to `path` and completes the handshake.
    pub async fn connect(addr: SocketAddr, path: &str) -> RawWs {
        let mut tcp = TcpStream::connect(addr).await.expect("connect");
        // Each write its own segment, so that chunked sends really arrive in pieces.
        tcp.set_nodelay(true).expect("nodelay");
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        tcp.write_all(req.as_bytes()).await.expect("send handshake");
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let n = tokio::time::timeout(WAIT, tcp.read(&mut chunk))
                .await
                .expect("handshake in time")
                .expect("read handshake");
            assert!(n > 0, "closed during the handshake");
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        assert!(
            head.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
            "accept key of RFC 6455 §1.3: {head}"
        );
        buf.drain(..head_end);
        RawWs { tcp, buf }
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        self.tcp.write_all(bytes).await.expect("send");
    }

    /// Sends without failing when the server has closed or stopped reading.
    pub async fn try_send(&mut self, bytes: &[u8]) -> bool {
        self.tcp.write_all(bytes).await.is_ok()
    }

    /// Sends `bytes` in writes of `chunk` bytes each (one segment each: no Nagle).
    pub async fn send_chunked(&mut self, bytes: &[u8], chunk: usize) {
        for piece in bytes.chunks(chunk) {
            self.tcp.write_all(piece).await.expect("send");
        }
    }

    /// The next frame, failing the test if the server ended the connection instead.
    pub async fn frame(&mut self) -> Frame {
        match self.next().await {
            Next::Frame(f) => f,
            Next::Closed => panic!("the server ended the connection"),
        }
    }

    /// Asserts that the server ends the connection next, with no frame before.
    pub async fn expect_end(&mut self) {
        match self.next().await {
            Next::Closed => {}
            Next::Frame(f) => panic!("expected the end of the connection, got {f:?}"),
        }
    }

    pub async fn text(&mut self, s: &str) {
        self.send(&client_frame(true, OP_TEXT, s.as_bytes(), MASK))
            .await;
    }

    /// The next frame, or `Closed`; fails the test after [`WAIT`].
    pub async fn next(&mut self) -> Next {
        loop {
            if let Some(f) = self.parse() {
                return Next::Frame(f);
            }
            let mut chunk = vec![0u8; 64 * 1024];
            match tokio::time::timeout(WAIT, self.tcp.read(&mut chunk)).await {
                Err(_) => panic!("no frame within {WAIT:?}"),
                Ok(Ok(0)) | Ok(Err(_)) => return Next::Closed,
                Ok(Ok(n)) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// Reads until a close frame (returned) or the end of the connection (`None`).
    pub async fn close_frame(&mut self) -> Option<(u16, String)> {
        loop {
            match self.next().await {
                Next::Frame(f) if f.opcode == OP_CLOSE => return f.close(),
                Next::Frame(_) => {}
                Next::Closed => return None,
            }
        }
    }

    /// Reads until a text frame whose JSON `type` is `kind`.
    pub async fn until_type(&mut self, kind: &str) -> serde_json::Value {
        loop {
            match self.next().await {
                Next::Frame(f) if f.opcode == OP_TEXT => {
                    let v: serde_json::Value = serde_json::from_slice(&f.payload).unwrap();
                    if v["type"] == kind {
                        return v;
                    }
                }
                Next::Frame(_) => {}
                Next::Closed => panic!("closed while waiting for {kind}"),
            }
        }
    }

    /// Whether the server ends the connection within `within` (reading and dropping
    /// whatever it still sends).
    pub async fn ends_within(&mut self, within: Duration) -> bool {
        let mut chunk = vec![0u8; 64 * 1024];
        tokio::time::timeout(within, async {
            loop {
                match self.tcp.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        })
        .await
        .is_ok()
    }

    fn parse(&mut self) -> Option<Frame> {
        let b = &self.buf;
        if b.len() < 2 {
            return None;
        }
        assert_eq!(b[1] & 0x80, 0, "server frames are never masked");
        let (len, at) = match b[1] & 0x7f {
            126 if b.len() >= 4 => (u16::from_be_bytes([b[2], b[3]]) as usize, 4),
            127 if b.len() >= 10 => (
                u64::from_be_bytes(b[2..10].try_into().unwrap()) as usize,
                10,
            ),
            126 | 127 => return None,
            n => (n as usize, 2),
        };
        if b.len() < at + len {
            return None;
        }
        let f = Frame {
            fin: b[0] & 0x80 != 0,
            opcode: b[0] & 0x0f,
            payload: b[at..at + len].to_vec(),
        };
        assert_eq!(b[0] & 0x70, 0, "no reserved bits from the server");
        if f.opcode >= OP_CLOSE {
            assert!(f.payload.len() <= 125, "control frame of {} bytes", len);
        }
        self.buf.drain(..at + len);
        Some(f)
    }
}
