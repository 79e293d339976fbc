//! nginx's smooth weighted round robin step (`ngx_http_upstream_get_peer`),
//! shared by `round_robin` and by balancers that fall back to it (`hash`).
//!
//! nginx keeps `current_weight` and `effective_weight` per worker process.
//! We keep them per worker thread, so the step takes a lock that only one
//! thread ever uses: no lock is shared by all requests, and with one worker
//! the sequence is exactly nginx's.
//!
//! ```
//! use waypost_module_api::testing::PeerSet;
//! use waypost_module_api::wrr::SmoothWeights;
//!
//! let set = PeerSet::new(&[2, 1]);
//! let weights = SmoothWeights::new(set.configs(), 1);
//! let picks: Vec<_> = (0..3).map(|_| weights.pick_with_backup(&set.view()).unwrap()).collect();
//! assert_eq!(picks, [0, 1, 0]);
//! ```

use std::sync::{Mutex, MutexGuard};

use crate::abi::PeerConfig;
use crate::sdk::Peers;

#[derive(Clone, Copy, Debug)]
struct Weights {
    current: i64,
    effective: i64,
}

/// Padded so two workers' shards never share a cache line.
#[repr(align(64))]
struct Shard(Mutex<Vec<Weights>>);

/// Per-worker smooth-WRR state for one upstream.
///
/// ```
/// use waypost_module_api::wrr::SmoothWeights;
/// use waypost_module_api::testing::PeerSet;
///
/// let set = PeerSet::new(&[5, 1, 1]);
/// let weights = SmoothWeights::new(set.configs(), 1);
/// let order: Vec<usize> = (0..7).map(|_| {
///     let peers = set.view();
///     weights.pick(&peers, 0..3).unwrap()
/// }).collect();
/// assert_eq!(order, [0, 0, 1, 0, 2, 0, 0]);
/// ```
pub struct SmoothWeights {
    shards: Box<[Shard]>,
}

impl SmoothWeights {
    /// State for `peers`, one copy per worker; `effective_weight` starts at
    /// `weight` and `current_weight` at 0, as nginx.
    ///
    /// ```
    /// use waypost_module_api::{testing::PeerSet, wrr::SmoothWeights, UpstreamConfig};
    /// let set = PeerSet::new(&[1, 1]);
    /// let weights = set.with_args(&[], |args| {
    ///     let config = UpstreamConfig::new(args);
    ///     SmoothWeights::new(config.peers(), config.workers())
    /// });
    /// assert_eq!(weights.pick_with_backup(&set.view()), Some(0));
    /// ```
    pub fn new(peers: &[PeerConfig<'_>], workers: usize) -> SmoothWeights {
        let initial: Vec<Weights> = peers
            .iter()
            .map(|p| Weights {
                current: 0,
                effective: i64::from(p.weight),
            })
            .collect();
        let shards = (0..workers.max(1))
            .map(|_| Shard(Mutex::new(initial.clone())))
            .collect();
        SmoothWeights { shards }
    }

    fn shard(&self, worker: usize) -> MutexGuard<'_, Vec<Weights>> {
        let shard = &self.shards[worker % self.shards.len()];
        // A panic in a hook is caught by the SDK; the weights stay usable.
        shard
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// One selection step over the eligible peers among `candidates`:
    /// every eligible peer gains its effective weight, the highest current
    /// weight wins (the first on ties) and loses the total.
    ///
    /// ```
    /// use waypost_module_api::{testing::PeerSet, wrr::SmoothWeights};
    /// let set = PeerSet::new(&[5, 1, 1]);
    /// let weights = SmoothWeights::new(set.configs(), 1);
    /// // Only peers 1 and 2 are candidates, as for a hash falling back.
    /// assert_eq!(weights.pick(&set.view(), 1..3), Some(1));
    /// assert_eq!(weights.pick(&set.view(), 1..3), Some(2));
    /// ```
    pub fn pick(
        &self,
        peers: &Peers<'_>,
        candidates: impl Iterator<Item = usize>,
    ) -> Option<usize> {
        let mut weights = self.shard(peers.worker());
        let mut best: Option<usize> = None;
        let mut total = 0i64;
        // Weights count in thousandths, so that slow_start can give a peer
        // a fraction of its weight; scaling every weight alike leaves
        // nginx's sequence unchanged.
        let mut now = None;
        for i in candidates {
            if !peers.is_eligible(i) {
                continue;
            }
            let permille = if peers.slow_start_ms(i) == 0 {
                1000
            } else {
                peers.weight_permille(i, *now.get_or_insert_with(crate::sdk::now_ns))
            };
            let w = &mut weights[i];
            let share = w.effective * i64::from(permille);
            w.current += share;
            total += share;
            if w.effective < i64::from(peers.weight(i)) {
                w.effective += 1;
            }
            if best.is_none_or(|b| weights[i].current > weights[b].current) {
                best = Some(i);
            }
        }
        let chosen = best?;
        weights[chosen].current -= total;
        Some(chosen)
    }

    /// nginx's round robin: a step over the primaries, then, when none is
    /// eligible, over the backups.
    ///
    /// ```
    /// use waypost_module_api::{testing::PeerSet, wrr::SmoothWeights};
    /// let mut set = PeerSet::new(&[1, 1]);
    /// set.config_mut(1).backup = true;
    /// let weights = SmoothWeights::new(set.configs(), 1);
    /// assert_eq!(weights.pick_with_backup(&set.view()), Some(0));
    /// set.mark_tried(0); // the primary failed: the backup is next
    /// assert_eq!(weights.pick_with_backup(&set.view()), Some(1));
    /// ```
    pub fn pick_with_backup(&self, peers: &Peers<'_>) -> Option<usize> {
        // nginx's `single` upstream (one server, no backup): the server if
        // it may take the try, no weights stepped (nor their lock taken).
        if peers.len() == 1 {
            return peers.is_eligible(0).then_some(0);
        }
        self.pick(peers, 0..peers.primary())
            .or_else(|| self.pick(peers, peers.primary()..peers.len()))
    }

    /// A failure lowers the peer's effective weight by `weight / max_fails`,
    /// so a failing peer gets fewer requests before it is disabled.
    ///
    /// ```
    /// use waypost_module_api::{testing::PeerSet, wrr::SmoothWeights};
    /// let set = PeerSet::new(&[1, 1]);
    /// let weights = SmoothWeights::new(set.configs(), 1);
    /// weights.failed(&set.view(), 0); // effective weight 1 - 1/max_fails = 0
    /// assert_eq!(weights.pick_with_backup(&set.view()), Some(1));
    /// ```
    pub fn failed(&self, peers: &Peers<'_>, i: usize) {
        let config = peers.config(i);
        if config.max_fails == 0 {
            return;
        }
        let mut weights = self.shard(peers.worker());
        let w = &mut weights[i];
        w.effective = (w.effective - i64::from(config.weight / config.max_fails)).max(0);
    }

    /// nginx's round-robin `free`, which every balancer built on these
    /// weights shares: a failed try lowers the peer's effective weight (the
    /// core has already counted the failure against max_fails).
    ///
    /// ```
    /// use waypost_module_api::prelude::*;
    /// use waypost_module_api::testing::PeerSet;
    /// use waypost_module_api::wrr::SmoothWeights;
    /// let set = PeerSet::new(&[1, 1]);
    /// let weights = SmoothWeights::new(set.configs(), 1);
    /// let outcome = TryOutcome { peer: 0, state: TryState::Failed, status: 0, elapsed_us: 0 };
    /// assert_eq!(weights.free(&set.view(), &outcome), FreeAction::Continue);
    /// ```
    pub fn free(
        &self,
        peers: &Peers<'_>,
        outcome: &crate::abi::TryOutcome,
    ) -> crate::abi::FreeAction {
        // A single server's weights are never stepped (see
        // `pick_with_backup`), as nginx leaves them.
        if outcome.state == crate::abi::TryState::Failed && peers.len() > 1 {
            self.failed(peers, outcome.peer as usize);
        }
        crate::abi::FreeAction::Continue
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::PeerSet;

    #[test]
    fn a_single_server_is_chosen_while_it_may_take_the_try() {
        let mut set = PeerSet::new(&[3]);
        let weights = SmoothWeights::new(set.configs(), 1);
        assert_eq!(weights.pick_with_backup(&set.view()), Some(0));
        assert_eq!(weights.pick_with_backup(&set.view()), Some(0));
        set.mark_tried(0);
        assert_eq!(weights.pick_with_backup(&set.view()), None);
        set.new_request();
        set.config_mut(0).down = true;
        assert_eq!(weights.pick_with_backup(&set.view()), None);
    }

    fn picks(set: &PeerSet, weights: &SmoothWeights, n: usize) -> [usize; 2] {
        let mut count = [0; 2];
        for _ in 0..n {
            count[weights.pick_with_backup(&set.view()).expect("a peer")] += 1;
        }
        count
    }

    #[test]
    fn slow_start_gives_a_recovered_peer_its_share_of_the_ramp() {
        let mut set = PeerSet::new(&[1, 1]);
        let weights = SmoothWeights::new(set.configs(), 1);
        // A 1000 s ramp, half done: the recovered peer weighs 0.5 against 1
        // (the microseconds the test takes do not move it). The clock
        // starts near 0 without a core, hence the wait for 500 s of it is
        // replaced by a later recovery stamp on a shorter ramp: 2 s, the
        // clock read now, the peer back 1 s before.
        let window_ms = 2_000;
        while crate::sdk::now_ns() < 1_000_000_000 {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let now = crate::sdk::now_ns();
        set.set_slow_start(1, window_ms, now - 1_000_000_000);
        let [a, b] = picks(&set, &weights, 300);
        assert!((99..=101).contains(&b), "{a} {b}");
        // Just back, on a long ramp: weight 0, no share at all.
        set.set_slow_start(1, 1_000_000, crate::sdk::now_ns());
        assert_eq!(picks(&set, &weights, 100)[1], 0);
        // The ramp is over: equal shares again.
        set.set_slow_start(1, 1, 1);
        let [a, b] = picks(&set, &weights, 100);
        assert!(a.abs_diff(b) <= 1, "{a} {b}");
    }
}
