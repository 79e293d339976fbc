//! Services the core offers modules beyond logging (ABI 1.1): a monotonic
//! clock, a fast per-thread random source and module metrics. One
//! process-wide table of function pointers, built once.

use crate::clock::Mono;
use std::cell::Cell;
use std::sync::LazyLock;

use abi_stable::prefix_type::PrefixTypeTrait;
use abi_stable::std_types::{RResult, RSlice, RStr, RString, Tuple2};
use waypost_module_api::sdk::wyrand;
use waypost_module_api::{HostExt, HostExtRef, MetricCell, MetricKind};

use crate::metrics;

/// The table every upstream's `init_upstream_ext` receives.
pub static HOST_EXT: LazyLock<HostExtRef> = LazyLock::new(|| {
    HostExt {
        monotonic_ns,
        random,
        register_metric,
    }
    .leak_into_prefix()
});

static START: LazyLock<Mono> = LazyLock::new(Mono::read);

/// Inside a hook, the time the hook was called (see
/// `watch::hook_start`); elsewhere (a module's own thread) a reading.
extern "C" fn monotonic_ns() -> u64 {
    crate::modules::watch::hook_start()
        .unwrap_or_else(Mono::read)
        .nanos_since(*START)
}

/// The clock modules read through `sdk::now_ns`, for the core's own use
/// (slow start's recovery time).
pub fn now_ns() -> u64 {
    Mono::read().nanos_since(*START)
}

/// A random number from the same generator, for the core's own use
/// (`random_index`).
pub fn random_u64() -> u64 {
    random()
}

extern "C" fn random() -> u64 {
    thread_local! {
        // Seeded per thread from the clock and the thread's own address, so
        // workers do not draw the same sequence.
        static STATE: Cell<u64> = Cell::new(
            monotonic_ns().rotate_left(29) ^ (&STATE as *const _ as u64),
        );
    }
    STATE.with(|s| {
        let (next, out) = wyrand(s.get());
        s.set(next);
        out
    })
}

/// Which module and upstream a registration is for: the `builder` pointer
/// in `UpstreamExt`, valid during `init_upstream_ext` only.
pub struct MetricScope<'a> {
    pub module: &'a str,
    /// The upstream a balancer serves; none for a filter module.
    pub upstream: Option<&'a str>,
}

extern "C" fn register_metric(
    builder: *mut std::ffi::c_void,
    kind: MetricKind,
    name: RStr<'_>,
    help: RStr<'_>,
    labels: RSlice<'_, Tuple2<RStr<'_>, RStr<'_>>>,
) -> RResult<&'static MetricCell, RString> {
    if builder.is_null() {
        return RResult::RErr(RString::from("register_metric outside init_upstream"));
    }
    // SAFETY: the core passes a MetricScope that outlives the
    // init_upstream_ext call, the only time the module may call this.
    let scope = unsafe { &*(builder as *const MetricScope<'_>) };
    let mut all = Vec::with_capacity(labels.len() + 1);
    if let Some(upstream) = scope.upstream {
        all.push(("upstream".to_owned(), upstream.to_owned()));
    }
    all.extend(
        labels
            .iter()
            .map(|Tuple2(k, v)| (k.as_str().to_owned(), v.as_str().to_owned())),
    );
    match metrics::register_module(scope.module, all, kind, name.as_str(), help.as_str()) {
        Ok(cell) => RResult::ROk(cell),
        Err(e) => RResult::RErr(RString::from(e)),
    }
}
