//! The core's handle on a module's upstream object: the only place that
//! calls through the module vtable.

use std::ffi::c_void;
use std::sync::atomic::{AtomicU32, Ordering::Relaxed};
use std::sync::Arc;

use waypost_module_api::{
    FreeAction, GetResult, InitPeerResult, PeerStorage, PeersView, RequestView, TryOutcome,
    UpstreamObject,
};

use crate::clock::Mono;
use crate::log::{self, Level};
use crate::modules::loader::LoadedModule;
use crate::modules::watch::{called_at, ended, timed_from};

/// Hook failures in a row after which the upstream logs an alert (and
/// again after as many more): one panic is a request's bad luck, a run of
/// them is a broken module an operator must hear about.
const PANICS_IN_A_ROW: u32 = 10;

pub struct Balancer {
    object: UpstreamObject,
    /// Keeps the library's record alive while its code may run. The library
    /// itself is never unloaded.
    pub module: Arc<LoadedModule>,
    /// The upstream's name, for the alert.
    upstream: String,
    /// Hook failures since the last `get` that worked.
    failures_in_a_row: AtomicU32,
}

// SAFETY: the SDK requires `Balancer: Send + Sync` of every upstream object,
// and the vtable functions are plain `extern "C"` functions.
unsafe impl Send for Balancer {}
unsafe impl Sync for Balancer {}

impl Balancer {
    pub fn new(object: UpstreamObject, module: Arc<LoadedModule>, upstream: &str) -> Balancer {
        Balancer {
            object,
            module,
            upstream: upstream.to_owned(),
            failures_in_a_row: AtomicU32::new(0),
        }
    }

    /// Keeps the count of hook failures in a row. Reads before writing on
    /// success, so a healthy module costs no shared write per request.
    fn count(&self, failed: bool) {
        if !failed {
            if self.failures_in_a_row.load(Relaxed) != 0 {
                self.failures_in_a_row.store(0, Relaxed);
            }
            return;
        }
        self.module.panics.fetch_add(1, Relaxed);
        let n = self.failures_in_a_row.fetch_add(1, Relaxed) + 1;
        if n.is_multiple_of(PANICS_IN_A_ROW) {
            log::write(
                Level::Alert,
                None,
                &format!(
                    "module \"{}\" failed {n} times in a row in upstream \"{}\"",
                    self.module.name, self.upstream
                ),
            );
        }
    }

    pub fn name(&self) -> &str {
        &self.module.name
    }

    fn this(&self) -> *const c_void {
        self.object.this
    }

    /// Runs `init_peer`, called at `start`, untimed: the caller times it
    /// ([`PeerState::init`]). On `Ready` or `Delay` the caller must later
    /// call `drop_peer` on the same storage.
    pub fn init_peer(
        &self,
        request: &RequestView<'_>,
        peers: &PeersView<'_>,
        storage: &mut PeerStorage,
        start: Mono,
    ) -> InitPeerResult {
        // SAFETY: `this` is the object this vtable belongs to; storage is
        // exclusively ours for the request.
        let result = called_at(start, || unsafe {
            (self.object.vtable.init_peer)(self.this(), request, peers, storage)
        });
        // Only `get` ends a run of failures: a request whose init_peer
        // works but whose get panics is still a failure.
        if matches!(result, InitPeerResult::Error(_)) {
            self.count(true);
        }
        result
    }

    /// Runs `get`, timed from `start` (with the `init_peer` before it when
    /// `hook` names both); also returns the clock reading at its end (the
    /// try's start).
    pub fn get(
        &self,
        storage: &mut PeerStorage,
        peers: &PeersView<'_>,
        start: Mono,
        hook: &'static str,
    ) -> (GetResult, Mono) {
        // SAFETY: storage was initialised by a successful init_peer.
        let (result, end) = timed_from(&self.module, hook, start, || unsafe {
            (self.object.vtable.get)(self.this(), storage, peers)
        });
        self.count(matches!(result, GetResult::Error(_)));
        (result, end)
    }

    /// Runs `free`; `now` is a clock reading taken just before (the try's
    /// end). Also returns the reading at its end.
    pub fn free(
        &self,
        storage: &mut PeerStorage,
        peers: &PeersView<'_>,
        outcome: TryOutcome,
        now: Mono,
    ) -> (FreeAction, Mono) {
        // SAFETY: as for get.
        timed_from(&self.module, "free", now, || unsafe {
            (self.object.vtable.free)(self.this(), storage, peers, outcome)
        })
    }

    /// # Safety
    /// `storage` must hold state written by a successful `init_peer` of this
    /// balancer, and must not be used afterwards.
    pub unsafe fn drop_peer(&self, storage: &mut PeerStorage) {
        (self.object.vtable.drop_peer)(storage)
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        // SAFETY: the object came from this vtable's init_upstream and is
        // dropped exactly once.
        unsafe { (self.object.vtable.drop_upstream)(self.object.this) }
    }
}

/// Per-request balancer state, dropped through the module when the
/// request ends however it ends.
pub struct PeerState<'b> {
    balancer: &'b Balancer,
    pub storage: PeerStorage,
    ready: bool,
    /// The next hook's start while no await came since: the reading at the
    /// end of the last hook (a filter's `check`, `init_peer` when it did
    /// not answer Ready, `free`), or the start of an open `init_peer` (see
    /// `init_open`). The work between is the core's own, microseconds
    /// against the slow-hook threshold of a millisecond.
    hook_end: Option<Mono>,
    /// `hook_end` holds the start of an `init_peer` whose end was not
    /// read: the `get` right after it is timed from there, both hooks at
    /// once, which saves a clock reading per request (about 0.4% of its
    /// CPU time here). A wait or the request's end before that `get` ends
    /// it first.
    init_open: bool,
}

impl<'b> PeerState<'b> {
    pub fn new(balancer: &'b Balancer) -> Self {
        PeerState {
            balancer,
            storage: PeerStorage::new(),
            ready: false,
            hook_end: None,
            init_open: false,
        }
    }

    /// Runs `init_peer`, timed from the end of the hook before it (the
    /// location's filters', see [`PeerState::hook_ended`]) if there was one.
    pub fn init(&mut self, request: &RequestView<'_>, peers: &PeersView<'_>) -> InitPeerResult {
        let start = self.hook_end.take().unwrap_or_else(Mono::read);
        let result = self
            .balancer
            .init_peer(request, peers, &mut self.storage, start);
        // A delay comes with state written as well: it is dropped too.
        self.ready = matches!(result, InitPeerResult::Ready | InitPeerResult::Delay(_));
        if matches!(result, InitPeerResult::Ready) {
            // `get` comes next, after the core's own work.
            self.init_open = true;
            self.hook_end = Some(start);
        } else {
            let end = Mono::read();
            ended(&self.balancer.module, "init_peer", start, end);
            self.hook_end = Some(end);
        }
        result
    }

    /// Runs `get`, timed from the end of the hook before it, or with the
    /// open `init_peer` from that one's start, if nothing waited since (a
    /// clock reading fewer); returns the try's start.
    pub fn get(&mut self, peers: &PeersView<'_>) -> (GetResult, Mono) {
        let hook = if std::mem::take(&mut self.init_open) {
            "init_peer+get"
        } else {
            "get"
        };
        let start = self.hook_end.take().unwrap_or_else(Mono::read);
        self.balancer.get(&mut self.storage, peers, start, hook)
    }

    pub fn free(&mut self, peers: &PeersView<'_>, outcome: TryOutcome, now: Mono) -> FreeAction {
        let (action, end) = self.balancer.free(&mut self.storage, peers, outcome, now);
        self.hook_end = Some(end);
        action
    }

    /// A hook outside the balancer (a filter's `check`) ended at `at`.
    pub fn hook_ended(&mut self, at: Mono) {
        self.hook_end = Some(at);
    }

    /// The request is about to wait (a delay, a body read): an open
    /// `init_peer` ends now, and the next `get` reads the clock rather
    /// than count the wait as its own.
    pub fn waiting(&mut self) {
        self.close_init();
        self.hook_end = None;
    }

    /// Ends an `init_peer` whose `get` did not follow at once.
    fn close_init(&mut self) {
        if let (true, Some(start)) = (std::mem::take(&mut self.init_open), self.hook_end) {
            ended(&self.balancer.module, "init_peer", start, Mono::read());
        }
    }
}

impl Drop for PeerState<'_> {
    fn drop(&mut self) {
        self.close_init();
        if self.ready {
            // SAFETY: ready means init_peer wrote the state; dropped once.
            unsafe { self.balancer.drop_peer(&mut self.storage) }
        }
    }
}
