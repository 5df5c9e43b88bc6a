//! `App`: what every part of a running server shares, built once by [`crate::server`].
//!
//! The HTTP routes, the `/publish` endpoint and the writer cores read it; none of them
//! owns it, so none of them has to know the others.

use std::sync::Arc;

use crate::admission::Admission;
use crate::config::Config;
use crate::lvc::LastValueCache;
use crate::publish::Inlet;
use crate::ring::Ring;
use crate::stats::Stats;
use crate::symbol::SymbolTable;

/// The shared state of one server.
#[derive(Debug)]
pub struct App {
    /// Settings, fixed at start.
    pub config: Config,
    /// Symbol names and ids (written by the sequencer, read everywhere).
    pub symbols: Arc<SymbolTable>,
    /// Latest values per symbol (written by the sequencer).
    pub lvc: Arc<LastValueCache>,
    /// The broadcast ring (written by the sequencer, read by the writer cores).
    pub ring: Arc<Ring>,
    /// Counters.
    pub stats: Arc<Stats>,
    /// The `/publish` endpoint's sender into the sequencer.
    pub publish: Inlet,
    /// Connection limits (slots taken at the upgrade, freed when a connection ends).
    pub admission: Arc<Admission>,
    /// TLS acceptor when `[tls]` is configured.
    pub tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
}
