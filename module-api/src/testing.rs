//! Helpers to unit-test a balancer without a running proxy: a set of peers
//! with live counters and a tried bitmap, viewed as the core would show it.
//!
//! ```
//! use waypost_module_api::testing::PeerSet;
//!
//! let mut set = PeerSet::new(&[1, 1, 1]);
//! set.mark_tried(0); // this request already tried p0
//! set.config_mut(2).down = true; // `server p2 down;`
//! let eligible: Vec<usize> =
//!     set.with_peers(|peers| (0..peers.len()).filter(|&i| peers.is_eligible(i)).collect());
//! assert_eq!(eligible, [1]);
//! ```

use std::ffi::c_void;
use std::sync::atomic::Ordering;
use std::time::Duration;

use abi_stable::std_types::{RResult, RSlice, RStr, RString};

use crate::abi::{
    DirectiveArgs, HostApi, InitUpstreamArgs, LogLevel, PeerConfig, PeerLive, PeerStats, PeersView,
};
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
    stats: Vec<PeerStats>,
    tried: Vec<u64>,
    /// Wall-clock second the view reports.
    pub now: u64,
}

impl PeerSet {
    /// Primary peers with these weights and nginx's default parameters.
    ///
    /// ```
    /// use waypost_module_api::testing::PeerSet;
    /// let set = PeerSet::new(&[3, 1]);
    /// let peers = set.view();
    /// assert_eq!((peers.len(), peers.primary(), peers.weight(0)), (2, 2, 3));
    /// ```
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
            stats: weights.iter().map(|_| PeerStats::default()).collect(),
            tried: vec![0; weights.len().div_ceil(64).max(1)],
            now: 1_000,
        }
    }

    /// The peer configurations, for `init_upstream`-like setup.
    ///
    /// ```
    /// use waypost_module_api::{testing::PeerSet, wrr::SmoothWeights};
    /// let set = PeerSet::new(&[2, 1]);
    /// assert_eq!(set.configs()[1].server.as_str(), "p1");
    /// let _weights = SmoothWeights::new(set.configs(), 1);
    /// ```
    pub fn configs(&self) -> &[PeerConfig<'static>] {
        &self.configs
    }

    /// Mutable access to a peer's configuration (to set `down`, `backup`...).
    /// Backups must stay after primaries.
    ///
    /// ```
    /// use waypost_module_api::testing::PeerSet;
    /// let mut set = PeerSet::new(&[1, 1, 1]);
    /// set.config_mut(1).down = true;
    /// set.config_mut(2).backup = true;
    /// assert!(!set.view().is_available(1));
    /// assert_eq!(set.view().primary(), 2);
    /// ```
    pub fn config_mut(&mut self, i: usize) -> &mut PeerConfig<'static> {
        &mut self.configs[i]
    }

    /// Records a try of peer `i` by the current request.
    ///
    /// ```
    /// use waypost_module_api::testing::PeerSet;
    /// let mut set = PeerSet::new(&[1, 1]);
    /// set.mark_tried(1);
    /// assert!(set.view().is_tried(1));
    /// assert!(!set.view().is_eligible(1));
    /// ```
    pub fn mark_tried(&mut self, i: usize) {
        self.tried[i / 64] |= 1 << (i % 64);
    }

    /// Starts a new request: clears the tried bitmap.
    ///
    /// ```
    /// use waypost_module_api::testing::PeerSet;
    /// let mut set = PeerSet::new(&[1]);
    /// set.mark_tried(0);
    /// set.new_request();
    /// assert!(set.view().is_eligible(0));
    /// ```
    pub fn new_request(&mut self) {
        self.tried.iter_mut().for_each(|w| *w = 0);
    }

    /// Sets peer `i`'s failure counter and the second of its last check.
    ///
    /// ```
    /// use waypost_module_api::testing::PeerSet;
    /// let mut set = PeerSet::new(&[1, 1]); // max_fails=1 fail_timeout=10
    /// set.set_failed(1, 1, set.now - 5);
    /// assert_eq!(set.view().fails(1), 1);
    /// assert!(!set.view().is_available(1)); // within fail_timeout
    /// ```
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

    /// Sets peer `i`'s latency EWMA, as the core keeps it.
    ///
    /// ```
    /// use std::time::Duration;
    /// use waypost_module_api::testing::PeerSet;
    /// let set = PeerSet::new(&[1, 1]);
    /// set.set_latency(1, Duration::from_millis(2));
    /// assert_eq!(set.view().latency(1), Some(Duration::from_millis(2)));
    /// ```
    pub fn set_latency(&self, i: usize, latency: Duration) {
        self.stats[i]
            .latency_us
            .store(latency.as_micros() as u64, Ordering::Relaxed);
    }

    /// Sets peer `i`'s `slow_start=` (milliseconds) and when it last
    /// became available again ([`crate::sdk::now_ns`] nanoseconds).
    ///
    /// ```
    /// use waypost_module_api::testing::PeerSet;
    /// let mut set = PeerSet::new(&[2]);
    /// set.set_slow_start(0, 1_000, 5);
    /// assert_eq!(set.view().weight_permille(0, 5 + 500_000_000), 500);
    /// ```
    pub fn set_slow_start(&mut self, i: usize, slow_start_ms: u32, recovered_ns: u64) {
        self.stats[i].slow_start_ms = slow_start_ms;
        self.stats[i]
            .recovered_ns
            .store(recovered_ns, Ordering::Relaxed);
    }

    /// Peer `i`'s statistics, to set `requests` or read the module's slot.
    ///
    /// ```
    /// use std::sync::atomic::Ordering;
    /// use waypost_module_api::testing::PeerSet;
    /// let set = PeerSet::new(&[1]);
    /// set.stats(0).requests.store(9, Ordering::Relaxed);
    /// assert_eq!(set.view().requests(0), 9);
    /// ```
    pub fn stats(&self, i: usize) -> &PeerStats {
        &self.stats[i]
    }

    /// Runs `f` with the peers as hooks see them, without leaking (see
    /// [`PeerSet::view`]).
    ///
    /// ```
    /// use waypost_module_api::testing::PeerSet;
    /// let set = PeerSet::new(&[1, 1, 1]);
    /// assert_eq!(set.with_peers(|peers| peers.len()), 3);
    /// ```
    pub fn with_peers<R>(&self, f: impl FnOnce(&Peers<'_>) -> R) -> R {
        let raw = self.raw();
        f(&Peers::with_stats(&raw, &self.stats))
    }

    /// Runs `f` with `init_upstream` arguments for these peers and
    /// `directives`, as the core would pass them; templates do not compile
    /// here (no core to resolve variables) and log lines go to stderr.
    ///
    /// ```
    /// use waypost_module_api::{testing::PeerSet, UpstreamConfig};
    /// let set = PeerSet::new(&[2, 1]);
    /// let total = set.with_args(&[], |args| {
    ///     UpstreamConfig::new(args).peers().iter().map(|p| p.weight).sum::<u32>()
    /// });
    /// assert_eq!(total, 3);
    /// ```
    pub fn with_args<R>(
        &self,
        directives: &[DirectiveArgs<'_>],
        f: impl FnOnce(&InitUpstreamArgs<'_>) -> R,
    ) -> R {
        extern "C" fn log(level: LogLevel, module: RStr<'_>, message: RStr<'_>) {
            eprintln!("[{level:?}] {module}: {message}");
        }
        extern "C" fn compile(_: *mut c_void, text: RStr<'_>) -> RResult<u32, RString> {
            RResult::RErr(RString::from(format!(
                "templates need the core: cannot compile \"{text}\" in a unit test"
            )))
        }
        let args = InitUpstreamArgs {
            upstream: RStr::from_str("test"),
            file: RStr::from_str("test.conf"),
            line: 1,
            peers: RSlice::from_slice(&self.configs),
            directives: RSlice::from_slice(directives),
            workers: 1,
            host: HostApi { log },
            builder: std::ptr::null_mut(),
            compile,
        };
        f(&args)
    }

    fn raw(&self) -> PeersView<'_> {
        let primary = self.configs.iter().take_while(|p| !p.backup).count();
        PeersView {
            config: RSlice::from_slice(&self.configs),
            live: RSlice::from_slice(&self.live),
            tried: RSlice::from_slice(&self.tried),
            primary: primary as u32,
            primary_weight: self.configs[..primary].iter().map(|p| p.weight).sum(),
            single: primary == 1 && self.configs.len() == 1,
            now: self.now,
            worker: 0,
        }
    }

    /// The view a hook would receive.
    ///
    /// ```
    /// use waypost_module_api::testing::PeerSet;
    /// let mut set = PeerSet::new(&[1, 1]);
    /// set.set_conns(0, 1);
    /// let peers = set.view();
    /// assert_eq!(peers.conns(0), 1);
    /// assert_eq!(peers.worker(), 0);
    /// ```
    pub fn view(&self) -> Peers<'_> {
        // The view borrows self; a leaked copy keeps the API simple for tests.
        Peers::with_stats(Box::leak(Box::new(self.raw())), &self.stats)
    }
}
