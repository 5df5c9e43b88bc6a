//! `Admission`: the connection limits checked before a WebSocket upgrade.
//!
//! A connection holds a [`Permit`] for its whole life; dropping it gives the slot back.
//! Refusals happen while the request is still plain HTTP, so a refused client gets a
//! status code it can act on (503 retry later, 429 slow down) instead of a dropped
//! socket.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use thiserror::Error;

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum Refusal {
    /// `max_connections` are open: HTTP 503.
    #[error("server full: {0} connections open")]
    ServerFull(usize),
    /// `max_connections_per_ip` are open from this address: HTTP 429.
    #[error("too many connections from this address (limit {0})")]
    PerIp(usize),
}

/// Counts open connections, in total and per remote address.
#[derive(Debug)]
pub struct Admission {
    max_total: usize,
    max_per_ip: usize,
    total: AtomicUsize,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
}

/// One admitted connection's slot; released on drop.
#[derive(Debug)]
pub struct Permit {
    admission: Arc<Admission>,
    ip: IpAddr,
}

impl Admission {
    /// Limits of `max_total` connections, `max_per_ip` from any one address.
    pub fn new(max_total: usize, max_per_ip: usize) -> Arc<Admission> {
        Arc::new(Admission {
            max_total,
            max_per_ip,
            total: AtomicUsize::new(0),
            per_ip: Mutex::new(HashMap::new()),
        })
    }

    /// Takes a slot for a connection from `ip`, or says why not.
    pub fn admit(self: &Arc<Admission>, ip: IpAddr) -> Result<Permit, Refusal> {
        let mut per_ip = self.per_ip.lock().unwrap_or_else(|e| e.into_inner());
        if self.total.load(Ordering::Relaxed) >= self.max_total {
            return Err(Refusal::ServerFull(self.max_total));
        }
        let n = per_ip.entry(ip).or_insert(0);
        if *n >= self.max_per_ip {
            return Err(Refusal::PerIp(self.max_per_ip));
        }
        *n += 1;
        self.total.fetch_add(1, Ordering::Relaxed);
        Ok(Permit {
            admission: self.clone(),
            ip,
        })
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.total.load(Ordering::Relaxed)
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut per_ip = self
            .admission
            .per_ip
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(n) = per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                per_ip.remove(&self.ip);
            }
        }
        self.admission.total.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_total_and_per_ip_and_releases_on_drop() {
        let a = Admission::new(3, 2);
        let ip1: IpAddr = "10.0.0.1".parse().unwrap();
        let ip2: IpAddr = "10.0.0.2".parse().unwrap();
        let p1 = a.admit(ip1).unwrap();
        let _p2 = a.admit(ip1).unwrap();
        assert_eq!(a.admit(ip1).unwrap_err(), Refusal::PerIp(2));
        let _p3 = a.admit(ip2).unwrap();
        assert_eq!(a.admit(ip2).unwrap_err(), Refusal::ServerFull(3));
        drop(p1);
        assert_eq!(a.open(), 2);
        assert!(a.admit(ip1).is_ok(), "a released slot is reusable");
        assert!(a.per_ip.lock().unwrap().len() <= 2);
    }
}
