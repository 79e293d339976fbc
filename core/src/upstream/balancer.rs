//! The core's handle on a module's upstream object: the only place that
//! calls through the module vtable.

use std::ffi::c_void;
use std::sync::Arc;

use waypost_module_api::{
    FreeAction, GetResult, InitPeerResult, PeerStorage, PeersView, RequestView, TryOutcome,
    UpstreamObject,
};

use crate::modules::loader::LoadedModule;

pub struct Balancer {
    object: UpstreamObject,
    /// Keeps the library's record alive while its code may run. The library
    /// itself is never unloaded.
    pub module: Arc<LoadedModule>,
}

// SAFETY: the SDK requires `Balancer: Send + Sync` of every upstream object,
// and the vtable functions are plain `extern "C"` functions.
unsafe impl Send for Balancer {}
unsafe impl Sync for Balancer {}

impl Balancer {
    pub fn new(object: UpstreamObject, module: Arc<LoadedModule>) -> Balancer {
        Balancer { object, module }
    }

    pub fn name(&self) -> &str {
        &self.module.name
    }

    fn this(&self) -> *const c_void {
        self.object.this
    }

    /// Runs `init_peer`. On `Ready` the caller must later call `drop_peer`
    /// on the same storage (see [`PeerState`]).
    pub fn init_peer(
        &self,
        request: &RequestView<'_>,
        peers: &PeersView<'_>,
        storage: &mut PeerStorage,
    ) -> InitPeerResult {
        // SAFETY: `this` is the object this vtable belongs to; storage is
        // exclusively ours for the request.
        unsafe { (self.object.vtable.init_peer)(self.this(), request, peers, storage) }
    }

    pub fn get(&self, storage: &mut PeerStorage, peers: &PeersView<'_>) -> GetResult {
        // SAFETY: storage was initialised by a successful init_peer.
        unsafe { (self.object.vtable.get)(self.this(), storage, peers) }
    }

    pub fn free(
        &self,
        storage: &mut PeerStorage,
        peers: &PeersView<'_>,
        outcome: TryOutcome,
    ) -> FreeAction {
        // SAFETY: as for get.
        unsafe { (self.object.vtable.free)(self.this(), storage, peers, outcome) }
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
}

impl<'b> PeerState<'b> {
    pub fn new(balancer: &'b Balancer) -> Self {
        PeerState {
            balancer,
            storage: PeerStorage::new(),
            ready: false,
        }
    }

    pub fn init(&mut self, request: &RequestView<'_>, peers: &PeersView<'_>) -> InitPeerResult {
        let result = self.balancer.init_peer(request, peers, &mut self.storage);
        self.ready = matches!(result, InitPeerResult::Ready);
        result
    }

    pub fn get(&mut self, peers: &PeersView<'_>) -> GetResult {
        self.balancer.get(&mut self.storage, peers)
    }

    pub fn free(&mut self, peers: &PeersView<'_>, outcome: TryOutcome) -> FreeAction {
        self.balancer.free(&mut self.storage, peers, outcome)
    }
}

impl Drop for PeerState<'_> {
    fn drop(&mut self) {
        if self.ready {
            // SAFETY: ready means init_peer wrote the state; dropped once.
            unsafe { self.balancer.drop_peer(&mut self.storage) }
        }
    }
}
