//! The live peer rules nginx applies around the balancer
//! (`ngx_http_upstream_get_round_robin_peer` and `..._free_round_robin_peer`):
//! the core applies them for every balancer, so modules only choose.

use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;

use waypost_module_api::TryState;

use super::Upstream;
use crate::log::{self, Level};

/// Per-peer counters for `metrics;` and `status;`, beyond what modules
/// see: a cache line per peer, so workers updating different peers do not
/// contend. They count under the running configuration, as
/// `PeerStats::requests` does.
#[derive(Default)]
#[repr(align(64))]
pub struct PeerCounts {
    /// Response headers received, by status class: 1xx to 5xx.
    pub responses: [AtomicU64; 5],
    /// Tries that ended `TryState::Failed` (no usable response, or a
    /// status `proxy_next_upstream` counts as a failure).
    pub failures: AtomicU64,
}

impl PeerCounts {
    /// Counts a response with `status` in its class; statuses outside
    /// 100..=599 in none.
    pub fn response(&self, status: u16) {
        if let Some(class) = self
            .responses
            .get(usize::from(status / 100).wrapping_sub(1))
        {
            class.fetch_add(1, Relaxed);
        }
    }
}

/// What the release of a peer tells the request's try loop.
pub struct Released {
    /// The peer just crossed max_fails (nginx logs it at warn).
    pub disabled: bool,
}

impl Upstream {
    /// A peer was chosen for a try: count the connection, and if its
    /// fail_timeout window has passed, this try is the one probe of the
    /// next window.
    pub fn on_select(&self, i: usize, now: u64) {
        let live = &self.live[i];
        live.conns.fetch_add(1, Relaxed);
        self.stats[i].requests.fetch_add(1, Relaxed);
        if self.single {
            return;
        }
        let checked = live.checked.load(Relaxed);
        if now.saturating_sub(checked) > u64::from(self.configs[i].fail_timeout) {
            live.checked.store(now, Relaxed);
        }
    }

    /// The try's connection is no longer in use: when the response has been
    /// passed on whole, or the try failed (nginx frees the peer at the end
    /// of the request, so least_conn and max_conns see long bodies).
    pub fn release_conn(&self, i: usize) {
        self.live[i].conns.fetch_sub(1, Relaxed);
    }

    /// A response header with `status` arrived `elapsed_us` after the peer
    /// was chosen: counted by status class for metrics, and the latency
    /// EWMA modules read (each sample weighs 1/8). Concurrent
    /// updates may lose a sample; an average does not need them all.
    pub fn on_response(&self, i: usize, status: u16, elapsed_us: u64) {
        self.counts[i].response(status);
        let sample = elapsed_us.max(1);
        let ewma = &self.stats[i].latency_us;
        let old = ewma.load(Relaxed);
        let new = if old == 0 {
            sample
        } else {
            (old * 7 + sample).div_ceil(8)
        };
        ewma.store(new, Relaxed);
    }

    /// A try ended: nginx's failure accounting.
    pub fn on_release(&self, i: usize, state: TryState, now: u64) -> Released {
        let live = &self.live[i];
        let config = &self.configs[i];
        if state == TryState::Failed {
            self.counts[i].failures.fetch_add(1, Relaxed);
        }
        if self.single {
            live.fails.store(0, Relaxed);
            return Released { disabled: false };
        }
        let mut disabled = false;
        if state == TryState::Failed {
            let fails = live.fails.fetch_add(1, Relaxed) + 1;
            live.accessed.store(now, Relaxed);
            live.checked.store(now, Relaxed);
            if config.max_fails > 0 && fails >= config.max_fails {
                disabled = true;
                log::write(Level::Warn, None, &format!(
                    "upstream server temporarily disabled while connecting to upstream, upstream: \"{}\"",
                    self.addrs[i]
                ));
            }
        } else if live.accessed.load(Relaxed) < live.checked.load(Relaxed) {
            // The probe of a new fail_timeout window succeeded: a peer that
            // was disabled is back, and slow_start ramps it from here.
            if config.max_fails > 0 && live.fails.swap(0, Relaxed) >= config.max_fails {
                self.stats[i]
                    .recovered_ns
                    .store(crate::modules::host::now_ns().max(1), Relaxed);
            }
        }
        Released { disabled }
    }
}

/// The peers one request has tried: nginx's `tried` bitmap.
pub struct Tried {
    words: TriedWords,
}

enum TriedWords {
    Inline([u64; 1]),
    Heap(Vec<u64>),
}

impl Tried {
    pub fn new(peers: usize) -> Tried {
        Tried {
            words: if peers <= 64 {
                TriedWords::Inline([0])
            } else {
                TriedWords::Heap(vec![0; peers.div_ceil(64)])
            },
        }
    }

    pub fn words(&self) -> &[u64] {
        match &self.words {
            TriedWords::Inline(w) => w,
            TriedWords::Heap(v) => v,
        }
    }

    pub fn set(&mut self, i: usize) {
        let words = match &mut self.words {
            TriedWords::Inline(w) => &mut w[..],
            TriedWords::Heap(v) => &mut v[..],
        };
        if let Some(w) = words.get_mut(i / 64) {
            *w |= 1 << (i % 64);
        }
    }
}
