//! Cost of a balancer decision: key evaluation result in, peer out, per
//! request; and the ketama ring build. Run with `cargo bench -p waypost-hash`.
//! A counting allocator checks that a pick allocates nothing.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use waypost_hash::{HashBalancer, Method, Ring};
use waypost_module_api::testing::PeerSet;
use waypost_module_api::wrr::SmoothWeights;
use waypost_module_api::{Balancer, Template};

struct Counting;
static ALLOCS: AtomicU64 = AtomicU64::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const N: usize = 1_000_000;

fn keys() -> Vec<String> {
    (0..4096)
        .map(|i| format!("/item/{i}?user={}", i * 7919))
        .collect()
}

fn report(name: &str, peers: usize, f: impl FnMut(usize) -> usize) {
    let mut f = f;
    for i in 0..10_000 {
        black_box(f(i));
    }
    let allocs = ALLOCS.load(Ordering::Relaxed);
    let t = Instant::now();
    let mut sink = 0;
    for i in 0..N {
        sink ^= f(i);
    }
    let ns = t.elapsed().as_nanos() as f64 / N as f64;
    let allocs = ALLOCS.load(Ordering::Relaxed) - allocs;
    black_box(sink);
    println!(
        "{name:<28} {peers:>5} peers  {ns:>7.1} ns/request  {allocs} allocations in {N} requests"
    );
}

fn weights(n: usize) -> Vec<u32> {
    (0..n).map(|i| 1 + (i as u32 * 7) % 10).collect()
}

fn main() {
    let keys = keys();
    for n in [3, 1000] {
        let set = PeerSet::new(&weights(n));
        let view = set.view();

        let rr = SmoothWeights::new(set.configs(), 1);
        report("round robin", n, |_| {
            rr.pick_with_backup(&view).unwrap_or(0)
        });

        let hash = HashBalancer::new(Method::Hash { key: Template(0) }, set.configs(), 1);
        report("hash", n, |i| {
            let mut s = hash.start(&keys[i % keys.len()], &[]);
            hash.get(&mut s, &view).unwrap_or(0)
        });

        let ring = Ring::build(set.configs());
        let chash = HashBalancer::new(
            Method::Consistent {
                key: Template(0),
                ring,
            },
            set.configs(),
            1,
        );
        report("hash consistent", n, |i| {
            let mut s = chash.start(&keys[i % keys.len()], &[]);
            chash.get(&mut s, &view).unwrap_or(0)
        });

        let ip = HashBalancer::new(Method::IpHash, set.configs(), 1);
        report("ip_hash", n, |i| {
            let addr = [10, (i >> 16) as u8, (i >> 8) as u8, i as u8];
            let mut s = ip.start("", &addr);
            ip.get(&mut s, &view).unwrap_or(0)
        });
    }

    let set = PeerSet::new(&weights(1000));
    let mut best = f64::MAX;
    let mut points = 0;
    for _ in 0..5 {
        let t = Instant::now();
        let ring = black_box(Ring::build(set.configs()));
        best = best.min(t.elapsed().as_secs_f64() * 1000.0);
        points = ring.len();
    }
    println!(
        "ring build: 1000 servers of weight 1 to 10 ({points} points) in {best:.1} ms (best of 5)"
    );
}
