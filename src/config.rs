//! `Config`: every setting of the server, with its default, in one place.
//!
//! Loaded from a TOML file (`tickcast serve --config FILE`) whose every key is
//! optional; unknown keys are an error, so a typo never silently falls back to a
//! default. `docs/tickcast.example.toml` lists them all with their defaults.

use std::net::SocketAddr;
use std::path::Path;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::feed::FeedSpec;

/// Why a config file could not be used.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config {path}: {source}")]
    Read {
        /// The path given.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML for [`Config`].
    #[error("invalid config {path}: {source}")]
    Parse {
        /// The path given.
        path: String,
        /// What is wrong, with line and column.
        source: Box<toml::de::Error>,
    },
    /// A value is out of its allowed range.
    #[error("invalid config: {0}")]
    Invalid(String),
}

/// The server's settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address of the one HTTP/WebSocket port. Default: `127.0.0.1:9001`.
    pub listen: SocketAddr,
    /// Writer cores (threads that own connections); 0 means one per available CPU.
    /// Default: 0.
    pub workers: usize,
    /// Pin each writer core to its own CPU with core_affinity. Default: true.
    pub pin_cores: bool,
    /// Slots in the broadcast ring, rounded up to a power of two. It bounds how far a
    /// writer core may fall behind before it resynchronises from the last-value cache,
    /// and how far back a resume can replay. Default: 65,536.
    pub ring_capacity: usize,
    /// Most distinct symbols; ticks for more are rejected and counted. Default: 16,384.
    pub max_symbols: usize,
    /// Capacity of the feed → sequencer channel, in ticks; full blocks the feeds.
    /// Default: 65,536.
    pub feed_channel_capacity: usize,
    /// Largest client control message, in bytes; a larger one closes the connection
    /// with code 1009. Default: 65,536.
    pub max_control_message_bytes: usize,
    /// Outbound queue per connection above which it conflates, in bytes.
    /// Default: 1,048,576.
    pub high_water_bytes: usize,
    /// Outbound queue at or below which a conflating connection streams again, in bytes.
    /// Default: 262,144.
    pub low_water_bytes: usize,
    /// Oldest unsent byte's age above which a connection conflates, in ms; 0 turns the
    /// age bound off. Default: 1,000.
    pub max_queue_age_ms: u64,
    /// A connection with queued bytes that makes no write progress for this long is
    /// closed with code 4008 `slow consumer`, in ms. Default: 10,000.
    pub stall_timeout_ms: u64,
    /// Token a publisher must present to use `/publish` (as `?token=` or
    /// `Authorization: Bearer`); `None` disables the endpoint. Default: `None`.
    pub publish_token: Option<String>,
    /// Path of a WebSocket route that sends every text and binary message back, for
    /// conformance testing (`/echo`, say); `None` (the default) serves no such route.
    /// It is served by the same connection code as `/ws`: same admission, origin and
    /// auth checks, same limits. Default: `None`.
    pub echo_path: Option<String>,
    /// What this node does: `standalone` (feeds, sequencer and clients on one node),
    /// `ingest` (the same, and it publishes every sequenced batch to NATS) or `edge`
    /// (no feeds: its ticks come from the ingest through NATS). Default: `standalone`.
    pub role: crate::bus::Role,
    /// NATS server(s) of an `ingest` or `edge` node, comma-separated URLs.
    /// Default: `nats://127.0.0.1:4222`.
    pub nats_url: String,
    /// Subjects, queues and timeouts of the NATS bus (`[bus]`).
    pub bus: crate::bus::BusConfig,
    /// Largest message accepted on `/publish`, in bytes; a larger one closes the
    /// connection with code 1009. Default: 1,048,576.
    pub max_publish_message_bytes: usize,
    /// Ping a connection after this long without hearing from it, in ms.
    /// Default: 15,000.
    pub ping_interval_ms: u64,
    /// Close (code 4010, `heartbeat timeout`) and free a connection from which nothing,
    /// not even a pong, arrived for this long, in ms. Default: 45,000.
    pub idle_timeout_ms: u64,
    /// Connection and message limits.
    pub limits: Limits,
    /// TLS (`wss://`, `https://`) for the one port; absent (the default) serves plain
    /// TCP.
    pub tls: Option<TlsConfig>,
    /// Subscriber authentication; absent (the default) lets anyone subscribe to
    /// anything, as suits a local demo.
    pub auth: Option<crate::auth::AuthConfig>,
    /// The feeds to run. Default: one synthetic feed.
    pub feeds: Vec<FeedSpec>,
}

/// Settings of `[tls]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM file with the certificate chain, leaf first.
    pub cert_path: std::path::PathBuf,
    /// PEM file with the private key (PKCS#8, PKCS#1 or SEC1).
    pub key_path: std::path::PathBuf,
}

/// Limits that protect the server from too many or too demanding clients. Each one's
/// response when hit is in `docs/operations.md`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Open WebSocket connections in total; past it upgrades get HTTP 503.
    /// Default: 100,000.
    pub max_connections: usize,
    /// Open connections from one IP address; past it upgrades get HTTP 429.
    /// Default: 1,000.
    pub max_connections_per_ip: usize,
    /// Symbols one connection may hold; a subscribe past it gets an error and
    /// subscribes nothing. Default: 10,000.
    pub max_subscriptions_per_connection: usize,
    /// Control messages per second per connection (sustained); messages past the
    /// budget get an error and are dropped. Default: 50.
    pub control_messages_per_sec: u32,
    /// Control messages a connection may send in a burst. Default: 100.
    pub control_burst: u32,
    /// Control output (acks, errors, symbol maps, pongs) queued for a connection above
    /// which the server stops reading its input until the output drains, in bytes:
    /// a client that sends without reading the replies is pushed back by TCP instead
    /// of growing the server's memory. Default: 16,384.
    pub max_pending_control_bytes: usize,
    /// Bytes a subscriber may send per second (sustained), in bytes; past it (and a
    /// burst of this many bytes or twice `max_control_message_bytes`, whichever is
    /// more) its input is not read until the budget refills, so a flooding client
    /// costs the server a bounded share of its core. Default: 262,144.
    pub max_input_bytes_per_sec: u64,
    /// Time a client has to send its request headers, in ms. Default: 10,000.
    pub handshake_timeout_ms: u64,
    /// Browser origins allowed to connect (exact `Origin` header values); empty allows
    /// any. Requests without an `Origin` header (non-browser clients) are always
    /// allowed. Past it: HTTP 403. Default: empty.
    pub allowed_origins: Vec<String>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 100_000,
            max_connections_per_ip: 1_000,
            max_subscriptions_per_connection: 10_000,
            control_messages_per_sec: 50,
            control_burst: 100,
            max_pending_control_bytes: 16 * 1024,
            max_input_bytes_per_sec: 256 * 1024,
            handshake_timeout_ms: 10_000,
            allowed_origins: Vec::new(),
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 9001)),
            workers: 0,
            pin_cores: true,
            ring_capacity: 65_536,
            max_symbols: 16_384,
            feed_channel_capacity: 65_536,
            max_control_message_bytes: 65_536,
            high_water_bytes: 1 << 20,
            low_water_bytes: 256 << 10,
            max_queue_age_ms: 1_000,
            stall_timeout_ms: 10_000,
            publish_token: None,
            echo_path: None,
            role: crate::bus::Role::Standalone,
            nats_url: "nats://127.0.0.1:4222".into(),
            bus: crate::bus::BusConfig::default(),
            max_publish_message_bytes: 1 << 20,
            ping_interval_ms: 15_000,
            idle_timeout_ms: 45_000,
            limits: Limits::default(),
            tls: None,
            auth: None,
            feeds: vec![FeedSpec::default()],
        }
    }
}

impl Config {
    /// Reads and validates a TOML file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Config::parse(&text).map_err(|e| match e {
            ConfigError::Parse { source, .. } => ConfigError::Parse {
                path: path.display().to_string(),
                source,
            },
            other => other,
        })
    }

    /// Parses and validates TOML text.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: "<text>".into(),
            source: Box::new(e),
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks the ranges that serde cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.low_water_bytes >= self.high_water_bytes {
            return Err(ConfigError::Invalid(
                "low_water_bytes must be below high_water_bytes".into(),
            ));
        }
        if self.max_symbols == 0 || self.ring_capacity < 2 || self.feed_channel_capacity == 0 {
            return Err(ConfigError::Invalid(
                "max_symbols, ring_capacity and feed_channel_capacity must be positive".into(),
            ));
        }
        if self.publish_token.as_deref() == Some("") {
            return Err(ConfigError::Invalid(
                "publish_token must not be empty (leave it out to disable /publish)".into(),
            ));
        }
        if let Some(path) = &self.echo_path {
            if !path.starts_with('/') || crate::http::is_builtin_path(path) {
                return Err(ConfigError::Invalid(format!(
                    "echo_path {path:?} must start with '/' and not be a built-in route"
                )));
            }
        }
        if self.max_publish_message_bytes < 256 {
            return Err(ConfigError::Invalid(
                "max_publish_message_bytes must be at least 256".into(),
            ));
        }
        if self.ping_interval_ms == 0 || self.idle_timeout_ms <= self.ping_interval_ms {
            return Err(ConfigError::Invalid(
                "idle_timeout_ms must be longer than ping_interval_ms (and both positive)".into(),
            ));
        }
        if self.limits.control_messages_per_sec == 0 || self.limits.control_burst == 0 {
            return Err(ConfigError::Invalid(
                "limits.control_messages_per_sec and limits.control_burst must be positive".into(),
            ));
        }
        if self.max_control_message_bytes < 256 {
            return Err(ConfigError::Invalid(
                "max_control_message_bytes must be at least 256".into(),
            ));
        }
        if self.limits.max_input_bytes_per_sec < 1024 {
            return Err(ConfigError::Invalid(
                "limits.max_input_bytes_per_sec must be at least 1024".into(),
            ));
        }
        if self.limits.max_pending_control_bytes < 1024 {
            return Err(ConfigError::Invalid(
                "limits.max_pending_control_bytes must be at least 1024".into(),
            ));
        }
        crate::bus::validate(self)?;
        Ok(())
    }

    /// The number of writer cores to run.
    pub fn worker_count(&self) -> usize {
        if self.workers > 0 {
            self.workers
        } else {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_is_all_defaults() {
        assert_eq!(Config::parse("").unwrap(), Config::default());
    }

    #[test]
    fn example_file_matches_defaults() {
        let text = include_str!("../docs/tickcast.example.toml");
        assert_eq!(Config::parse(text).unwrap(), Config::default());
    }

    #[test]
    fn rejects_unknown_keys_and_bad_ranges() {
        let e = Config::parse("listne = \"1.2.3.4:5\"").unwrap_err();
        assert!(e.to_string().contains("listne"), "{e}");
        let e = Config::parse("low_water_bytes = 10\nhigh_water_bytes = 5").unwrap_err();
        assert!(e.to_string().contains("low_water_bytes"), "{e}");
    }

    #[test]
    fn echo_path_is_off_by_default_and_checked() {
        assert_eq!(Config::default().echo_path, None);
        let c = Config::parse("echo_path = \"/echo\"").unwrap();
        assert_eq!(c.echo_path.as_deref(), Some("/echo"));
        for bad in ["echo", "/ws", "/healthz", "/publish", "/"] {
            let e = Config::parse(&format!("echo_path = {bad:?}")).unwrap_err();
            assert!(e.to_string().contains("echo_path"), "{bad}: {e}");
        }
    }

    #[test]
    fn parses_feeds() {
        let c = Config::parse("[[feeds]]\nkind = \"synthetic\"\nrate = 5\n").unwrap();
        match &c.feeds[..] {
            [FeedSpec::Synthetic(s)] => assert_eq!(s.rate, 5),
            other => panic!("{other:?}"),
        }
    }
}
