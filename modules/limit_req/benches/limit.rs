//! Cost of a limit_req check and memory per key. Run with
//! `cargo bench -p waypost-limit-req`.
//!
//! - ns per check on 100,000 distinct keys (every key already known, the
//!   request path of a warmed-up zone) and on one hot key, through the
//!   handler with the real clocks, as `check` runs it minus the key
//!   evaluation; the same on two threads;
//! - allocations per check (must be 0 when the key exists);
//! - bytes of heap per key, counted by the allocator.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use waypost_limit_req::{Limit, Mode, Rate, ScopeLimits, Settings, Zone, ZoneSpec};
use waypost_module_api::filter::Action;
use waypost_module_api::{LogLevel, Template};

struct Counting;
static ALLOCS: AtomicU64 = AtomicU64::new(0);
static LIVE: AtomicI64 = AtomicI64::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        LIVE.fetch_add(layout.size() as i64, Ordering::Relaxed);
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as i64, Ordering::Relaxed);
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        LIVE.fetch_add(new_size as i64 - layout.size() as i64, Ordering::Relaxed);
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const KEYS: usize = 100_000;
const N: usize = 2_000_000;
/// `burst=` of the benched limits, with `nodelay`.
const BURST: u64 = 1_000_000;

fn zone(mode: Mode, size: u64) -> Arc<Zone> {
    Arc::new(Zone::new(
        ZoneSpec {
            name: "bench".into(),
            key: "$arg_app_id".into(),
            size,
            // High enough that every check passes: the common path.
            rate: Rate::per_second(1_000_000_000_000),
            mode,
            cluster: None,
        },
        Template(0),
    ))
}

fn keys() -> Vec<String> {
    (0..KEYS).map(|i| format!("app-{:08}", i * 7919)).collect()
}

fn no_log(_: LogLevel, _: &str) {}

/// One check through the handler with the real clocks; 1 if it passed.
fn check(s: &ScopeLimits, key: &str) -> usize {
    let d = s.decide(s.now(), |_| key.as_bytes(), &mut no_log);
    let c = s.verdict(&d, &mut no_log);
    usize::from(matches!(c.action, Action::Pass))
}

fn report(name: &str, f: impl Fn(usize) -> usize) {
    for i in 0..100_000 {
        black_box(f(i));
    }
    let allocs = ALLOCS.load(Ordering::Relaxed);
    let t = Instant::now();
    let mut passed = 0;
    for i in 0..N {
        passed += f(i);
    }
    let ns = t.elapsed().as_nanos() as f64 / N as f64;
    let allocs = ALLOCS.load(Ordering::Relaxed) - allocs;
    assert_eq!(passed, N, "every check passes");
    println!("{name:<40} {ns:>7.1} ns/check  {allocs} allocations in {N} checks");
}

fn report_threads(name: &str, threads: usize, f: impl Fn(usize) -> usize + Sync) {
    let t = Instant::now();
    std::thread::scope(|s| {
        for th in 0..threads {
            let f = &f;
            s.spawn(move || {
                for i in 0..N {
                    black_box(f(i * threads + th));
                }
            });
        }
    });
    let total = (N * threads) as f64;
    let ns = t.elapsed().as_nanos() as f64 / total;
    println!(
        "{name:<40} {ns:>7.1} ns/check  ({threads} threads, {:.1} M checks/s)",
        1e3 / ns
    );
}

fn bytes_per_key(mode: Mode, key_len: usize) {
    let keys: Vec<Vec<u8>> = (0..KEYS)
        .map(|i| {
            if key_len <= 4 {
                // Binary keys, as $binary_remote_addr.
                (i as u32).to_le_bytes()[..key_len].to_vec()
            } else {
                format!("{i:0key_len$}").into_bytes()
            }
        })
        .collect();
    let before = LIVE.load(Ordering::Relaxed);
    let z = zone(mode, 16 << 20);
    for k in &keys {
        black_box(z.account(k, 0, 0));
    }
    let bytes = LIVE.load(Ordering::Relaxed) - before;
    assert_eq!(z.len(), KEYS);
    println!(
        "{:<40} {:>7.1} bytes/key  ({} keys, zone capacity {} for 16m)",
        format!("memory, {key_len}-byte keys, {mode:?}"),
        bytes as f64 / KEYS as f64,
        KEYS,
        z.capacity()
    );
}

/// `n` as 16 hex digits, without allocating.
fn hex(n: u64, buf: &mut [u8; 16]) -> &str {
    for (i, b) in buf.iter_mut().enumerate() {
        *b = b"0123456789abcdef"[(n >> (60 - 4 * i)) as usize & 15];
    }
    std::str::from_utf8(buf).unwrap_or("")
}

fn main() {
    let keys = keys();
    for mode in [Mode::Leaky, Mode::Window] {
        let z = zone(mode, 16 << 20);
        let s = ScopeLimits::new(
            vec![Limit::new(z.clone(), BURST, u64::MAX)],
            Settings::default(),
        );
        for k in &keys {
            check(&s, k);
        }
        let label = format!("{mode:?}");
        report(&format!("{label}: 100,000 distinct keys"), |i| {
            check(&s, &keys[(i * 7) % KEYS])
        });
        report(&format!("{label}: one hot key"), |_| check(&s, "hot"));
        report(&format!("{label}: distinct keys, fixed clock"), |i| {
            let key = keys[(i * 7) % KEYS].as_bytes();
            let d = s.decide(waypost_limit_req::Now::at(1000), |_| key, &mut no_log);
            usize::from(matches!(s.verdict(&d, &mut no_log).action, Action::Pass))
        });
        report_threads(&format!("{label}: 100,000 distinct keys"), 2, |i| {
            check(&s, &keys[(i * 7) % KEYS])
        });
        report_threads(&format!("{label}: one hot key"), 2, |_| check(&s, "hot"));
        // The zone alone, with a fixed clock.
        report(&format!("{label}: Zone::account, distinct keys"), |i| {
            usize::from(matches!(
                z.account(keys[(i * 7) % KEYS].as_bytes(), 1000, u64::MAX / 2),
                waypost_limit_req::Outcome::Admitted { .. }
            ))
        });
    }
    report("the monotonic clock alone", |_| {
        usize::from(black_box(waypost_limit_req::zone::mono_ms()) != u64::MAX)
    });
    // Two limits: held, then committed.
    let a = zone(Mode::Leaky, 16 << 20);
    let b = zone(Mode::Leaky, 16 << 20);
    let s = ScopeLimits::new(
        vec![
            Limit::new(a, BURST, u64::MAX),
            Limit::new(b, BURST, u64::MAX),
        ],
        Settings::default(),
    );
    for k in &keys {
        check(&s, k);
    }
    report("two limits: 100,000 distinct keys", |i| {
        check(&s, &keys[(i * 7) % KEYS])
    });
    // New keys all the time: a full zone evicting its LRU nodes.
    let z = zone(Mode::Leaky, 1 << 20);
    let s = ScopeLimits::new(
        vec![Limit::new(z.clone(), BURST, u64::MAX)],
        Settings::default(),
    );
    let t = Instant::now();
    let mut buf = [0u8; 16];
    for i in 0..N as u64 {
        black_box(check(&s, hex(i, &mut buf)));
    }
    println!(
        "{:<40} {:>7.1} ns/check  ({} keys held of {})",
        "new key each check, full zone (evicting)",
        t.elapsed().as_nanos() as f64 / N as f64,
        z.len(),
        z.capacity()
    );
    for (mode, len) in [
        (Mode::Leaky, 4),
        (Mode::Leaky, 12),
        (Mode::Leaky, 40),
        (Mode::Window, 12),
    ] {
        bytes_per_key(mode, len);
    }
}
