//! Cost of one balancer `get` through the module ABI against the same
//! round robin called directly as Rust.
//!
//!     cargo build --release --workspace
//!     cargo bench -p waypost --bench abi_get
//!
//! The ABI side is what a request pays: `libwaypost_round_robin.so` loaded
//! by the core's `Loader` (private copy, ABI checks, `dlopen`), its upstream
//! object built by `runtime::build::upstream` as a config load builds it,
//! and `get` called through `Balancer`, that is through the module's
//! vtable and the SDK's shim (panic barrier, `Peers` wrapper, result
//! conversion). The direct side is `waypost_round_robin`'s `RoundRobin`,
//! linked into this binary as an rlib, on the same peers. In between, the
//! same SDK shims linked into this binary behind a core `Balancer` tell the
//! shims' cost from that of calling into a separate shared object.

use std::hint::black_box;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use abi_stable::std_types::{RResult, RSlice, RStr};
use criterion::{criterion_group, criterion_main, Criterion};
use waypost::conf::model::{PeerConf, UpstreamConf};
use waypost::conf::syntax::Loc;
use waypost::modules::host::{MetricScope, HOST_EXT};
use waypost::modules::loader::Loader;
use waypost::runtime::build;
use waypost::upstream::balancer::PeerState;
use waypost::upstream::{Balancer, Upstream};
use waypost_module_api::sdk::Shims;
use waypost_module_api::testing::PeerSet;
use waypost_module_api::{
    Balancer as _, GetResult, InitPeerResult, Module as _, Peers, PeersView, Request, RequestView,
    TryOutcome, TryState, UpstreamConfig, UpstreamExt,
};
use waypost_round_robin::{RoundRobin, RoundRobinModule};

const PEERS: usize = 3;

/// The profile directory this bench was built in (`target/release` for
/// `cargo bench`): the bench binary is `<profile>/deps/abi_get-<hash>`.
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the bench binary's path");
    exe.parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release"))
}

/// The upstream `upstream bench { server ...:8081; ... }` built through the
/// core's loader and `build::upstream`, one worker.
fn abi_upstream() -> Upstream {
    let so = profile_dir().join("libwaypost_round_robin.so");
    if !so.is_file() {
        panic!(
            "{} is missing: run `cargo build --release --workspace` first \
             (this bench loads the round robin module as the proxy does)",
            so.display()
        );
    }
    // The loader copies the library into a private directory and opens the
    // copy; once open it is never closed, so the copy can go at once.
    let private =
        std::env::temp_dir().join(format!("waypost-bench-abi-get-{}", std::process::id()));
    let loader = Loader::new(private.clone());
    let module = loader
        .load(&so)
        .unwrap_or_else(|e| panic!("loading {}: {e}", so.display()));
    let _ = std::fs::remove_dir_all(&private);

    let loc = Loc {
        file: Arc::new(PathBuf::from("bench.conf")),
        line: 1,
    };
    let peers = (0..PEERS)
        .map(|i| {
            let addr: SocketAddr = format!("127.0.0.1:{}", 8081 + i).parse().unwrap();
            PeerConf {
                server: addr.to_string(),
                addr: addr.into(),
                weight: 1,
                max_fails: 1,
                fail_timeout: 10,
                max_conns: 0,
                backup: false,
                down: false,
                slow_start_ms: 0,
            }
        })
        .collect();
    let conf = UpstreamConf {
        name: "bench".to_owned(),
        loc,
        peers,
        keepalive: 0,
        keepalive_timeout: Duration::from_secs(60),
        keepalive_requests: 1000,
        balancer: None,
        balancer_directives: Vec::new(),
        filters: Vec::new(),
        implicit: false,
        health: None,
    };
    build::upstream(&conf, module, 1, &waypost::map::MapNames::default())
        .unwrap_or_else(|e| panic!("init_upstream: {e}"))
}

/// The view `http::proxy` hands every hook (its `peers_view`), nothing
/// tried yet, worker 0.
fn peers_view<'a>(up: &'a Upstream, tried: &'a [u64]) -> PeersView<'a> {
    PeersView {
        config: RSlice::from_slice(&up.configs),
        live: RSlice::from_slice(&up.live),
        tried: RSlice::from_slice(tried),
        primary: up.primary,
        primary_weight: up.primary_weight,
        single: up.single,
        now: 1_000,
        worker: 0,
    }
}

/// The same balancer as the module's, as plain Rust: what
/// `RoundRobinModule::init_upstream` returns for 3 peers of weight 1.
fn direct_round_robin() -> RoundRobin {
    let set = PeerSet::new(&[1; PEERS]);
    set.with_args(&[], |args| {
        RoundRobinModule::init_upstream(&UpstreamConfig::new(args))
    })
    .unwrap_or_else(|e| panic!("init_upstream: {}", e.message))
}

extern "C" fn no_value(_: *const std::ffi::c_void, _: RStr<'_>) -> RStr<'static> {
    RStr::from_str("")
}

extern "C" fn no_template(_: *const std::ffi::c_void, _: u32) -> RStr<'static> {
    RStr::from_str("")
}

fn request_view() -> RequestView<'static> {
    RequestView {
        method: RStr::from_str("GET"),
        uri: RStr::from_str("/"),
        client_addr: RStr::from_str("127.0.0.1"),
        client_ip: RSlice::from_slice(&[127, 0, 0, 1]),
        ctx: std::ptr::null(),
        header: no_value,
        variable: no_value,
        eval: no_template,
    }
}

fn outcome(peer: u32) -> TryOutcome {
    TryOutcome {
        peer,
        state: TryState::Ok,
        status: 200,
        elapsed_us: 100,
    }
}

/// The peer index a `GetResult` names, as `http::proxy` reads it.
fn index(result: GetResult) -> usize {
    match result {
        GetResult::Peer(i) => i as usize,
        _ => usize::MAX,
    }
}

/// The round robin's SDK shims linked into this binary (not the .so)
/// behind a core `Balancer`: the same vtable path without `dlopen`.
fn in_process_balancer(up: &Upstream) -> Balancer {
    let root = Shims::<RoundRobinModule>::root_module();
    let init = root
        .init_upstream_ext()
        .expect("an ABI 1.1 init_upstream_ext");
    let scope = MetricScope {
        module: "round_robin",
        upstream: Some("in-process"),
    };
    let ext = UpstreamExt {
        host: *HOST_EXT,
        // Outlives the balancer: `up` is dropped after it.
        stats: RSlice::from_slice(&up.stats),
        builder: &scope as *const MetricScope<'_> as *mut std::ffi::c_void,
    };
    let set = PeerSet::new(&[1; PEERS]);
    match set.with_args(&[], |args| init(args, &ext)) {
        RResult::ROk(object) => {
            Balancer::new(object, Arc::clone(&up.balancer.module), "in-process")
        }
        RResult::RErr(e) => panic!("init_upstream: {}", e.message),
    }
}

fn get(c: &mut Criterion) {
    let up = abi_upstream();
    let linked = in_process_balancer(&up);
    let rr = direct_round_robin();
    let tried = [0u64; 1];
    let view = peers_view(&up, &tried);
    let request = request_view();
    let peers = Peers::with_stats(&view, &up.stats);

    // All three must pick the same sequence, or they do not do the same work.
    let mut state = PeerState::new(&up.balancer);
    let mut linked_state = PeerState::new(&linked);
    assert!(matches!(state.init(&request, &view), InitPeerResult::Ready));
    assert!(matches!(
        linked_state.init(&request, &view),
        InitPeerResult::Ready
    ));
    for _ in 0..2 * PEERS {
        let abi = index(state.get(&view).0);
        assert!(abi < PEERS, "the module found no peer");
        assert_eq!(index(linked_state.get(&view).0), abi);
        assert_eq!(rr.get(&mut (), &peers), Some(abi));
    }

    let mut g = c.benchmark_group("get, 3 peers");
    g.bench_function("abi: Balancer::get, module .so", |b| {
        b.iter(|| black_box(index(state.get(black_box(&view)).0)))
    });
    g.bench_function("abi: same, PeersView built per get as proxy.rs", |b| {
        b.iter(|| {
            let view = peers_view(black_box(&up), black_box(&tried));
            black_box(index(state.get(&view).0))
        })
    });
    g.bench_function("abi: Balancer::get, SDK shims linked in (no .so)", |b| {
        b.iter(|| black_box(index(linked_state.get(black_box(&view)).0)))
    });
    g.bench_function("direct: RoundRobin::get", |b| {
        b.iter(|| {
            let peer = rr.get(black_box(&mut ()), black_box(&peers));
            black_box(peer.unwrap_or(usize::MAX))
        })
    });
    g.finish();

    let mut g = c.benchmark_group("init_peer + get + free, 3 peers");
    g.bench_function("abi: PeerState, module .so", |b| {
        b.iter(|| {
            let mut state = PeerState::new(&up.balancer);
            let view = black_box(&view);
            black_box(state.init(black_box(&request), view));
            let (chosen, started) = state.get(view);
            let peer = index(chosen);
            black_box(state.free(view, outcome(peer as u32), started))
            // dropped here: drop_peer through the vtable
        })
    });
    g.bench_function("direct: RoundRobin", |b| {
        b.iter(|| {
            let peers = black_box(&peers);
            let request = Request::new(black_box(&request));
            // Round robin's per-request state is `()`.
            black_box(rr.init_peer(&request, peers).is_ok());
            let peer = rr.get(black_box(&mut ()), peers).unwrap_or(usize::MAX);
            black_box(rr.free(black_box(&mut ()), peers, &outcome(peer as u32)))
        })
    });
    g.finish();
}

fn config() -> Criterion {
    // Short enough for a run under a minute on a shared 2-core machine.
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
}

criterion_group! {
    name = benches;
    config = config();
    targets = get
}
criterion_main!(benches);
