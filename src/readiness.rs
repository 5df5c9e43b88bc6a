//! `/readyz`: whether this node should be given clients now, and if not, why.
//!
//! `/healthz` is liveness: it answers 200 while the process serves. `/readyz` is
//! readiness, for load balancers and orchestrators: 503 with the reasons until every
//! configured feed is connected and has delivered a tick, while a feed has been
//! disconnected for longer than [`ReadinessConfig::max_feed_outage_ms`], and on an edge
//! until it has its first snapshot from the ingest; 200 otherwise. A feed that
//! finished (a replay at the end of its capture) no longer holds readiness back.
//!
//! Every source of a reason (feeds, the bus) contributes through [`reasons`], the one
//! place that decides.

use std::sync::Arc;

use hyper::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::bus::BusStatus;
use crate::feed::FeedStatus;

/// Settings of `[readiness]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReadinessConfig {
    /// A feed that delivered and then lost its source makes the node unready once it
    /// has been disconnected for longer than this, in ms (shorter reconnects keep it
    /// ready). Default: 15,000.
    pub max_feed_outage_ms: u64,
}

impl Default for ReadinessConfig {
    fn default() -> Self {
        ReadinessConfig {
            max_feed_outage_ms: 15_000,
        }
    }
}

/// One reason the node is not ready.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NotReady {
    /// What holds readiness back: `feed:NAME` or `bus`.
    pub source: String,
    /// Why, for people.
    pub reason: String,
}

/// Every reason the node is not ready at `now_ns` (ns since the Unix epoch); empty
/// when it is ready.
pub fn reasons(
    now_ns: u64,
    cfg: &ReadinessConfig,
    feeds: &[Arc<FeedStatus>],
    bus: &BusStatus,
) -> Vec<NotReady> {
    let max_outage_ns = cfg.max_feed_outage_ms.saturating_mul(1_000_000);
    let mut out: Vec<NotReady> = feeds
        .iter()
        .filter_map(|f| {
            f.not_ready(now_ns, max_outage_ns).map(|reason| NotReady {
                source: format!("feed:{}", f.name),
                reason,
            })
        })
        .collect();
    if let Some(reason) = bus.not_ready() {
        out.push(NotReady {
            source: "bus".into(),
            reason,
        });
    }
    out
}

/// The `/readyz` answer for `reasons`: 200 `{"status":"ready"}`, or 503
/// `{"status":"not_ready","reasons":[{"source":…,"reason":…},…]}`.
pub fn response(reasons: &[NotReady]) -> (StatusCode, Value) {
    if reasons.is_empty() {
        (StatusCode::OK, json!({"status": "ready"}))
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"status": "not_ready", "reasons": reasons}),
        )
    }
}

/// Whether `feeds` and `bus` make the node ready at `now_ns`, as `/readyz` answers.
pub fn readyz(
    now_ns: u64,
    cfg: &ReadinessConfig,
    feeds: &[Arc<FeedStatus>],
    bus: &BusStatus,
) -> (StatusCode, Value) {
    response(&reasons(now_ns, cfg, feeds, bus))
}

/// 1 while ready, for the `tickcast_ready` gauge.
pub fn is_ready(
    now_ns: u64,
    cfg: &ReadinessConfig,
    feeds: &[Arc<FeedStatus>],
    bus: &BusStatus,
) -> bool {
    reasons(now_ns, cfg, feeds, bus).is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::Role;
    use std::sync::atomic::Ordering::Relaxed;

    const S: u64 = 1_000_000_000;

    fn sources(r: &[NotReady]) -> Vec<(&str, &str)> {
        r.iter()
            .map(|n| (n.source.as_str(), n.reason.as_str()))
            .collect()
    }

    #[test]
    fn a_feed_gates_readiness_from_start_to_outage() {
        let cfg = ReadinessConfig::default();
        let bus = BusStatus::new(Role::Standalone);
        let feed = Arc::new(FeedStatus::new("binance"));
        let inlet = Arc::new(FeedStatus::passive("publish"));
        let feeds = [feed.clone(), inlet];
        let at = |t| reasons(t, &cfg, &feeds, &bus);

        assert_eq!(sources(&at(S)), [("feed:binance", "not connected yet")]);
        feed.set_connected();
        assert_eq!(
            sources(&at(S)),
            [("feed:binance", "connected, no tick delivered yet")]
        );
        feed.ticks.store(1, Relaxed);
        assert!(at(S).is_empty());
        assert_eq!(readyz(S, &cfg, &feeds, &bus).0, StatusCode::OK);

        // A reconnect shorter than the allowed outage keeps the node ready.
        feed.set_disconnected(10 * S);
        assert!(at(10 * S + 15 * S).is_empty());
        let late = at(10 * S + 16 * S);
        assert_eq!(late.len(), 1);
        assert!(
            late[0].reason.starts_with("disconnected for 16.0 s"),
            "{late:?}"
        );
        let (code, body) = readyz(26 * S, &cfg, &feeds, &bus);
        assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["status"], "not_ready");
        assert_eq!(body["reasons"][0]["source"], "feed:binance");
        feed.set_connected();
        assert!(at(30 * S).is_empty());

        // A replay that played its whole capture no longer holds anything back.
        feed.set_disconnected(40 * S);
        feed.set_finished();
        assert!(at(100 * S).is_empty());
    }

    #[test]
    fn a_feed_lost_before_it_delivered_is_not_ready_at_once() {
        let cfg = ReadinessConfig::default();
        let bus = BusStatus::new(Role::Standalone);
        let feed = Arc::new(FeedStatus::new("coinbase"));
        feed.set_connected();
        feed.set_disconnected(S);
        assert_eq!(
            sources(&reasons(S, &cfg, &[feed], &bus)),
            [("feed:coinbase", "not connected; no tick delivered yet")]
        );
    }

    #[test]
    fn an_edge_is_ready_once_synced() {
        let cfg = ReadinessConfig::default();
        let bus = BusStatus::new(Role::Edge);
        bus.set_connected();
        let r = reasons(S, &cfg, &[], &bus);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].source, "bus");
        bus.synced.store(1, Relaxed);
        assert!(reasons(S, &cfg, &[], &bus).is_empty());
        // NATS away: degraded but still ready (see docs/deploy.md).
        bus.set_disconnected(S);
        assert!(reasons(S, &cfg, &[], &bus).is_empty());
    }
}
