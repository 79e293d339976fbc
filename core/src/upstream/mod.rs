//! An upstream as the request path sees it: peers with the live state the
//! core keeps (nginx's fails/checked/conns rules), the balancer module's
//! upstream object, and the per-worker connection pools.

pub mod addr;
pub mod balancer;
pub mod dynamic;
pub mod health;
pub mod peers;
pub mod resolver;
pub mod tls;

use std::sync::atomic::{AtomicU32, AtomicU64};
use std::time::Duration;

use waypost_module_api::{PeerConfig, PeerLive, PeerStats};

use crate::http::pool::UpstreamPool;
pub use balancer::Balancer;

pub struct Upstream {
    pub name: String,
    /// Keeps the strings `configs` borrows alive; never mutated.
    _text: Vec<Box<str>>,
    /// What modules see; borrows `_text` (see `Upstream::new`).
    pub configs: Vec<PeerConfig<'static>>,
    pub live: Vec<PeerLive>,
    /// ABI 1.1 per-peer statistics; the module holds a pointer to this
    /// slice, so it never moves or shrinks while the balancer lives.
    pub stats: Box<[PeerStats]>,
    pub addrs: Vec<addr::PeerAddr>,
    pub primary: u32,
    pub primary_weight: u32,
    pub single: bool,
    /// nginx's initial `peer.tries`: non-down primaries plus non-down backups.
    pub tries: u32,
    pub keepalive: usize,
    pub keepalive_timeout: Duration,
    pub keepalive_requests: u64,
    pub balancer: Balancer,
    /// Templates the balancer compiled at `init_upstream`, by id.
    pub templates: Vec<crate::vars::Template>,
    pub pool: UpstreamPool,
    /// Per-peer responses by status class and failures, for metrics.
    pub counts: Box<[peers::PeerCounts]>,
    /// `health_check`, probed by `health::Checks` off the request path.
    pub health: Option<crate::conf::model::HealthCheck>,
    /// Peers down by health checks now: while 0, requests skip looking.
    pub unhealthy: AtomicU32,
    /// Health probes per peer, passed and failed, for metrics.
    pub probes: Box<[ProbeCounts]>,
}

#[derive(Default)]
pub struct ProbeCounts {
    pub passed: AtomicU64,
    pub failed: AtomicU64,
}

/// One peer's configuration, owned.
pub struct PeerSpec {
    pub server: String,
    pub addr: addr::PeerAddr,
    pub weight: u32,
    pub max_fails: u32,
    pub fail_timeout: u32,
    pub max_conns: u32,
    pub backup: bool,
    pub down: bool,
    pub slow_start_ms: u32,
}

/// The peer strings and their ABI views. Built before the balancer, which
/// needs the views at `init_upstream`.
pub struct PeerTable {
    text: Vec<Box<str>>,
    pub configs: Vec<PeerConfig<'static>>,
    pub addrs: Vec<addr::PeerAddr>,
    pub stats: Box<[PeerStats]>,
}

impl PeerTable {
    pub fn new(peers: &[PeerSpec]) -> PeerTable {
        let mut text = Vec::with_capacity(peers.len() * 2);
        let mut configs = Vec::with_capacity(peers.len());
        for p in peers {
            let server: Box<str> = p.server.clone().into_boxed_str();
            // Also the text of `$upstream_addr` (nginx prints a peer so).
            let addr: Box<str> = p.addr.to_string().into_boxed_str();
            // SAFETY: the boxed strings live in `text`, which is moved into
            // the Upstream together with `configs` and never mutated, so
            // their heap data outlives every view handed out.
            let (s, a): (&'static str, &'static str) = unsafe {
                (
                    &*(server.as_ref() as *const str),
                    &*(addr.as_ref() as *const str),
                )
            };
            configs.push(PeerConfig {
                server: s.into(),
                addr: a.into(),
                weight: p.weight,
                max_fails: p.max_fails,
                fail_timeout: p.fail_timeout,
                max_conns: p.max_conns,
                backup: p.backup,
                down: p.down,
            });
            text.push(server);
            text.push(addr);
        }
        PeerTable {
            text,
            configs,
            addrs: peers.iter().map(|p| p.addr.clone()).collect(),
            stats: peers
                .iter()
                .map(|p| PeerStats {
                    slow_start_ms: p.slow_start_ms,
                    ..PeerStats::default()
                })
                .collect(),
        }
    }
}

pub struct UpstreamParams {
    pub name: String,
    pub keepalive: usize,
    pub keepalive_timeout: Duration,
    pub keepalive_requests: u64,
    pub workers: usize,
    pub health: Option<crate::conf::model::HealthCheck>,
}

impl Upstream {
    pub fn new(
        params: UpstreamParams,
        table: PeerTable,
        balancer: Balancer,
        templates: Vec<crate::vars::Template>,
    ) -> Upstream {
        let primary = table.configs.iter().take_while(|p| !p.backup).count();
        let backups = table.configs.len() - primary;
        let primary_weight = table.configs[..primary].iter().map(|p| p.weight).sum();
        let tries = table.configs.iter().filter(|p| !p.down).count() as u32;
        let n = table.configs.len();
        Upstream {
            name: params.name,
            _text: table.text,
            configs: table.configs,
            live: (0..n).map(|_| PeerLive::default()).collect(),
            stats: table.stats,
            addrs: table.addrs,
            primary: primary as u32,
            primary_weight,
            single: primary == 1 && backups == 0,
            tries,
            keepalive: params.keepalive,
            keepalive_timeout: params.keepalive_timeout,
            keepalive_requests: params.keepalive_requests,
            balancer,
            templates,
            pool: UpstreamPool::new(params.workers, params.keepalive),
            counts: (0..n).map(|_| peers::PeerCounts::default()).collect(),
            probes: (0..n).map(|_| ProbeCounts::default()).collect(),
            unhealthy: AtomicU32::new(0),
            health: params.health,
        }
        .with_initial_health()
    }

    /// `health_check ... mandatory`: every peer starts unhealthy until a
    /// probe passes (a reload then carries the state of known peers over).
    fn with_initial_health(self) -> Upstream {
        if self.health.as_ref().is_some_and(|h| h.mandatory) {
            let mut down = 0;
            for (i, stats) in self.stats.iter().enumerate() {
                if !self.configs[i].down {
                    stats.health.store(1, std::sync::atomic::Ordering::Relaxed);
                    down += 1;
                }
            }
            self.unhealthy
                .store(down, std::sync::atomic::Ordering::Relaxed);
        }
        self
    }
}
