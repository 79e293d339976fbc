//! Unit tests: the zone algorithms with an explicit clock, nginx's
//! handler over several limits, the answers and log lines, storage
//! bounds, the configuration (nginx's messages) and the hand-over across
//! a reload, and `check` through a request view as the core calls it.

use std::ffi::c_void;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use waypost_module_api::abi::{
    ConfigError, DirectiveArgs, HostApi, InitFilterArgs, RequestView, ScopeArgs, ScopeKind,
};
use waypost_module_api::abi_stable::std_types::{RResult, RSlice, RStr, RString};
use waypost_module_api::filter::{Action, Check, Filter, FilterConfig};
use waypost_module_api::{LogLevel, Request, Template};

use crate::limits::{status, TOO_MANY_REQUESTS, UNAUTHORIZED};
use crate::*;

// ---------------------------------------------------------------- helpers

fn zone_with(name: &str, rate: Rate, size: u64, mode: Mode) -> Arc<Zone> {
    Arc::new(Zone::new(
        ZoneSpec {
            name: name.into(),
            key: "$k".into(),
            size,
            rate,
            mode,
            cluster: None,
        },
        Template(0),
    ))
}

fn leaky(name: &str, rate: Rate) -> Arc<Zone> {
    zone_with(name, rate, 1 << 20, Mode::Leaky)
}

fn window(name: &str, rate: Rate) -> Arc<Zone> {
    zone_with(name, rate, 1 << 20, Mode::Window)
}

fn limit(zone: &Arc<Zone>, burst: u64, delay: u64) -> Limit {
    Limit::new(zone.clone(), burst, delay)
}

fn scope(limits: Vec<Limit>) -> ScopeLimits {
    ScopeLimits::new(limits, Settings::default())
}

/// The answer for one request with `key` in every zone at `t` ms, as
/// "pass PASSED", "delay 93 DELAYED", "reject 429 REJECTED"; and the
/// lines logged.
fn request(s: &ScopeLimits, t: u64, key: &str) -> (String, Vec<String>) {
    let mut logs = Vec::new();
    let mut log = |level: LogLevel, m: &str| logs.push(format!("[{level:?}] {m}"));
    let d = s.decide(Now::at(t), |_| key.as_bytes(), &mut log);
    let c = s.verdict(&d, &mut log);
    (summary(&c), logs)
}

/// As [`request`], at the current time.
pub(crate) fn request_at_now(s: &ScopeLimits, key: &str) -> (String, Vec<String>) {
    let mut logs = Vec::new();
    let mut log = |level: LogLevel, m: &str| logs.push(format!("[{level:?}] {m}"));
    let d = s.decide(s.now(), |_| key.as_bytes(), &mut log);
    let c = s.verdict(&d, &mut log);
    (summary(&c), logs)
}

fn answer(s: &ScopeLimits, t: u64, key: &str) -> String {
    request(s, t, key).0
}

fn summary(c: &Check) -> String {
    match &c.action {
        Action::Pass => format!("pass {}", c.variable),
        Action::Delay(d) => format!("delay {} {}", d.as_millis(), c.variable),
        Action::Reject(r) => format!("reject {} {}", r.status, c.variable),
    }
    .trim_end()
    .to_owned()
}

fn header<'a>(r: &'a waypost_module_api::Rejection, name: &str) -> Option<&'a str> {
    r.headers
        .iter()
        .find(|h| h.0.as_str() == name)
        .map(|h| h.1.as_str())
}

fn admitted(o: &Outcome) -> bool {
    matches!(o, Outcome::Admitted { .. })
}

// ------------------------------------------------- nginx's checked examples

#[test]
fn burst_4_delay_2_six_quick_requests() {
    // §3.4: rate=10r/s burst=4 delay=2: 1-3 at once, 4 waits ≈93 ms
    // (excess 2.930), 5 ≈191 ms, 6 rejected.
    let lr = leaky("lr", Rate::per_second(10));
    let s = scope(vec![limit(&lr, 4, 2)]);
    assert_eq!(answer(&s, 1000, "a"), "pass PASSED");
    assert_eq!(answer(&s, 1003, "a"), "pass PASSED"); // 0.970
    assert_eq!(answer(&s, 1005, "a"), "pass PASSED"); // 1.950
    let (a, logs) = request(&s, 1007, "a"); // 2.930
    assert_eq!(a, "delay 93 DELAYED");
    assert_eq!(
        logs,
        ["[Warn] delaying request, excess: 2.930, by zone \"lr\""]
    );
    assert_eq!(answer(&s, 1009, "a"), "delay 191 DELAYED"); // 3.910
    let (a, logs) = request(&s, 1010, "a");
    assert_eq!(a, "reject 429 REJECTED");
    assert_eq!(
        logs,
        ["[Error] limiting requests, excess: 4.900 by zone \"lr\""]
    );
}

#[test]
fn burst_2_nodelay_admits_three_then_rejects() {
    let z = leaky("lr", Rate::per_second(10));
    let s = scope(vec![limit(&z, 2, u64::MAX)]);
    let got: Vec<String> = (0..5).map(|_| answer(&s, 500, "a")).collect();
    assert_eq!(
        got,
        [
            "pass PASSED",
            "pass PASSED",
            "pass PASSED",
            "reject 429 REJECTED",
            "reject 429 REJECTED"
        ]
    );
}

#[test]
fn burst_0_admits_one_then_rejects() {
    let z = leaky("lr", Rate::per_second(10));
    let s = scope(vec![limit(&z, 0, 0)]);
    let got: Vec<String> = (0..3).map(|_| answer(&s, 500, "a")).collect();
    assert_eq!(
        got,
        ["pass PASSED", "reject 429 REJECTED", "reject 429 REJECTED"]
    );
}

#[test]
fn one_per_minute_is_16_thousandths() {
    // 1r/m is stored as 16: a request drains after 62.5 s, not 60 s.
    let z = leaky("m", Rate::per_minute(1));
    assert_eq!(z.rate(), 16);
    assert!(admitted(&z.account(b"k", 0, 0)));
    match z.account(b"k", 60_000, 0) {
        // 1000 - 16 * 60000 / 1000 = 40
        Outcome::Rejected {
            excess,
            retry_after,
        } => assert_eq!((excess, retry_after), (40, 3)),
        o => panic!("{o:?}"),
    }
    assert!(!admitted(&z.account(b"k", 62_499, 0)));
    assert!(admitted(&z.account(b"k", 62_500, 0)));
}

#[test]
fn rejected_requests_are_not_recorded() {
    let z = leaky("z", Rate::per_second(1));
    assert!(admitted(&z.account(b"k", 10_000, 0)));
    for t in (10_001..11_000).step_by(37) {
        assert!(!admitted(&z.account(b"k", t, 0)), "{t}");
    }
    // Had the rejections counted, the bucket would still be full.
    assert!(admitted(&z.account(b"k", 11_000, 0)));
}

#[test]
fn level_drains_at_the_rate_and_a_new_key_starts_empty() {
    let z = leaky("z", Rate::per_second(2)); // 2000/s: 2 per ms
    assert!(matches!(
        z.account(b"k", 0, 5000),
        Outcome::Admitted { excess: 0 }
    ));
    assert!(matches!(
        z.account(b"k", 0, 5000),
        Outcome::Admitted { excess: 1000 }
    ));
    // 100 ms later: 1000 - 200 + 1000.
    assert!(matches!(
        z.account(b"k", 100, 5000),
        Outcome::Admitted { excess: 1800 }
    ));
    // Long after: `excess - rate * ms / 1000 + 1000` clamped at 0.
    assert!(matches!(
        z.account(b"k", 100_000, 5000),
        Outcome::Admitted { excess: 0 }
    ));
    assert!(matches!(
        z.account(b"other", 100_000, 5000),
        Outcome::Admitted { excess: 0 }
    ));
}

#[test]
fn retry_after_is_the_whole_seconds_until_admitted() {
    let z = leaky("z", Rate::per_second(1));
    let s = scope(vec![limit(&z, 2, u64::MAX)]);
    for _ in 0..3 {
        assert_eq!(answer(&s, 0, "a"), "pass PASSED");
    }
    let mut log = |_: LogLevel, _: &str| {};
    let d = s.decide(Now::at(0), |_| b"a", &mut log);
    // Level 3000 (+1000 for this one) over burst 2000: admitted after 1 s.
    assert_eq!(
        d,
        Decision::Rejected {
            excess: 3000,
            limit: 0,
            retry_after: 1
        }
    );
    let c = s.verdict(&d, &mut log);
    let Action::Reject(r) = &c.action else {
        panic!("rejected")
    };
    assert_eq!(r.status, 429);
    assert_eq!(r.content_type.as_str(), "application/json");
    assert_eq!(r.body.as_str(), TOO_MANY_REQUESTS);
    assert_eq!(header(r, "Retry-After"), Some("1"));
    // 1r/m, burst 0, 1 s after the first: 61.5 s to go, so 62.
    let m = leaky("m", Rate::per_minute(1));
    assert!(admitted(&m.account(b"k", 0, 0)));
    match m.account(b"k", 1000, 0) {
        Outcome::Rejected { retry_after, .. } => assert_eq!(retry_after, 62),
        o => panic!("{o:?}"),
    }
    // Admitted exactly then.
    assert!(!admitted(&m.account(b"k", 62_499, 0)));
    assert!(admitted(&m.account(b"k", 62_500, 0)));
}

#[test]
fn clock_going_back_is_clamped_as_nginx() {
    let z = leaky("z", Rate::per_second(1));
    assert!(admitted(&z.account(b"k", 100_000, 5000)));
    // 10 ms back: ms = 0, no decay, `last` unchanged.
    assert!(matches!(
        z.account(b"k", 99_990, 5000),
        Outcome::Admitted { excess: 1000 }
    ));
    // Over 60 s back: ms = 1.
    assert!(matches!(
        z.account(b"k", 10_000, 5000),
        Outcome::Admitted { excess: 1999 }
    ));
}

// ------------------------------------------------------- several limits

#[test]
fn two_limits_one_rejects_nothing_is_saved() {
    let a = leaky("a", Rate::per_second(1));
    let b = leaky("b", Rate::per_second(1));
    let both = scope(vec![limit(&a, 5, u64::MAX), limit(&b, 0, 0)]);
    assert_eq!(answer(&both, 0, "k"), "pass PASSED");
    for _ in 0..10 {
        let (ans, logs) = request(&both, 0, "k");
        assert_eq!(ans, "reject 429 REJECTED");
        assert_eq!(
            logs,
            ["[Error] limiting requests, excess: 1.000 by zone \"b\""]
        );
    }
    // Zone a saved only the admitted request: 5 more fit its burst.
    let only_a = scope(vec![limit(&a, 5, u64::MAX)]);
    let passed = (0..10)
        .filter(|_| answer(&only_a, 0, "k") == "pass PASSED")
        .count();
    assert_eq!(passed, 5);

    // The first limit rejecting: the second is not even checked.
    let b_first = scope(vec![limit(&b, 0, 0), limit(&a, 100, u64::MAX)]);
    let fresh = leaky("fresh", Rate::per_second(1));
    let s = scope(vec![limit(&b, 0, 0), limit(&fresh, 0, 0)]);
    assert_eq!(answer(&s, 0, "k"), "reject 429 REJECTED");
    assert!(fresh.is_empty());
    drop(b_first);
}

#[test]
fn two_limits_wait_the_longest_delay() {
    let fast = leaky("fast", Rate::per_second(10)); // 100 ms per request
    let slow = leaky("slow", Rate::per_second(2)); // 500 ms per request
    let s = scope(vec![limit(&slow, 10, 0), limit(&fast, 10, 0)]);
    assert_eq!(answer(&s, 0, "k"), "pass PASSED");
    let (a, logs) = request(&s, 0, "k");
    assert_eq!(a, "delay 500 DELAYED");
    assert_eq!(
        logs,
        ["[Warn] delaying request, excess: 1.000, by zone \"slow\""]
    );
    // Both saved: the next request is at level 2 in both.
    assert_eq!(answer(&s, 0, "k"), "delay 1000 DELAYED");
    // The last limit's delay wins when it is the longest.
    let s = scope(vec![limit(&fast, 10, 0), limit(&slow, 10, 0)]);
    let (a, logs) = request(&s, 0, "k2");
    assert_eq!(a, "pass PASSED");
    assert!(logs.is_empty());
    let (a, logs) = request(&s, 0, "k2");
    assert_eq!(a, "delay 500 DELAYED");
    assert_eq!(
        logs,
        ["[Warn] delaying request, excess: 1.000, by zone \"slow\""]
    );
}

#[test]
fn held_limits_are_saved_at_the_same_time_as_the_last() {
    let a = leaky("a", Rate::per_second(1));
    let b = leaky("b", Rate::per_second(1));
    let s = scope(vec![limit(&a, 10, u64::MAX), limit(&b, 10, u64::MAX)]);
    assert_eq!(answer(&s, 5000, "k"), "pass PASSED");
    assert_eq!(answer(&s, 5500, "k"), "pass PASSED");
    // Both saved 0 at 5000, then 0 - 500 + 1000 at 5500.
    for z in [&a, &b] {
        assert!(matches!(
            z.account(b"k", 5500, 10_000),
            Outcome::Admitted { excess: 1500 }
        ));
    }
}

#[test]
fn empty_keys_are_not_limited_unless_missing_key_reject() {
    let a = leaky("a", Rate::per_second(1));
    let s = scope(vec![limit(&a, 0, 0)]);
    for _ in 0..3 {
        assert_eq!(answer(&s, 0, ""), "pass");
    }
    assert!(a.is_empty());
    let settings = Settings {
        missing_key: MissingKey::Reject,
        ..Settings::default()
    };
    let s = ScopeLimits::new(vec![limit(&a, 0, 0)], settings);
    let mut logs = Vec::new();
    let mut log = |_: LogLevel, m: &str| logs.push(m.to_owned());
    let d = s.decide(Now::at(0), |_| b"", &mut log);
    assert_eq!(d, Decision::MissingKey { limit: 0 });
    let c = s.verdict(&d, &mut log);
    let Action::Reject(r) = &c.action else {
        panic!("rejected")
    };
    assert_eq!((r.status, c.variable), (401, status::REJECTED));
    assert_eq!(r.content_type.as_str(), "application/json");
    assert_eq!(r.body.as_str(), UNAUTHORIZED);
    assert_eq!(logs, ["limiting requests, empty key \"$k\" by zone \"a\""]);
}

#[test]
fn a_key_over_65535_bytes_is_skipped_with_an_error() {
    let a = leaky("a", Rate::per_second(1));
    let s = scope(vec![limit(&a, 0, 0)]);
    let key = "x".repeat(65536);
    let (ans, logs) = request(&s, 0, &key);
    assert_eq!(ans, "pass");
    assert_eq!(logs.len(), 1);
    assert!(
        logs[0].starts_with("[Error] the value of the \"$k\" key is more than 65535 bytes: \"xxx")
    );
    assert!(a.is_empty());
    let key = "x".repeat(65535);
    assert_eq!(answer(&s, 0, &key), "pass PASSED");
    assert_eq!(answer(&s, 0, &key), "reject 429 REJECTED");
}

// ----------------------------------------------------- settings, dry run

#[test]
fn dry_run_neither_rejects_nor_delays_but_saves() {
    let z = leaky("lr", Rate::per_second(10));
    let settings = Settings {
        dry_run: true,
        log_level: LogLevel::Notice,
        ..Settings::default()
    };
    let s = ScopeLimits::new(vec![limit(&z, 1, 0)], settings);
    assert_eq!(request(&s, 0, "a"), ("pass PASSED".into(), vec![]));
    assert_eq!(
        request(&s, 0, "a"),
        (
            "pass DELAYED_DRY_RUN".into(),
            vec!["[Info] delaying request, dry run, excess: 1.000, by zone \"lr\"".into()]
        )
    );
    assert_eq!(
        request(&s, 0, "a"),
        (
            "pass REJECTED_DRY_RUN".into(),
            vec!["[Notice] limiting requests, dry run, excess: 2.000 by zone \"lr\"".into()]
        )
    );
}

#[test]
fn status_and_log_levels() {
    let levels = [
        (LogLevel::Error, LogLevel::Warn),
        (LogLevel::Warn, LogLevel::Notice),
        (LogLevel::Notice, LogLevel::Info),
        (LogLevel::Info, LogLevel::Info),
    ];
    for (level, delay) in levels {
        let s = Settings {
            log_level: level,
            ..Settings::default()
        };
        assert_eq!(s.delay_log_level(), delay);
    }
    let z = leaky("lr", Rate::per_second(10));
    let settings = Settings {
        status: 503,
        ..Settings::default()
    };
    let s = ScopeLimits::new(vec![limit(&z, 0, 0)], settings);
    assert_eq!(answer(&s, 0, "a"), "pass PASSED");
    assert_eq!(answer(&s, 0, "a"), "reject 503 REJECTED");
}

// ---------------------------------------------------------------- window

#[test]
fn window_admits_n_per_wall_clock_second() {
    let w = window("w", Rate::per_second(3));
    let s = scope(vec![limit(&w, 0, 0)]);
    let got: Vec<String> = [1000, 1100, 1999, 1999, 2000, 2000, 2000, 2500]
        .iter()
        .map(|&t| answer(&s, t, "a"))
        .collect();
    assert_eq!(
        got,
        [
            "pass PASSED",
            "pass PASSED",
            "pass PASSED",
            "reject 429 REJECTED",
            "pass PASSED",
            "pass PASSED",
            "pass PASSED",
            "reject 429 REJECTED"
        ]
    );
    match w.account(b"a", 2500, 0) {
        Outcome::Rejected {
            excess,
            retry_after,
        } => assert_eq!((excess, retry_after), (1000, 1)),
        o => panic!("{o:?}"),
    }
    // Per minute: the window is the wall-clock minute.
    let m = window("m", Rate::per_minute(2));
    assert!(admitted(&m.account(b"a", 60_000, 0)));
    assert!(admitted(&m.account(b"a", 60_001, 0)));
    match m.account(b"a", 61_000, 0) {
        Outcome::Rejected { retry_after, .. } => assert_eq!(retry_after, 59),
        o => panic!("{o:?}"),
    }
    assert!(admitted(&m.account(b"a", 120_000, 0)));
}

#[test]
fn window_with_another_limit_gives_back_its_place_on_rejection() {
    let w = window("w", Rate::per_second(2));
    let b = leaky("b", Rate::per_second(1));
    let s = scope(vec![limit(&w, 0, 0), limit(&b, 0, 0)]);
    assert_eq!(answer(&s, 1000, "k"), "pass PASSED");
    // b rejects: w's reservation is released.
    assert_eq!(answer(&s, 1001, "k"), "reject 429 REJECTED");
    assert!(admitted(&w.account(b"k", 1002, 0)));
    assert!(!admitted(&w.account(b"k", 1003, 0)));
}

#[test]
fn window_is_exact_under_16_racing_threads() {
    const N: u64 = 1000;
    let w = window("w", Rate::per_second(N));
    let count = AtomicU64::new(0);
    std::thread::scope(|t| {
        for _ in 0..16 {
            t.spawn(|| {
                for i in 0..200 {
                    if admitted(&w.account(b"hot", 5_000 + i % 1000, 0)) {
                        count.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
    });
    assert_eq!(count.load(Ordering::Relaxed), N);
}

#[test]
fn window_is_exact_with_two_limits_under_racing_threads() {
    const N: u64 = 500;
    let w = window("w", Rate::per_second(N));
    let l = leaky("l", Rate::per_second(1));
    let s = scope(vec![limit(&w, 0, 0), limit(&l, 100_000, u64::MAX)]);
    let count = AtomicU64::new(0);
    std::thread::scope(|t| {
        for _ in 0..16 {
            t.spawn(|| {
                for _ in 0..100 {
                    if answer(&s, 7_000, "hot") == "pass PASSED" {
                        count.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
    });
    assert_eq!(count.load(Ordering::Relaxed), N);
}

#[test]
fn leaky_bucket_is_exact_under_16_racing_threads() {
    let z = leaky("z", Rate::per_second(10));
    let count = AtomicU64::new(0);
    std::thread::scope(|t| {
        for _ in 0..16 {
            t.spawn(|| {
                for _ in 0..100 {
                    if admitted(&z.account(b"hot", 1_000, 99_000)) {
                        count.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
    });
    // burst=99: 100 requests arriving together.
    assert_eq!(count.load(Ordering::Relaxed), 100);
}

// --------------------------------------------------------------- storage

#[test]
fn a_million_distinct_keys_stay_within_capacity() {
    let z = zone_with("z", Rate::per_second(1), 128 << 10, Mode::Leaky);
    assert_eq!(z.capacity(), 1024);
    let mut key = [0u8; 8];
    for i in 0..1_000_000u64 {
        key.copy_from_slice(&i.to_le_bytes());
        // All fresh: a full shard forcibly evicts its LRU node.
        assert!(admitted(&z.account(&key, 1000 + i / 1000, 0)), "{i}");
        if i % 65_536 == 0 {
            assert!(z.len() <= 1024);
        }
    }
    assert!(z.len() <= 1024);
    assert!(z.len() > 900, "{}", z.len());
    // The most recent keys are still limited.
    assert!(!admitted(&z.account(&999_999u64.to_le_bytes(), 2000, 0)));
}

#[test]
fn stale_nodes_are_removed_before_a_new_one() {
    let z = zone_with("z", Rate::per_second(1), MIN_ZONE_SIZE, Mode::Leaky);
    for i in 0..100u32 {
        assert!(admitted(&z.account(&i.to_le_bytes(), 0, 0)));
    }
    assert_eq!(z.len(), 100);
    // 59.999 s later nothing is stale.
    assert!(admitted(&z.account(b"x", 59_999, 0)));
    assert_eq!(z.len(), 101);
    // At 60 s, each new key first removes up to two stale nodes of its
    // shard's LRU end.
    for i in 0..10u32 {
        assert!(admitted(&z.account(&(1000 + i).to_le_bytes(), 60_001, 0)));
    }
    assert!(z.len() < 101, "{}", z.len());
    assert!(z.len() >= 101 + 10 - 20, "{}", z.len());
    // A node still holding excess is not stale.
    let y = zone_with("y", Rate::per_minute(1), MIN_ZONE_SIZE, Mode::Leaky);
    assert!(admitted(&y.account(b"a", 0, 5000)));
    assert!(admitted(&y.account(b"a", 0, 5000))); // level 1000
    for i in 0..50u32 {
        y.account(&i.to_le_bytes(), 61_000, 0);
    }
    // 1000 - 16 * 61 = 24 left, not stale: `a` kept its level.
    assert!(matches!(
        y.account(b"a", 61_000, 5000),
        Outcome::Admitted { excess: 1024 }
    ));
}

#[test]
fn a_full_zone_whose_lru_node_is_in_use_rejects_with_an_alert() {
    let z = zone_with("full", Rate::per_second(1), MIN_ZONE_SIZE, Mode::Leaky);
    // A request holds `held` (as a limit other than the last does).
    let Outcome::Held { pin, .. } = z.lookup(b"held", 0, 0, false) else {
        panic!("held")
    };
    // New keys push it to the LRU end of its shard; when a new key of
    // that shard finds the shard full, the held node cannot go.
    let mut i = 0u32;
    let failed = loop {
        i += 1;
        assert!(i < 100_000, "never full");
        match z.account(&i.to_le_bytes(), 0, 0) {
            Outcome::Admitted { .. } => {}
            Outcome::NoMemory => break i,
            o => panic!("{o:?}"),
        }
    };
    assert!(z.len() <= z.capacity());
    // Through the handler: an alert, and the configured status.
    let s = scope(vec![limit(&z, 0, 0)]);
    let key = failed.to_le_bytes();
    let mut logs = Vec::new();
    let mut log = |level: LogLevel, m: &str| logs.push(format!("[{level:?}] {m}"));
    let d = s.decide(Now::at(0), |_| &key, &mut log);
    assert_eq!(d, Decision::NoMemory { limit: 0 });
    let c = s.verdict(&d, &mut log);
    assert_eq!(summary(&c), "reject 429 REJECTED");
    assert_eq!(
        logs,
        ["[Crit] could not allocate node in limit_req zone \"full\""]
    );
    // Once the request is done with it, the node can be evicted.
    assert_eq!(z.commit(pin, 0), 0);
    assert!(admitted(&z.account(&key, 0, 0)));
}

#[test]
fn a_rejected_request_releases_its_held_nodes() {
    let a = zone_with("a", Rate::per_second(1), MIN_ZONE_SIZE, Mode::Leaky);
    let b = leaky("b", Rate::per_second(1));
    let s = scope(vec![limit(&a, 0, 0), limit(&b, 0, 0)]);
    assert_eq!(answer(&s, 0, "k"), "pass PASSED");
    // `k` in a is not saved (b rejects) and not left in use: forced
    // eviction can remove it.
    assert_eq!(answer(&s, 0, "k"), "reject 429 REJECTED");
    for i in 0..10_000u32 {
        assert!(admitted(&a.account(&i.to_le_bytes(), 0, 0)));
    }
    assert!(admitted(&a.account(b"k", 0, 0)), "k was evicted");
}

// ------------------------------------------------------- configuration

/// Directives as written, `name arg arg ...`; http ones on lines 1, 2,
/// ..., scope `s`'s on lines `100 * (s + 1)`, ...
pub(crate) struct Conf {
    pub(crate) http: Vec<&'static str>,
    pub(crate) scopes: Vec<Vec<&'static str>>,
}

fn directive(text: &'static str, line: u32) -> DirectiveArgs<'static> {
    let mut words = text.split_whitespace();
    let name = words.next().expect("a name");
    let args: Vec<RStr<'static>> = words.map(RStr::from_str).collect();
    DirectiveArgs {
        name: RStr::from_str(name),
        args: RSlice::from_slice(Box::leak(args.into_boxed_slice())),
        file: RStr::from_str("/t/waypost.conf"),
        line,
    }
}

extern "C" fn compile(builder: *mut c_void, text: RStr<'_>) -> RResult<u32, RString> {
    // SAFETY: the tests pass a Vec<String> as the builder.
    let templates = unsafe { &mut *(builder as *mut Vec<String>) };
    if let Some(at) = text.as_str().find("$nosuch") {
        let _ = at;
        return RResult::RErr(RString::from("unknown \"nosuch\" variable"));
    }
    templates.push(text.as_str().to_owned());
    RResult::ROk((templates.len() - 1) as u32)
}

extern "C" fn no_log(_: LogLevel, _: RStr<'_>, _: RStr<'_>) {}

/// Builds the filter; also returns the template texts by id.
pub(crate) fn build(
    conf: &Conf,
    previous: Option<&LimitReq>,
) -> (Result<LimitReq, ConfigError>, Vec<String>) {
    let http: Vec<DirectiveArgs<'static>> = conf
        .http
        .iter()
        .enumerate()
        .map(|(i, t)| directive(t, i as u32 + 1))
        .collect();
    let scope_dirs: Vec<Vec<DirectiveArgs<'static>>> = conf
        .scopes
        .iter()
        .enumerate()
        .map(|(s, list)| {
            list.iter()
                .enumerate()
                .map(|(i, t)| directive(t, 100 * (s as u32 + 1) + i as u32))
                .collect()
        })
        .collect();
    let scopes: Vec<ScopeArgs<'_>> = scope_dirs
        .iter()
        .map(|d| ScopeArgs {
            kind: ScopeKind::Location,
            name: RStr::from_str("/"),
            directives: RSlice::from_slice(d),
        })
        .collect();
    let mut templates: Vec<String> = Vec::new();
    let args = InitFilterArgs {
        http: RSlice::from_slice(&http),
        scopes: RSlice::from_slice(&scopes),
        previous: previous.map_or(std::ptr::null(), |p| p as *const LimitReq as *const c_void),
        workers: 2,
        host: HostApi { log: no_log },
        builder: &mut templates as *mut Vec<String> as *mut c_void,
        compile,
    };
    let result = LimitReq::from_config(&FilterConfig::new(&args), previous);
    (result, templates)
}

pub(crate) fn error(http: &[&'static str], scopes: &[&[&'static str]]) -> String {
    let conf = Conf {
        http: http.to_vec(),
        scopes: scopes.iter().map(|s| s.to_vec()).collect(),
    };
    match build(&conf, None).0 {
        Ok(_) => "ok".into(),
        Err(e) if e.line == 0 => e.message.into_string(),
        Err(e) => format!("{} in {}:{}", e.message, e.file, e.line),
    }
}

const ZONE: &str = "limit_req_zone $binary_remote_addr zone=one:10m rate=2r/s";

#[test]
fn config_errors_are_nginx_messages() {
    let at = |m: &str, line: u32| format!("{m} in /t/waypost.conf:{line}");
    let cases: &[(&[&'static str], &str)] = &[
        (&["limit_req_zone $k zone=one:1k rate=1r/s"], &at("zone \"zone=one:1k\" is too small", 1)),
        (&["limit_req_zone $k zone=one:32767 rate=1r/s"], &at("zone \"zone=one:32767\" is too small", 1)),
        (&["limit_req_zone $k zone=one:32k rate=1r/s"], "ok"),
        (&["limit_req_zone $k zone=one rate=1r/s"], &at("invalid zone size \"zone=one\"", 1)),
        (&["limit_req_zone $k zone=one:1x rate=1r/s"], &at("invalid zone size \"zone=one:1x\"", 1)),
        (&["limit_req_zone $k zone=one:1g rate=1r/s"], &at("invalid zone size \"zone=one:1g\"", 1)),
        (&["limit_req_zone $k zone=one: rate=1r/s"], &at("invalid zone size \"zone=one:\"", 1)),
        (&["limit_req_zone $k zone=one:10m rate=1.5r/s"], &at("invalid rate \"rate=1.5r/s\"", 1)),
        (&["limit_req_zone $k zone=one:10m rate=0r/s"], &at("invalid rate \"rate=0r/s\"", 1)),
        (&["limit_req_zone $k zone=one:10m rate=5r/h"], &at("invalid rate \"rate=5r/h\"", 1)),
        (&["limit_req_zone $k zone=one:10m rate=r/s"], &at("invalid rate \"rate=r/s\"", 1)),
        (&["limit_req_zone $k zone=one:10m rate=5"], "ok"),
        (&["limit_req_zone $k zone=one:10m foo=1"], &at("invalid parameter \"foo=1\"", 1)),
        (&["limit_req_zone $k rate=1r/s rate=2r/s"], &at("\"limit_req_zone\" must have \"zone\" parameter", 1)),
        (&["limit_req_zone $k zone=:10m rate=2r/s"], &at("\"limit_req_zone\" must have \"zone\" parameter", 1)),
        (&["limit_req_zone $nosuch zone=one:10m rate=2r/s"], "unknown \"nosuch\" variable"),
        (&["limit_req_zone $k zone=one:10m rate=2r/s mode=x"], &at("invalid mode \"mode=x\"", 1)),
        (&["limit_req_zone $k zone=one:10m rate=2r/s mode=window"], "ok"),
        (&[ZONE, "limit_req_zone $uri zone=one:10m rate=2r/s"], &at("limit_req_zone \"one\" is already bound to key \"$binary_remote_addr\"", 2)),
        (&[ZONE, "limit_req_zone $uri zone=one:20m rate=2r/s"], &at("the size 20971520 of shared memory zone \"one\" conflicts with already declared size 10485760", 2)),
        (&[ZONE, "limit_req zone=one burst=0"], &at("invalid burst value \"burst=0\"", 2)),
        (&[ZONE, "limit_req zone=one burst=x"], &at("invalid burst value \"burst=x\"", 2)),
        (&[ZONE, "limit_req zone=one burst=+5"], &at("invalid burst value \"burst=+5\"", 2)),
        (&[ZONE, "limit_req zone=one burst=99999999999999999999"], &at("invalid burst value \"burst=99999999999999999999\"", 2)),
        (&[ZONE, "limit_req zone=one delay=0"], &at("invalid delay value \"delay=0\"", 2)),
        (&[ZONE, "limit_req zone=one delay=-1"], &at("invalid delay value \"delay=-1\"", 2)),
        (&[ZONE, "limit_req zone=one foo"], &at("invalid parameter \"foo\"", 2)),
        (&[ZONE, "limit_req burst=5"], &at("\"limit_req\" must have \"zone\" parameter", 2)),
        (&[ZONE, "limit_req zone=one", "limit_req zone=one burst=2"], &at("\"limit_req\" directive is duplicate", 3)),
        (&[ZONE, "limit_req zone=two"], "zero size shared memory zone \"two\""),
        (&[ZONE, "limit_req zone=two", "limit_req zone=three"], "zero size shared memory zone \"two\""),
        (&[ZONE, "limit_req zone="], "zero size shared memory zone \"\""),
        (&["limit_req zone=one", ZONE], "ok"),
        (&[ZONE, "limit_req zone=one nodelay delay=3"], "ok"),
        (&[ZONE, "limit_req_status 600"], &at("value must be between 400 and 599", 2)),
        (&[ZONE, "limit_req_status 399"], &at("value must be between 400 and 599", 2)),
        (&[ZONE, "limit_req_status x"], &at("\"limit_req_status\" directive invalid number", 2)),
        (&[ZONE, "limit_req_status 429", "limit_req_status 430"], &at("\"limit_req_status\" directive is duplicate", 3)),
        (&[ZONE, "limit_req_log_level debug"], &at("invalid value \"debug\"", 2)),
        (&[ZONE, "limit_req_log_level WARN"], "ok"),
        (&[ZONE, "limit_req_log_level warn", "limit_req_log_level warn"], &at("\"limit_req_log_level\" directive is duplicate", 3)),
        (&[ZONE, "limit_req_dry_run yes"], &at("invalid value \"yes\" in \"limit_req_dry_run\" directive, it must be \"on\" or \"off\"", 2)),
        (&[ZONE, "limit_req_dry_run on", "limit_req_dry_run off"], &at("\"limit_req_dry_run\" directive is duplicate", 3)),
        (&[ZONE, "limit_req_missing_key maybe"], &at("invalid value \"maybe\"", 2)),
        (&[ZONE, "limit_req_missing_key reject", "limit_req_missing_key pass"], &at("\"limit_req_missing_key\" directive is duplicate", 3)),
    ];
    for (http, want) in cases {
        assert_eq!(error(http, &[]), *want, "{http:?}");
    }
    // In a scope, at the scope's line; a syntax error anywhere comes
    // before an undefined zone.
    assert_eq!(
        error(&[ZONE], &[&["limit_req zone=one", "limit_req zone=one"]]),
        at("\"limit_req\" directive is duplicate", 101)
    );
    assert_eq!(
        error(
            &[ZONE, "limit_req zone=nope"],
            &[&["limit_req zone=one burst=0"]]
        ),
        at("invalid burst value \"burst=0\"", 100)
    );
}

#[test]
fn scopes_get_their_limits_and_settings() {
    let conf = Conf {
        http: vec![
            ZONE,
            "limit_req_zone $arg_id zone=api:1m rate=30r/m mode=window",
            "limit_req zone=one burst=5",
            "limit_req_status 503",
        ],
        scopes: vec![
            // Inherits the http level.
            vec!["limit_req zone=one burst=5", "limit_req_status 503"],
            // Its own list and settings.
            vec![
                "limit_req zone=api",
                "limit_req zone=one burst=2 delay=1",
                "limit_req_status 503",
                "limit_req_log_level warn",
                "limit_req_dry_run on",
                "limit_req_missing_key reject",
            ],
            // None.
            vec!["limit_req_status 500"],
            vec![],
        ],
    };
    let (filter, templates) = build(&conf, None);
    let filter = filter.expect("valid");
    assert_eq!(templates, ["$binary_remote_addr", "$arg_id"]);
    let one = filter.zone("one").expect("zone one");
    assert_eq!(one.capacity(), 81_920);
    assert_eq!(one.rate(), 2000);
    let api = filter.zone("api").expect("zone api");
    assert_eq!(api.spec().mode, Mode::Window);
    assert_eq!(api.spec().rate, Rate::per_minute(30));
    assert_eq!(api.template(), Template(1));

    let s0 = filter.scope(0).expect("scope 0 limited");
    assert_eq!(s0.limits.len(), 1);
    assert_eq!((s0.limits[0].burst, s0.limits[0].delay), (5000, 0));
    assert_eq!(s0.settings.status, 503);
    let s1 = filter.scope(1).expect("scope 1 limited");
    let zones: Vec<&str> = s1.limits.iter().map(|l| l.zone.name()).collect();
    assert_eq!(zones, ["api", "one"]);
    assert_eq!((s1.limits[1].burst, s1.limits[1].delay), (2000, 1000));
    assert!(Arc::ptr_eq(&s1.limits[1].zone, one));
    assert_eq!(
        s1.settings,
        Settings {
            status: 503,
            log_level: LogLevel::Warn,
            dry_run: true,
            missing_key: MissingKey::Reject,
        }
    );
    assert!(filter.scope(2).is_none());
    assert!(filter.scope(3).is_none());
    assert!(filter.scope(4).is_none());
    // nodelay and delay=: the last one wins.
    let (f, _) = build(
        &Conf {
            http: vec![ZONE],
            scopes: vec![
                vec!["limit_req zone=one delay=3 nodelay"],
                vec!["limit_req zone=one nodelay delay=3"],
            ],
        },
        None,
    );
    let f = f.expect("valid");
    assert_eq!(f.scope(0).unwrap().limits[0].delay, NODELAY);
    assert_eq!(f.scope(1).unwrap().limits[0].delay, 3000);
}

#[test]
fn reload_keeps_counters_of_a_zone_with_the_same_name_and_size() {
    let conf = |zone: &'static str| Conf {
        http: vec![zone],
        scopes: vec![vec!["limit_req zone=one"]],
    };
    let first = build(&conf(ZONE), None).0.expect("valid");
    let s = first.scope(0).unwrap();
    assert_eq!(answer(s, 1000, "k"), "pass PASSED");
    assert_eq!(answer(s, 1000, "k"), "reject 429 REJECTED");

    // Same name, key and size, another rate: the state is taken over
    // (nginx reuses the shared memory zone).
    let second = build(
        &conf("limit_req_zone $binary_remote_addr zone=one:10m rate=1r/s"),
        Some(&first),
    )
    .0
    .expect("valid");
    let z2 = second.zone("one").unwrap();
    assert!(z2.shares_state_with(first.zone("one").unwrap()));
    assert_eq!(z2.rate(), 1000);
    assert_eq!(
        answer(second.scope(0).unwrap(), 1000, "k"),
        "reject 429 REJECTED"
    );

    // Another size: a new zone, no error even with another key.
    let third = build(
        &conf("limit_req_zone $uri zone=one:20m rate=2r/s"),
        Some(&second),
    )
    .0
    .expect("valid");
    assert!(!third.zone("one").unwrap().shares_state_with(z2));
    assert_eq!(answer(third.scope(0).unwrap(), 1000, "k"), "pass PASSED");

    // Same size, another key: nginx's error, without a location.
    let (err, _) = build(
        &conf("limit_req_zone $remote_addr zone=one:10m rate=2r/s"),
        Some(&second),
    );
    let err = err.err().expect("refused");
    assert_eq!(
        err.message.as_str(),
        "limit_req \"one\" uses the \"$remote_addr\" key while previously it used the \"$binary_remote_addr\" key"
    );
    assert_eq!(err.line, 0);

    // Another mode: a new zone.
    let fourth = build(
        &conf("limit_req_zone $binary_remote_addr zone=one:10m rate=2r/s mode=window"),
        Some(&second),
    )
    .0
    .expect("valid");
    assert!(!fourth.zone("one").unwrap().shares_state_with(z2));
}

// ------------------------------------------------ check, as the core calls

struct FakeRequest {
    templates: Vec<String>,
    vars: Vec<(&'static str, String)>,
}

extern "C" fn eval<'a>(ctx: *const c_void, template: u32) -> RStr<'a> {
    // SAFETY: the tests pass a FakeRequest that outlives the view.
    let r = unsafe { &*(ctx as *const FakeRequest) };
    let text = &r.templates[template as usize];
    let value = r
        .vars
        .iter()
        .find(|(name, _)| *name == text)
        .map_or("", |(_, v)| v.as_str());
    // SAFETY: as above.
    RStr::from_str(unsafe { &*(value as *const str) })
}

extern "C" fn none<'a>(_: *const c_void, _: RStr<'_>) -> RStr<'a> {
    RStr::from_str("")
}

fn check(filter: &LimitReq, scope: usize, req: &FakeRequest) -> Check {
    let view = RequestView {
        method: RStr::from_str("GET"),
        uri: RStr::from_str("/"),
        client_addr: RStr::from_str("127.0.0.1"),
        client_ip: RSlice::from_slice(&[127, 0, 0, 1]),
        ctx: req as *const FakeRequest as *const c_void,
        header: none,
        variable: none,
        eval,
    };
    filter.check(scope, &Request::new(&view))
}

#[test]
fn check_answers_429_json_with_retry_after() {
    let conf = Conf {
        http: vec!["limit_req_zone $arg_app_id zone=apps:1m rate=1r/m"],
        scopes: vec![
            vec!["limit_req zone=apps"],
            vec!["limit_req zone=apps", "limit_req_missing_key reject"],
            vec![],
        ],
    };
    let (filter, templates) = build(&conf, None);
    let filter = filter.expect("valid");
    let req = |id: &str| FakeRequest {
        templates: templates.clone(),
        vars: vec![("$arg_app_id", id.to_owned())],
    };
    let a = req("a");
    assert_eq!(summary(&check(&filter, 0, &a)), "pass PASSED");
    let c = check(&filter, 0, &a);
    let Action::Reject(r) = &c.action else {
        panic!("rejected")
    };
    assert_eq!(c.variable, "REJECTED");
    assert_eq!(r.status, 429);
    assert_eq!(r.content_type.as_str(), "application/json");
    assert_eq!(r.body.as_str(), "{\"message\":\"Too Many Requests\"}");
    let retry: u64 = header(r, "Retry-After").unwrap().parse().unwrap();
    assert!((62..=63).contains(&retry), "{retry}");
    // Another key is not limited by a's.
    assert_eq!(summary(&check(&filter, 0, &req("b"))), "pass PASSED");
    // No key: not limited, unless missing_key reject.
    assert_eq!(summary(&check(&filter, 0, &req(""))), "pass");
    let c = check(&filter, 1, &req(""));
    assert_eq!(summary(&c), "reject 401 REJECTED");
    // A scope without limit_req, and one out of range.
    assert_eq!(summary(&check(&filter, 2, &a)), "pass");
    assert_eq!(summary(&check(&filter, 9, &a)), "pass");
}

#[test]
fn requests_are_counted_once_per_zone_and_result() {
    let conf = Conf {
        http: vec![
            "limit_req_zone $arg_a zone=a:1m rate=1r/m",
            "limit_req_zone $arg_b zone=b:1m rate=1r/m",
            "limit_req_zone $arg_c zone=c:1m rate=1r/m",
        ],
        scopes: vec![
            vec!["limit_req zone=b burst=5"],
            vec!["limit_req zone=a", "limit_req_dry_run on"],
            vec!["limit_req zone=c burst=5", "limit_req_dry_run on"],
            vec!["limit_req zone=a", "limit_req zone=c"],
        ],
    };
    let (filter, templates) = build(&conf, None);
    let filter = filter.expect("valid");
    let req = |vars: &[(&'static str, &str)]| FakeRequest {
        templates: templates.clone(),
        vars: vars.iter().map(|(k, v)| (*k, (*v).to_owned())).collect(),
    };
    let counts = |zone: &str| RequestResult::ALL.map(|r| filter.requests(zone, r).expect("a zone"));
    // Series at 0 from the start, for every zone.
    assert_eq!(counts("a"), [0; 5]);
    assert_eq!(filter.requests("nosuch", RequestResult::Passed), None);

    // Passed, then delayed (burst 5, no nodelay).
    let b = req(&[("$arg_b", "x")]);
    assert_eq!(summary(&check(&filter, 0, &b)), "pass PASSED");
    assert_eq!(check(&filter, 0, &b).variable, "DELAYED");
    assert_eq!(counts("b"), [1, 1, 0, 0, 0]);
    // No key: not limited, not counted.
    assert_eq!(summary(&check(&filter, 0, &req(&[]))), "pass");
    assert_eq!(counts("b"), [1, 1, 0, 0, 0]);

    // Dry run: would have been rejected, would have waited.
    let a = req(&[("$arg_a", "x")]);
    assert_eq!(summary(&check(&filter, 1, &a)), "pass PASSED");
    assert_eq!(summary(&check(&filter, 1, &a)), "pass REJECTED_DRY_RUN");
    assert_eq!(counts("a"), [1, 0, 0, 0, 1]);
    let c = req(&[("$arg_c", "x")]);
    assert_eq!(summary(&check(&filter, 2, &c)), "pass PASSED");
    assert_eq!(summary(&check(&filter, 2, &c)), "pass DELAYED_DRY_RUN");
    assert_eq!(counts("c"), [1, 0, 0, 1, 0]);

    // Two limits: a pass counts under the last zone that accounted it
    // (here `a`, as `c`'s key is empty), a rejection under the zone that
    // rejected, once per request.
    let a2 = req(&[("$arg_a", "y")]);
    assert_eq!(summary(&check(&filter, 3, &a2)), "pass PASSED");
    assert_eq!(counts("a"), [2, 0, 0, 0, 1]);
    let both = req(&[("$arg_a", "z"), ("$arg_c", "x")]);
    let answer = check(&filter, 3, &both);
    assert_eq!(answer.variable, "REJECTED");
    assert_eq!(counts("a"), [2, 0, 0, 0, 1]);
    assert_eq!(counts("c"), [1, 0, 1, 1, 0]);
}

#[test]
fn module_declares_its_directives_and_variable() {
    use waypost_module_api::filter::FilterModule;
    let names: Vec<&str> = LimitReqModule::DIRECTIVES
        .iter()
        .map(|d| d.name.as_str())
        .collect();
    assert_eq!(
        names,
        [
            "limit_req_zone",
            "limit_req",
            "limit_req_status",
            "limit_req_log_level",
            "limit_req_dry_run",
            "limit_req_missing_key"
        ]
    );
    assert_eq!(LimitReqModule::VARIABLES, ["limit_req_status"]);
    let zone = &LimitReqModule::DIRECTIVES[0];
    assert_eq!((zone.min_args, zone.max_args), (3, 7));
    assert!(!zone
        .contexts
        .contains(waypost_module_api::Contexts::LOCATION));
    let lr = &LimitReqModule::DIRECTIVES[1];
    assert_eq!((lr.min_args, lr.max_args), (1, 3));
    assert!(lr.contexts.contains(waypost_module_api::Contexts::UPSTREAM));
}
