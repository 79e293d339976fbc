//! # waypost-module-api
//!
//! The stable ABI between the waypost proxy and its load-balancing modules,
//! and the safe SDK to write one. A module is a Rust `cdylib` that
//! implements [`Module`] and [`Balancer`] and calls [`export_module!`]:
//!
//! ```
//! use waypost_module_api::prelude::*;
//! use waypost_module_api::wrr::SmoothWeights;
//!
//! /// nginx's default balancer in a dozen lines.
//! pub struct RoundRobin { weights: SmoothWeights }
//!
//! impl Balancer for RoundRobin {
//!     type Request = ();
//!     fn init_peer(&self, _: &Request<'_>, _: &Peers<'_>) -> Result<(), Rejection> { Ok(()) }
//!     fn get(&self, _: &mut (), peers: &Peers<'_>) -> Option<usize> {
//!         self.weights.pick_with_backup(peers)
//!     }
//!     fn free(&self, _: &mut (), peers: &Peers<'_>, outcome: &TryOutcome) -> FreeAction {
//!         if outcome.state == TryState::Failed { self.weights.failed(peers, outcome.peer as usize) }
//!         FreeAction::Continue
//!     }
//! }
//!
//! pub struct RoundRobinModule;
//! impl Module for RoundRobinModule {
//!     const NAME: &'static str = "round_robin";
//!     const DIRECTIVES: &'static [DirectiveSpec] = &[];
//!     type Upstream = RoundRobin;
//!     fn init_upstream(config: &UpstreamConfig<'_>) -> Result<RoundRobin, ConfigError> {
//!         Ok(RoundRobin { weights: SmoothWeights::new(config.peers(), config.workers()) })
//!     }
//! }
//! // In the cdylib: waypost_module_api::export_module!(RoundRobinModule);
//! ```
//!
//! Hooks run on the proxy's worker threads and must not block. A panic in a
//! hook is caught inside the module and fails that try; it never crosses
//! the ABI.

#![warn(missing_docs)]

pub mod abi;
pub mod filter;
pub mod sdk;
pub mod testing;
pub mod wrr;

#[doc(hidden)]
pub use abi_stable;

pub use abi::{
    BalancerVTable, ConfigError, Contexts, DirectiveArgs, DirectiveSpec, FilterAction, FilterExt,
    FilterObject, FilterResult, FilterVTable, FreeAction, GetResult, HostApi, HostExt, HostExtRef,
    InitFilterArgs, InitPeerResult, InitUpstreamArgs, LogLevel, MetricCell, MetricKind,
    Module as RootModuleV1, ModuleInfo, ModuleRef, PeerConfig, PeerLive, PeerStats, PeerStorage,
    PeersView, Rejection, RequestView, ScopeArgs, ScopeKind, ServerParams, TryOutcome, TryState,
    UpstreamExt, UpstreamObject, ABI_MINOR, ABI_VERSION, ABI_VERSION_SYMBOL,
};
pub use sdk::{
    Balancer, Counter, Directive, Gauge, Module, Peers, Request, Template, UpstreamConfig,
};

/// Everything a module author needs, in one import.
///
/// ```
/// use waypost_module_api::prelude::*;
/// let _: ServerParams = ServerParams::ALL;
/// ```
pub mod prelude {
    pub use crate::abi::{
        ConfigError, Contexts, DirectiveSpec, FreeAction, LogLevel, PeerConfig, Rejection,
        ServerParams, TryOutcome, TryState,
    };
    pub use crate::sdk::{
        Balancer, Counter, Directive, Gauge, Module, Peers, Request, Template, UpstreamConfig,
    };
}
