//! Helpers to unit-test a balancer without a running proxy: a set of peers
//! with live counters and a tried bitmap, viewed as the core would show it.

use std::sync::atomic::Ordering;

use abi_stable::std_types::{RSlice, RStr};

use crate::abi::{PeerConfig, PeerLive, PeersView};
use crate::sdk::Peers;

/// Peers named `p0`, `p1`, ... with the given weights, all primary.
///
/// ```
/// use waypost_module_api::testing::PeerSet;
/// let mut set = PeerSet::new(&[1, 1]);
/// set.mark_tried(0);
/// assert!(!set.view().is_eligible(0));
/// assert!(set.view().is_eligible(1));
/// ```
pub struct PeerSet {
    configs: Vec<PeerConfig<'static>>,
    live: Vec<PeerLive>,
    tried: Vec<u64>,
    /// Wall-clock second the view reports.
    pub now: u64,
}

impl PeerSet {
    /// Primary peers with these weights and nginx's default parameters.
    pub fn new(weights: &[u32]) -> PeerSet {
        let names: Vec<&'static str> = (0..weights.len())
            .map(|i| &*Box::leak(format!("p{i}").into_boxed_str()))
            .collect();
        let configs = weights
            .iter()
            .zip(&names)
            .map(|(&weight, name)| PeerConfig {
                server: RStr::from_str(name),
                addr: RStr::from_str(name),
                weight,
                max_fails: 1,
                fail_timeout: 10,
                max_conns: 0,
                backup: false,
                down: false,
            })
            .collect();
        let live = weights.iter().map(|_| PeerLive::default()).collect();
        PeerSet {
            configs,
            live,
            tried: vec![0; weights.len().div_ceil(64).max(1)],
            now: 1_000,
        }
    }

    /// The peer configurations, for `init_upstream`-like setup.
    pub fn configs(&self) -> &[PeerConfig<'static>] {
        &self.configs
    }

    /// Mutable access to a peer's configuration (to set `down`, `backup`...).
    /// Backups must stay after primaries.
    pub fn config_mut(&mut self, i: usize) -> &mut PeerConfig<'static> {
        &mut self.configs[i]
    }

    /// Records a try of peer `i` by the current request.
    pub fn mark_tried(&mut self, i: usize) {
        self.tried[i / 64] |= 1 << (i % 64);
    }

    /// Starts a new request: clears the tried bitmap.
    pub fn new_request(&mut self) {
        self.tried.iter_mut().for_each(|w| *w = 0);
    }

    /// Sets peer `i`'s failure counter and the second of its last check.
    pub fn set_failed(&mut self, i: usize, fails: u32, checked: u64) {
        self.live[i].fails.store(fails, Ordering::Relaxed);
        self.live[i].checked.store(checked, Ordering::Relaxed);
        self.live[i].accessed.store(checked, Ordering::Relaxed);
    }

    /// Sets peer `i`'s count of tries in flight (`least_conn`, `max_conns`).
    ///
    /// ```
    /// use waypost_module_api::testing::PeerSet;
    /// let mut set = PeerSet::new(&[1, 1]);
    /// set.set_conns(1, 3);
    /// assert_eq!(set.view().conns(1), 3);
    /// ```
    pub fn set_conns(&mut self, i: usize, conns: u32) {
        self.live[i].conns.store(conns, Ordering::Relaxed);
    }

    /// The view a hook would receive.
    pub fn view(&self) -> Peers<'_> {
        let primary = self.configs.iter().take_while(|p| !p.backup).count();
        let raw = PeersView {
            config: RSlice::from_slice(&self.configs),
            live: RSlice::from_slice(&self.live),
            tried: RSlice::from_slice(&self.tried),
            primary: primary as u32,
            primary_weight: self.configs[..primary].iter().map(|p| p.weight).sum(),
            single: primary == 1 && self.configs.len() == 1,
            now: self.now,
            worker: 0,
        };
        // The view borrows self; a leaked copy keeps the API simple for tests.
        Peers::new(Box::leak(Box::new(raw)))
    }
}
