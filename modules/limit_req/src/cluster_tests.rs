//! Unit tests of cluster windows and buckets without Redis: the
//! per-request decision, the exchange folded into the zones (a fake store
//! that runs the Lua scripts' steps), several instances on a made-up
//! clock, store failures and restarts, and the configuration.

use std::cell::RefCell;
use std::collections::HashMap;
use std::ops::RangeInclusive;
use std::rc::Rc;
use std::sync::Arc;

use waypost_module_api::Template;

use crate::cluster::*;
use crate::*;

// ---------------------------------------------------------------- helpers

/// A key's window in the fake store: per instance, the most it may have
/// admitted (`max(count, grant)`).
type Window = HashMap<String, u64>;

/// A store shared by the instances of a test: what the scripts do, in
/// memory (the instance set expires by the wall clock; keys never do here).
#[derive(Default)]
struct FakeStore {
    hashes: HashMap<Vec<u8>, Window>,
    /// Leaky keys: the cluster level (thousandths) and its wall-clock ms.
    buckets: HashMap<Vec<u8>, (u64, u64)>,
    sets: HashMap<Vec<u8>, HashMap<String, u64>>,
    exchanges: usize,
}

impl FakeStore {
    /// A restart without persistence.
    fn flush(&mut self) {
        self.hashes.clear();
        self.buckets.clear();
        self.sets.clear();
    }

    /// What every instance holds in every window.
    fn held(&self) -> u64 {
        self.hashes.values().flat_map(|h| h.values()).sum()
    }
}

/// One instance's connection to the fake store.
struct FakeLink {
    store: Rc<RefCell<FakeStore>>,
    down: Rc<RefCell<bool>>,
}

impl Exchange for FakeLink {
    fn exchange(
        &mut self,
        req: &ExchangeRequest<'_>,
        out: &mut Vec<SyncReply>,
    ) -> Result<u64, String> {
        if *self.down.borrow() {
            return Err("Connection refused (os error 111)".into());
        }
        let mut st = self.store.borrow_mut();
        st.exchanges += 1;
        let mut set_key = req.prefix.to_vec();
        set_key.extend_from_slice(b"instances");
        let set = st.sets.entry(set_key).or_default();
        set.insert(req.instance.into(), req.now_ms + req.instance_ttl_ms);
        set.retain(|_, until| *until > req.now_ms);
        let instances = set.len() as u64;
        for item in req.batch.items() {
            let mut k = Vec::new();
            req.store_key(item, &mut k);
            match (req.sharing, item.report) {
                (
                    Sharing::Window { limit },
                    Report::Window {
                        count, expected, ..
                    },
                ) => {
                    let h = st.hashes.entry(k).or_default();
                    let held: u64 = h
                        .iter()
                        .filter(|(who, _)| who.as_str() != req.instance)
                        .map(|(_, v)| *v)
                        .sum();
                    let seen =
                        1 + h.keys().filter(|who| who.as_str() != req.instance).count() as u64;
                    let n = seen.max(expected);
                    let blind = (limit / n).max(1);
                    let free =
                        limit as i64 - held as i64 - count as i64 - (blind * (n - seen)) as i64;
                    let grant = if free > 0 {
                        count + (free as u64 / seen).max(1)
                    } else {
                        count
                    };
                    h.insert(req.instance.into(), grant);
                    out.push(SyncReply::Window {
                        grant: grant as i64,
                        others: held as i64,
                        peers: seen as i64,
                    });
                }
                (Sharing::Leaky { rate }, Report::Leaky { added, level }) => {
                    let since = req.since_ms.min(req.now_ms);
                    let (l, at) = st.buckets.entry(k).or_insert((0, since));
                    let mut gone = 0;
                    if req.now_ms > *at {
                        gone = (req.now_ms - *at) * rate / 1000;
                        *at = req.now_ms;
                    }
                    *l = (*l + added).saturating_sub(gone).max(level);
                    out.push(SyncReply::Leaky { level: *l as i64 });
                }
                _ => return Err("report of another mode".into()),
            }
        }
        Ok(instances)
    }
}

const LIMIT: u64 = 100;

fn cluster_zone(mode: Mode, on_error: OnClusterError) -> Arc<Zone> {
    Arc::new(Zone::new(
        ZoneSpec {
            name: "c".into(),
            key: "$k".into(),
            size: 1 << 20,
            rate: Rate::per_second(LIMIT),
            mode,
            cluster: Some(ClusterSpec {
                url: "redis://127.0.0.1:6379".into(),
                sync_ms: 100,
                on_error,
            }),
        },
        Template(0),
    ))
}

/// An instance: its zone and its link, first exchange at `first_due` ms.
struct Instance {
    zone: Arc<Zone>,
    link: ZoneLink<FakeLink>,
    logs: Vec<String>,
    /// `burst=` of the requests' limit, in thousandths (leaky zones).
    burst: u64,
}

/// The fake store of a test's instances, and the switch that makes
/// their connections to it fail.
#[derive(Default)]
struct Fake {
    store: Rc<RefCell<FakeStore>>,
    down: Rc<RefCell<bool>>,
}

impl Fake {
    /// A window zone's instance, `on_error` local, its first exchange due
    /// at once.
    fn window(&self, id: usize) -> Instance {
        self.instance(Mode::Window, id, OnClusterError::Local, 0)
    }

    /// A leaky zone's instance, its requests under `burst=5 nodelay`,
    /// `on_error` local, its first exchange due at once.
    fn leaky(&self, id: usize) -> Instance {
        self.instance(Mode::Leaky, id, OnClusterError::Local, 0)
    }

    /// Instance `id` of a zone of `mode`, its first exchange at
    /// `first_due` ms.
    fn instance(
        &self,
        mode: Mode,
        id: usize,
        on_error: OnClusterError,
        first_due: u64,
    ) -> Instance {
        let zone = cluster_zone(mode, on_error);
        let link = FakeLink {
            store: self.store.clone(),
            down: self.down.clone(),
        };
        let mut link = ZoneLink::new(&zone, "redis://127.0.0.1:6379", link);
        link.instance = format!("i{id}");
        link.next_due = first_due;
        Instance {
            zone,
            link,
            logs: Vec::new(),
            burst: 5000,
        }
    }
}

impl Instance {
    fn request(&self, key: &[u8], t: u64) -> bool {
        matches!(
            self.zone.account(key, t, self.burst),
            Outcome::Admitted { .. }
        )
    }

    /// The bucket's stored level of `key` (leaky zones).
    fn level(&self, key: &[u8]) -> u64 {
        self.zone.bucket(key).map_or(0, |(excess, _)| excess)
    }

    /// The bucket's level of `key` leaked to `t`, `rate=100r/s`.
    fn bucket_at(&self, key: &[u8], t: u64) -> u64 {
        self.zone.bucket(key).map_or(0, |(excess, last)| {
            excess.saturating_sub(t.saturating_sub(last) * LIMIT)
        })
    }

    /// An exchange if one is due at `t`.
    fn tick(&mut self, t: u64) {
        if t >= self.link.next_due {
            let logs = &mut self.logs;
            let _ = self.link.tick(&self.zone, t, t, &mut |level, m| {
                logs.push(format!("[{level:?}] {m}"))
            });
        }
    }
}

/// A window boundary, as wall-clock ms.
const T0: u64 = 1_800_000_000_000;

/// Three instances of `mode` (exchanges 100 ms apart, at phases 0, 33
/// and 66 ms) on one key for `secs` seconds; `load(t, i)` requests reach
/// instance `i` at ms `t`. Returns the requests admitted in each second.
fn simulate_mode(mode: Mode, secs: u64, load: impl Fn(u64, usize) -> u64) -> Vec<u64> {
    let f = Fake::default();
    let mut inst: Vec<Instance> = (0..3)
        .map(|i| f.instance(mode, i, OnClusterError::Local, T0 - 1000 + 33 * i as u64))
        .collect();
    // A second of exchanges before the load: the instances know each
    // other, as they do from start-up (they exchange, keys or not).
    for t in T0 - 1000..T0 {
        for x in &mut inst {
            x.tick(t);
        }
    }
    let mut per_second = vec![0; secs as usize];
    for t in T0..T0 + secs * 1000 {
        for (i, x) in inst.iter_mut().enumerate() {
            for _ in 0..load(t, i) {
                if x.request(b"k", t) {
                    per_second[((t - T0) / 1000) as usize] += 1;
                }
            }
            x.tick(t);
        }
    }
    per_second
}

/// [`simulate_mode`] for windows.
fn simulate(secs: u64, load: impl Fn(u64, usize) -> u64) -> Vec<u64> {
    simulate_mode(Mode::Window, secs, load)
}

// ------------------------------------------------------------- decide

fn view(up: bool, on_error: OnClusterError, instances: u64) -> ClusterView {
    ClusterView {
        up,
        on_error,
        instances,
    }
}

#[test]
fn a_new_window_starts_blind_with_a_share_of_the_limit() {
    let mut s = SyncSlot::default();
    let mut dirty = Vec::new();
    let v = view(true, OnClusterError::Local, 3);
    // 100 / 3 instances: 33 before the first exchange of the window.
    for used in 0..33 {
        assert_eq!(
            decide(&mut s, &mut dirty, 7, 5, used, 100, v),
            Admission::Admit
        );
    }
    assert_eq!(
        decide(&mut s, &mut dirty, 7, 5, 33, 100, v),
        Admission::Paced
    );
    assert_eq!(dirty, [7], "marked once");
    assert_eq!((s.window, s.grant), (5, 33));
    // Two instances reported the key in window 5: window 6 expects two.
    s.peers = 2;
    assert_eq!(
        decide(&mut s, &mut dirty, 7, 6, 0, 100, v),
        Admission::Admit
    );
    assert_eq!((s.window, s.grant, s.peers, s.prev_peers), (6, 50, 0, 2));
    assert_eq!(dirty.len(), 1, "still listed once");
    // A window without an exchange keeps what was known before.
    decide(&mut s, &mut dirty, 7, 7, 0, 100, v);
    assert_eq!((s.grant, s.prev_peers), (50, 2));
}

#[test]
fn the_cluster_estimate_and_the_grant_both_bound_a_request() {
    let mut dirty = Vec::new();
    let v = view(true, OnClusterError::Local, 3);
    // Others admitted 90, this instance may reach 12.
    let mut s = SyncSlot {
        window: 1,
        pushed: 2,
        others: 90,
        grant: 12,
        peers: 3,
        prev_peers: 3,
        added: 0,
        dirty: true,
    };
    assert_eq!(
        decide(&mut s, &mut dirty, 0, 1, 9, 100, v),
        Admission::Admit
    );
    assert_eq!(
        decide(&mut s, &mut dirty, 0, 1, 10, 100, v),
        Admission::Full { over: 1 }
    );
    s.others = 10;
    assert_eq!(
        decide(&mut s, &mut dirty, 0, 1, 11, 100, v),
        Admission::Admit
    );
    assert_eq!(
        decide(&mut s, &mut dirty, 0, 1, 12, 100, v),
        Admission::Paced
    );
    assert!(dirty.is_empty(), "already in the list");
    assert_eq!(share(0, 3), 0);
    assert_eq!(share(2, 3), 1);
    assert_eq!(share(100, 3), 33);
    assert_eq!(share(100, 0), 100);
}

#[test]
fn while_the_store_fails_the_zone_acts_as_on_cluster_error_says() {
    let mut dirty = Vec::new();
    let full = SyncSlot {
        window: 1,
        others: 100,
        ..SyncSlot::default()
    };
    let mut s = full;
    let local = view(false, OnClusterError::Local, 3);
    // Local: the instance's own count against the whole limit; what the
    // others admitted is not counted.
    assert_eq!(
        decide(&mut s, &mut dirty, 0, 1, 99, 100, local),
        Admission::Admit
    );
    assert_eq!(
        decide(&mut s, &mut dirty, 0, 1, 100, 100, local),
        Admission::Full { over: 1 }
    );
    let mut s = full;
    let allow = view(false, OnClusterError::Allow, 3);
    assert_eq!(
        decide(&mut s, &mut dirty, 0, 1, 5000, 100, allow),
        Admission::Admit
    );
    let mut s = full;
    let deny = view(false, OnClusterError::Deny, 3);
    assert_eq!(
        decide(&mut s, &mut dirty, 0, 1, 0, 100, deny),
        Admission::Denied
    );
    // Keys touched meanwhile are exchanged when the store is back.
    assert_eq!(dirty, [0, 0, 0], "one fresh slot in each case");
}

// ----------------------------------------------------- collect and apply

/// Forces an exchange now.
fn exchange(x: &mut Instance, t: u64) -> Result<usize, String> {
    x.link.tick(&x.zone, t, t, &mut |_, _| {})
}

#[test]
fn an_exchange_stores_the_count_and_hands_out_a_grant() {
    let f = Fake::default();
    let mut a = f.window(0);
    let mut b = f.window(1);
    // Both registered: 2 instances, so 50 each before a first exchange.
    exchange(&mut a, T0 - 500).expect("a");
    exchange(&mut b, T0 - 500).expect("b");
    exchange(&mut a, T0 - 400).expect("a");
    assert_eq!(a.zone.cluster_instances(), 2);
    let t = T0 + 10;
    let admitted_a = (0..60).filter(|_| a.request(b"k", t)).count();
    assert_eq!(admitted_a, 50, "a's blind share");
    let admitted_b = (0..20).filter(|_| b.request(b"k", t)).count();
    assert_eq!(admitted_b, 20);

    // a's exchange: b not seen yet, 50 kept for it: nothing free.
    assert_eq!(exchange(&mut a, t + 1), Ok(1));
    let sa = a.zone.sync_slot(b"k").expect("a's key");
    assert_eq!((sa.pushed, sa.others, sa.grant, sa.peers), (50, 0, 50, 1));
    // b's: a holds 50, b 20: 30 free, split between the 2 seen.
    assert_eq!(exchange(&mut b, t + 2), Ok(1));
    let sb = b.zone.sync_slot(b"k").expect("b's key");
    assert_eq!((sb.pushed, sb.others, sb.grant, sb.peers), (20, 50, 35, 2));
    // a's, once a request touched the key again (and found a's grant
    // used up): b holds 35 (its grant), a 50: 15 free, 7 for a.
    assert!(!a.request(b"k", t + 3));
    assert_eq!(exchange(&mut a, t + 3), Ok(1));
    let sa = a.zone.sync_slot(b"k").expect("a's key");
    assert_eq!((sa.pushed, sa.others, sa.grant), (50, 35, 57));
    let more_a = (0..40).filter(|_| a.request(b"k", t + 4)).count();
    let more_b = (0..40).filter(|_| b.request(b"k", t + 4)).count();
    assert_eq!((more_a, more_b), (7, 15));
    // Then in turns: b at 35, a holding 57: 4 more for b; a at 57, b
    // holding 39: 2 more for a; ... never more than 100 held in all.
    assert_eq!(exchange(&mut b, t + 5), Ok(1));
    assert_eq!(exchange(&mut a, t + 6), Ok(1));
    let (sa, sb) = (a.zone.sync_slot(b"k"), b.zone.sync_slot(b"k"));
    assert_eq!(sa.map(|s| (s.others, s.grant)), Some((39, 59)));
    assert_eq!(sb.map(|s| (s.others, s.grant)), Some((57, 39)));
    assert_eq!(f.store.borrow().held(), 98);
    let last_b = (0..40).filter(|_| b.request(b"k", t + 7)).count();
    assert_eq!(last_b, 4);
    assert_eq!(exchange(&mut b, t + 8), Ok(1));
    assert!(f.store.borrow().held() <= 100);
    // Nothing is exchanged until a request touches a key again.
    let before = f.store.borrow().exchanges;
    assert_eq!(exchange(&mut b, t + 9), Ok(0));
    assert_eq!(f.store.borrow().exchanges, before + 1);
}

#[test]
fn a_reply_for_a_window_that_has_passed_is_not_folded() {
    let f = Fake::default();
    let a = f.window(0);
    let last_ms = T0 + 999;
    assert!(a.request(b"k", last_ms));
    let mut batch = Batch::default();
    a.zone.collect(&mut batch, 100, last_ms);
    assert_eq!(batch.len(), 1);
    assert_eq!(
        batch.items()[0].report,
        Report::Window {
            window: last_ms / 1000,
            count: 1,
            expected: 1
        }
    );
    // The next window starts before the reply.
    assert!(a.request(b"k", T0 + 1000));
    let reply = SyncReply::Window {
        grant: 1,
        others: 100,
        peers: 3,
    };
    a.zone.apply(&batch, &[reply], T0 + 1000);
    let s = a.zone.sync_slot(b"k").expect("slot");
    assert_eq!(
        (s.window, s.others, s.pushed, s.grant),
        ((T0 + 1000) / 1000, 0, 0, 100)
    );
}

#[test]
fn a_failed_exchange_puts_its_keys_back_and_a_store_restart_is_repaired() {
    let f = Fake::default();
    let mut a = f.window(0);
    let t = T0 + 100;
    for _ in 0..10 {
        assert!(a.request(b"k", t));
    }
    *f.down.borrow_mut() = true;
    assert!(exchange(&mut a, t).is_err());
    assert!(!a.zone.cluster_up());
    // The key is still to be exchanged: 10 when the store is back.
    *f.down.borrow_mut() = false;
    assert_eq!(exchange(&mut a, t + 1), Ok(1));
    assert!(a.zone.cluster_up());
    assert_eq!(a.zone.sync_slot(b"k").map(|s| s.pushed), Some(10));

    // The store restarts empty: a writes what it holds again at its next
    // exchange (absolute, not added), so another instance sees it.
    let mut b = f.window(1);
    exchange(&mut b, t + 2).expect("b");
    exchange(&mut a, t + 2).expect("a");
    assert_eq!(a.zone.cluster_instances(), 2);
    f.store.borrow_mut().flush();
    assert!(a.request(b"k", t + 3));
    assert_eq!(exchange(&mut a, t + 4), Ok(1));
    assert!(b.request(b"k", t + 5), "b is blind: its share, 50");
    assert_eq!(exchange(&mut b, t + 6), Ok(1));
    let sb = b.zone.sync_slot(b"k").expect("b's key");
    assert!(sb.others >= 11, "{sb:?}");
    assert!(sb.others + sb.grant <= 100, "{sb:?}");
}

#[test]
fn failures_are_logged_per_attempt_with_backoff_and_the_recovery_once() {
    let f = Fake::default();
    *f.down.borrow_mut() = true;
    let mut a = f.window(0);
    // Attempts at 0, 100, 300, 700, 1500, 2500, 3500 (backoff doubles
    // from the interval up to 1 s).
    let mut attempts = Vec::new();
    for t in 0..4000 {
        if t >= a.link.next_due {
            attempts.push(t);
        }
        a.tick(t);
    }
    assert_eq!(attempts, [0, 100, 300, 700, 1500, 2500, 3500]);
    assert_eq!(a.logs.len(), 7);
    assert!(
        a.logs[0].starts_with("[Error] cluster sync of zone \"c\" with redis://127.0.0.1:6379 failed (1 in a row): Connection refused"),
        "{}",
        a.logs[0]
    );
    assert!(a.logs[0].ends_with("limiting per instance until it is back, next attempt in 100 ms"));
    assert!(a.logs[6].contains("(7 in a row)"));
    *f.down.borrow_mut() = false;
    a.tick(4500);
    assert_eq!(
        a.logs[7],
        "[Notice] cluster sync of zone \"c\" with redis://127.0.0.1:6379 resumed after 7 failed attempts"
    );
    a.tick(4600);
    assert_eq!(a.logs.len(), 8);
    assert!(a.zone.cluster_up());
}

#[test]
fn the_store_down_limits_per_instance_allows_or_denies() {
    // 300 requests at once on one key: a window admits its limit, a
    // bucket (`burst=5 nodelay`) nginx's burst and one.
    for (mode, on_error, want) in [
        (Mode::Window, OnClusterError::Local, 100),
        (Mode::Window, OnClusterError::Allow, 300),
        (Mode::Window, OnClusterError::Deny, 0),
        (Mode::Leaky, OnClusterError::Local, 6),
        (Mode::Leaky, OnClusterError::Allow, 300),
        (Mode::Leaky, OnClusterError::Deny, 0),
    ] {
        let f = Fake::default();
        let mut a = f.instance(mode, 0, on_error, 0);
        let mut b = f.instance(mode, 1, on_error, 0);
        exchange(&mut a, T0 - 500).expect("a");
        exchange(&mut b, T0 - 500).expect("b");
        *f.down.borrow_mut() = true;
        assert!(exchange(&mut a, T0 - 100).is_err());
        assert!(!a.zone.cluster_up());
        let admitted = (0..300).filter(|_| a.request(b"k", T0 + 10)).count();
        assert_eq!(admitted, want, "{mode:?} {on_error:?}");
        if mode == Mode::Leaky {
            // Nothing the instance let through alone is to be shared.
            let added = a.zone.sync_slot(b"k").map_or(0, |s| s.added);
            assert_eq!(added, 0, "{on_error:?}");
        }
    }
}

// ------------------------------------------------- several instances

/// [`simulate`] for 10 s of `load` (`what`, for the output): every
/// second admits a number within `range`.
fn each_second_within(what: &str, load: impl Fn(u64, usize) -> u64, range: RangeInclusive<u64>) {
    let windows = simulate(10, load);
    let total: u64 = windows.iter().sum();
    eprintln!("{what}: {windows:?}, total {total}");
    for w in &windows {
        assert!(range.contains(w), "{windows:?}");
    }
}

#[test]
fn three_instances_share_one_limit_under_heavy_even_load() {
    // Each instance gets a request every ms (1,000 r/s each, 30 times the
    // limit together).
    each_second_within("even load", |_, _| 1, 97..=102);
}

#[test]
fn three_instances_share_one_limit_under_uneven_load() {
    // Instance 0 gets 90% of the traffic.
    let load = |t: u64, i: usize| match i {
        0 => 1,
        _ => u64::from(matches!(t % 9, 0)),
    };
    each_second_within("uneven load", load, 90..=102);
}

#[test]
fn one_instance_alone_on_a_key_gets_the_whole_limit_from_its_second_window() {
    // A key new to the instances: in its first window the other two are
    // expected (a share is kept for each), so the lone instance gets its
    // share, 34 (its blind 33 and 1 more); from then on the key's previous
    // window shows it alone.
    let windows = simulate(5, |_, i| u64::from(i == 0));
    eprintln!("one instance: {windows:?}");
    assert_eq!(windows, [34, 100, 100, 100, 100]);
}

#[test]
fn light_load_is_never_limited() {
    // 20 r/s on each instance: 60 of 100.
    let windows = simulate(5, |t, i| u64::from(matches!((t + 17 * i as u64) % 50, 0)));
    assert_eq!(windows, [60; 5]);
}

// -------------------------------------------------------- leaky buckets

#[test]
fn a_cluster_bucket_counts_what_it_adds_and_lists_each_key_once() {
    let f = Fake::default();
    let a = f.leaky(0);
    // A new key is stored at 0 (nginx): its first request adds nothing.
    assert!(a.request(b"k", T0));
    let s = a.zone.sync_slot(b"k").expect("slot");
    assert_eq!((s.added, s.dirty), (0, true));
    for _ in 0..5 {
        assert!(a.request(b"k", T0));
    }
    // Rejected: nothing added.
    assert!(!a.request(b"k", T0));
    assert_eq!(a.zone.sync_slot(b"k").map(|s| s.added), Some(5000));
    assert_eq!(a.level(b"k"), 5000);
    // Held by a first limit: counted when saved, not when released.
    let held = |key: &[u8], t: u64| match a.zone.lookup(key, t, 5000, false) {
        Outcome::Held { pin, .. } => pin,
        o => panic!("{o:?}"),
    };
    let pin = held(b"k", T0 + 10);
    assert_eq!(a.zone.commit(pin, T0 + 10), 5000);
    assert_eq!(a.zone.sync_slot(b"k").map(|s| s.added), Some(6000));
    let pin = held(b"k", T0 + 20);
    a.zone.release(pin);
    assert_eq!(a.zone.sync_slot(b"k").map(|s| s.added), Some(6000));
    let pin = held(b"new", T0 + 20);
    a.zone.commit(pin, T0 + 20);
    assert_eq!(a.zone.sync_slot(b"new").map(|s| s.added), Some(0));
    // One exchange takes the additions and both keys, each once.
    let mut batch = Batch::default();
    a.zone.collect(&mut batch, 100, T0 + 20);
    let mut reports: Vec<(Vec<u8>, Report)> = batch
        .items()
        .iter()
        .map(|i| (batch.key(i).to_vec(), i.report))
        .collect();
    reports.sort_by(|x, y| x.0.cmp(&y.0));
    assert_eq!(
        reports,
        [
            (
                b"k".to_vec(),
                Report::Leaky {
                    added: 6000,
                    level: 4000
                }
            ),
            (b"new".to_vec(), Report::Leaky { added: 0, level: 0 }),
        ]
    );
    assert_eq!(a.zone.sync_slot(b"k").map(|s| s.added), Some(0));
    let req = ExchangeRequest {
        prefix: b"waypost:limit_req:c:",
        instance: "i0",
        now_ms: T0,
        instance_ttl_ms: 1300,
        key_ttl_ms: 1200,
        sharing: a.zone.sharing(),
        since_ms: T0 - 100,
        batch: &batch,
    };
    let mut key = Vec::new();
    req.store_key(&batch.items()[0], &mut key);
    assert!(key.starts_with(b"waypost:limit_req:c:b:"), "{key:?}");
}

#[test]
fn an_exchange_folds_the_others_additions_into_the_bucket() {
    // rate=100r/s burst=5 nodelay: the level leaks 100 thousandths a ms.
    let f = Fake::default();
    let mut a = f.leaky(0);
    let mut b = f.leaky(1);
    let t = T0;
    let admitted_a = (0..10).filter(|_| a.request(b"k", t)).count();
    assert_eq!(admitted_a, 6, "burst and one");
    assert!(b.request(b"k", t), "b knows nothing yet: a new key");
    // a's exchange: the cluster level is its own; nothing counted twice.
    assert_eq!(exchange(&mut a, t), Ok(1));
    assert_eq!(a.level(b"k"), 5000);
    // b's: a's five additions folded in, b's bucket is full.
    assert_eq!(exchange(&mut b, t), Ok(1));
    assert_eq!(b.level(b"k"), 5000);
    assert!(!b.request(b"k", t));
    // Both leak alike: 10 ms later each has room for one. a does not know
    // of b's yet (the lag between exchanges), so both go on.
    assert!(b.request(b"k", t + 10));
    assert!(a.request(b"k", t + 10));
    // b reports its addition (cluster level 5000 + 1000 - 1100, its own);
    // a reports its own and folds b's in (4900 + 1000 - 100).
    assert_eq!(exchange(&mut b, t + 11), Ok(1));
    assert_eq!(b.bucket_at(b"k", t + 11), 4900);
    assert_eq!(exchange(&mut a, t + 12), Ok(1));
    assert_eq!(a.bucket_at(b"k", t + 12), 5800);
    assert!(!a.request(b"k", t + 12));
    // The next exchange of b gets it too.
    assert!(!b.request(b"k", t + 13));
    assert_eq!(exchange(&mut b, t + 13), Ok(1));
    assert_eq!(b.bucket_at(b"k", t + 13), 5700);
    // A new instance folds what has not leaked: its bucket starts there.
    let mut c = f.leaky(2);
    assert!(c.request(b"k", t + 14));
    assert_eq!(exchange(&mut c, t + 14), Ok(1));
    assert_eq!(c.bucket_at(b"k", t + 14), 5600);
    assert!(!c.request(b"k", t + 14));
}

#[test]
fn what_has_leaked_is_not_folded_in_late() {
    let f = Fake::default();
    let mut a = f.leaky(0);
    let mut b = f.leaky(1);
    for _ in 0..6 {
        assert!(a.request(b"k", T0));
    }
    assert_eq!(exchange(&mut a, T0), Ok(1));
    // b meets the key 10 s later: a's additions have leaked long ago.
    assert!(b.request(b"k", T0 + 10_000));
    assert_eq!(exchange(&mut b, T0 + 10_000), Ok(1));
    assert_eq!(b.level(b"k"), 0);
    let admitted_b = (0..10).filter(|_| b.request(b"k", T0 + 10_001)).count();
    assert_eq!(admitted_b, 5, "a whole burst, as for one nginx");
}

#[test]
fn a_failed_exchange_keeps_the_additions_and_a_store_restart_is_repaired() {
    let f = Fake::default();
    let mut a = f.leaky(0);
    let mut b = f.leaky(1);
    let level =
        |store: &Rc<RefCell<FakeStore>>| store.borrow().buckets.values().next().map(|b| b.0);
    for _ in 0..6 {
        assert!(a.request(b"k", T0));
    }
    *f.down.borrow_mut() = true;
    assert!(exchange(&mut a, T0).is_err());
    assert_eq!(a.zone.sync_slot(b"k").map(|s| s.added), Some(5000));
    // While the store fails, what a adds stays its own.
    assert!(a.request(b"k", T0 + 10));
    assert_eq!(a.zone.sync_slot(b"k").map(|s| s.added), Some(5000));
    // Back: the five are sent, but they were made 100 ms ago and have
    // leaked since (as a's own bucket shows): nothing is left of them.
    *f.down.borrow_mut() = false;
    assert_eq!(exchange(&mut a, T0 + 100), Ok(1));
    assert_eq!(level(&f.store), Some(0));

    // The store restarts empty: a's next exchange writes its level back
    // (a floor, not an addition), and b folds it in.
    f.store.borrow_mut().flush();
    for _ in 0..5 {
        assert!(a.request(b"k", T0 + 110));
    }
    assert_eq!(a.level(b"k"), 4000);
    assert_eq!(exchange(&mut a, T0 + 110), Ok(1));
    assert_eq!(level(&f.store), Some(4000));
    assert!(b.request(b"k", T0 + 110));
    assert_eq!(exchange(&mut b, T0 + 110), Ok(1));
    assert_eq!(b.level(b"k"), 4000);
}

#[test]
fn the_combined_level_delays_as_nginx_does() {
    // rate=10r/s burst=4 delay=2 (nginx-behaviour.md §3.4). b has the key;
    // a takes three requests at once and exchanges; b's next requests
    // are delayed and rejected by the combined level, as one nginx would
    // (b's own first request, a new key to it, went in free).
    let f = Fake::default();
    let spec = |z: &Zone| ZoneSpec {
        rate: Rate::per_second(10),
        ..z.spec().clone()
    };
    let mut a = f.leaky(0);
    a.zone = Arc::new(Zone::new(spec(&a.zone), Template(0)));
    let mut b = f.leaky(1);
    b.zone = Arc::new(Zone::new(spec(&b.zone), Template(0)));
    let scope = |x: &Instance| {
        ScopeLimits::new(vec![Limit::new(x.zone.clone(), 4, 2)], Settings::default())
    };
    let (sa, sb) = (scope(&a), scope(&b));
    let answer = |s: &ScopeLimits, t: u64| {
        let mut logs = Vec::new();
        let mut log = |level: LogLevel, m: &str| logs.push(format!("[{level:?}] {m}"));
        let d = s.decide(Now::at(t), |_| b"k", &mut log);
        let c = s.verdict(&d, &mut log);
        let a = match &c.action {
            waypost_module_api::filter::Action::Pass => format!("pass {}", c.variable),
            waypost_module_api::filter::Action::Delay(d) => {
                format!("delay {} {}", d.as_millis(), c.variable)
            }
            waypost_module_api::filter::Action::Reject(r) => {
                format!("reject {} {}", r.status, c.variable)
            }
        };
        (a, logs)
    };
    assert_eq!(answer(&sb, T0).0, "pass PASSED");
    for _ in 0..3 {
        assert_eq!(answer(&sa, T0 + 1).0, "pass PASSED");
    }
    assert_eq!(exchange(&mut a, T0 + 2), Ok(1));
    assert_eq!(exchange(&mut b, T0 + 3), Ok(1));
    // a's level (2.000, leaked 1 ms), leaked 1 ms more.
    assert_eq!(b.level(b"k"), 1980);
    let (first, logs) = answer(&sb, T0 + 4);
    assert_eq!(first, "delay 97 DELAYED");
    assert_eq!(
        logs,
        ["[Warn] delaying request, excess: 2.970, by zone \"c\""]
    );
    assert_eq!(answer(&sb, T0 + 5).0, "delay 196 DELAYED");
    let (last, logs) = answer(&sb, T0 + 6);
    assert_eq!(last, "reject 429 REJECTED");
    assert_eq!(
        logs,
        ["[Error] limiting requests, excess: 4.950 by zone \"c\""]
    );
}

/// The admissions one nginx (one zone, no cluster) makes of the same load
/// on one key, all its requests in one place, under `burst=5 nodelay`.
fn alone(secs: u64, load: impl Fn(u64, usize) -> u64) -> u64 {
    let zone = Zone::new(
        ZoneSpec {
            cluster: None,
            ..cluster_zone(Mode::Leaky, OnClusterError::Local)
                .spec()
                .clone()
        },
        Template(0),
    );
    let mut admitted = 0;
    for t in T0..T0 + secs * 1000 {
        for i in 0..3 {
            for _ in 0..load(t, i) {
                if matches!(zone.account(b"k", t, 5000), Outcome::Admitted { .. }) {
                    admitted += 1;
                }
            }
        }
    }
    admitted
}

/// The documented bound on what a cluster bucket admits beyond one
/// nginx over a whole run: what the two other instances add in an
/// interval (`rate × sync` each) and, when the three meet the key
/// together, a burst and one each.
const LEAKY_BOUND: u64 = 2 * (LIMIT / 10) + 2 * 6;

/// Three leaky instances for 10 s of `load` (`what`, for the output):
/// in all they admit what one nginx does, and at most [`LEAKY_BOUND`]
/// more. What they admitted in each second.
fn within_the_leaky_bound(what: &str, load: impl Fn(u64, usize) -> u64) -> Vec<u64> {
    let seconds = simulate_mode(Mode::Leaky, 10, &load);
    let total: u64 = seconds.iter().sum();
    let nginx = alone(10, &load);
    eprintln!("leaky, {what}: {seconds:?}, total {total}, one nginx {nginx}");
    assert!(
        (nginx..=nginx + LEAKY_BOUND).contains(&total),
        "{seconds:?}"
    );
    seconds
}

#[test]
fn three_instances_share_one_bucket_under_heavy_even_load() {
    // Each instance gets a request every ms (1,000 r/s each, 30 times the
    // rate together): one nginx admits about 100 × 10 + 5.
    let seconds = within_the_leaky_bound("even load", |_, _| 1);
    // Between exchanges each instance admits at the whole rate, so
    // admissions come in waves (about 25 in 100 ms, then none while the
    // folded level drains): any second stays within the bound of the rate
    // and its burst.
    for s in &seconds {
        assert!(
            (LIMIT - LEAKY_BOUND..=LIMIT + 6 + LEAKY_BOUND).contains(s),
            "{seconds:?}"
        );
    }
}

#[test]
fn three_instances_share_one_bucket_under_uneven_load() {
    // Instance 0 gets 90% of the traffic.
    let load = |t: u64, i: usize| match i {
        0 => 1,
        _ => u64::from(t.is_multiple_of(9)),
    };
    within_the_leaky_bound("uneven load", load);
}

#[test]
fn one_instance_alone_admits_what_one_nginx_does() {
    // All the load on one instance: bursts of 8 every 250 ms and one
    // request every 7 ms. Its bucket, folded with the cluster level at
    // each exchange, admits exactly what one nginx admits (the cluster
    // level is its own: no request counted twice, none counted where
    // nginx's level stays at 0).
    let load = |t: u64, i: usize| match i {
        0 => u64::from(t.is_multiple_of(7)) + if t.is_multiple_of(250) { 8 } else { 0 },
        _ => 0,
    };
    let seconds = simulate_mode(Mode::Leaky, 5, load);
    let total: u64 = seconds.iter().sum();
    assert_eq!(total, alone(5, load), "{seconds:?}");
}

#[test]
fn light_load_on_a_bucket_is_never_limited() {
    // 20 r/s on each instance, evenly spaced: 60 of 100.
    let seconds = simulate_mode(Mode::Leaky, 5, |t, i| {
        u64::from((t + 17 * i as u64).is_multiple_of(50))
    });
    assert_eq!(seconds, [60; 5]);
}

#[test]
fn a_script_reply_is_read_as_numbers() {
    let mut out = Vec::new();
    // What cmsgpack.pack({1, 2, 1000, -5, 1.5e12, 2^53 + 2}) answers.
    let reply = b"\x96\x01\x02\xcd\x03\xe8\xfb\xcf\x00\x00\x01\x5d\x3e\xf7\x98\x00\
                  \xcf\x00\x20\x00\x00\x00\x00\x00\x02";
    assert!(parse_numbers(reply, &mut out));
    assert_eq!(out, [1, 2, 1000, -5, 1_500_000_000_000, (1 << 53) + 2]);
    // Every integer width, signed and not, and floats (truncated).
    out.clear();
    let mut reply = vec![0xdc, 0, 12];
    reply.extend_from_slice(b"\xcc\xff\xce\xff\xff\xff\xff\xd0\x80\xd1\x80\x00");
    reply.extend_from_slice(b"\xd2\x80\x00\x00\x00\xd3\xff\xff\xff\xff\xff\xff\xff\xfe");
    reply.extend_from_slice(b"\xcb\x3f\xf8\x00\x00\x00\x00\x00\x00\xca\xc0\x20\x00\x00");
    reply.extend_from_slice(b"\xcf\xff\xff\xff\xff\xff\xff\xff\xff\x7f\xe0\x00");
    assert!(parse_numbers(&reply, &mut out));
    assert_eq!(
        out,
        [
            255,
            4_294_967_295,
            -128,
            -32768,
            -2_147_483_648,
            -2,
            1,
            -2,
            i64::MAX,
            127,
            -32,
            0
        ]
    );
    out.clear();
    assert!(parse_numbers(b"\x90", &mut out));
    assert!(out.is_empty());
    // Not an array of numbers, cut short, or with bytes after it.
    for bad in [
        &b""[..],
        b"1 2",
        b"\x01",
        b"\x92\x01",
        b"\x91\xcd\x03",
        b"\x91\x01\x02",
        b"\x91\xa1x",
        b"\x91\xc0",
        b"\x91\xcb\x7f\xf8\x00\x00\x00\x00\x00\x00",
        b"\xdd\xff\xff\xff\xff\x01",
    ] {
        assert!(!parse_numbers(bad, &mut out), "{bad:?}");
    }
}

// ------------------------------------------------ the scripts in Redis

/// A `redis-server` of its own (no persistence) on a free port, killed
/// when dropped.
struct RedisServer {
    child: std::process::Child,
    port: u16,
    dir: std::path::PathBuf,
}

impl RedisServer {
    fn start() -> RedisServer {
        let bin = ["/usr/bin/redis-server", "/usr/local/bin/redis-server"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .unwrap_or_else(|| {
                panic!("redis-server is not installed: apt-get install -y redis-server (the .ci/run script does)")
            });
        // Below the kernel's ephemeral range (a `bind(:0)` port is one
        // outgoing connections take too: once, under a busy full run, the
        // first exchange with a test's redis was reset).
        let port = waypost_tests::free_port();
        let dir = std::env::temp_dir().join(format!(
            "waypost-limit-req-redis-{}-{port}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).expect("redis dir");
        let child = std::process::Command::new(bin)
            .args(["--port", &port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start redis-server");
        let server = RedisServer { child, port, dir };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "redis-server did not listen"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        server
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn query<T: redis::FromRedisValue>(&self, cmd: &mut redis::Cmd) -> T {
        let client = redis::Client::open(self.url()).expect("client");
        let mut conn = client.get_connection().expect("connection");
        cmd.query(&mut conn).expect("query")
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A made-up but repeatable number below `max`, `n` choosing it.
fn pick(n: u64, max: u64) -> u64 {
    n.wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(29) % max
}

/// Runs the same rounds through Redis and through the fake store (what
/// the module's documentation says the scripts do): two instances in
/// turn, each round more keys than three script calls take, keys that
/// the other instance reported and keys new to the store, the window
/// changing, numbers past 32 bits; the answers must be the same.
fn same_answers_as_the_fake_store(mode: Mode, redis: &RedisServer) {
    let () = redis.query(&mut redis::cmd("FLUSHALL"));
    let zone = cluster_zone(mode, OnClusterError::Local);
    let sharing = zone.sharing();
    let prefix = format!("waypost:limit_req:{}:", zone.name()).into_bytes();
    let mut link = RedisLink::new(&redis.url(), std::time::Duration::from_secs(5)).expect("link");
    let mut fake = FakeLink {
        store: Rc::new(RefCell::new(FakeStore::default())),
        down: Rc::new(RefCell::new(false)),
    };
    let keys = 2 * KEYS_PER_CALL + 50;
    let mut since = [T0 - 100; 2];
    let (mut got, mut want) = (Vec::new(), Vec::new());
    for round in 0..8u64 {
        let who = (round % 2) as usize;
        let now = T0 + round * 400;
        let mut batch = Batch::default();
        // Each round a slice of the keys moved by a third: some known to
        // the store, some new.
        for i in 0..keys as u64 {
            let n = round * 1000 + i;
            let report = match sharing {
                Sharing::Window { .. } => Report::Window {
                    window: now / 1000,
                    count: pick(n, 60),
                    expected: 1 + pick(n + 7, 3),
                },
                Sharing::Leaky { .. } => Report::Leaky {
                    added: if i % 97 == 0 {
                        3_000_000_000
                    } else {
                        pick(n, 3000)
                    },
                    level: if i % 89 == 0 {
                        5_000_000_000
                    } else {
                        pick(n + 3, 6000)
                    },
                },
            };
            let key = format!("k{}", i + round * keys as u64 / 3);
            batch.push(0, i as u32, report, key.as_bytes());
        }
        let req = ExchangeRequest {
            prefix: &prefix,
            instance: ["i0", "i1"][who],
            now_ms: now,
            instance_ttl_ms: 60_000,
            key_ttl_ms: 60_000,
            sharing,
            since_ms: since[who],
            batch: &batch,
        };
        since[who] = now;
        got.clear();
        want.clear();
        let instances = link.exchange(&req, &mut got).expect("redis");
        let fake_instances = fake.exchange(&req, &mut want).expect("fake");
        assert_eq!(
            (instances, got.len()),
            (fake_instances, keys),
            "round {round}"
        );
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert_eq!(g, w, "round {round}, key {i}: {:?}", batch.items()[i]);
        }
    }
    assert_eq!(link_instances(&mut link, &prefix, sharing), 2);
}

/// An exchange of no key: the instance set only.
fn link_instances(link: &mut RedisLink, prefix: &[u8], sharing: Sharing) -> u64 {
    let batch = Batch::default();
    let req = ExchangeRequest {
        prefix,
        instance: "i0",
        now_ms: T0 + 10_000,
        instance_ttl_ms: 60_000,
        key_ttl_ms: 60_000,
        sharing,
        since_ms: T0,
        batch: &batch,
    };
    let mut out = Vec::new();
    let instances = link.exchange(&req, &mut out).expect("no key");
    assert!(out.is_empty());
    instances
}

#[test]
fn the_scripts_in_redis_answer_as_the_module_says_in_calls_of_many_keys() {
    let redis = RedisServer::start();
    same_answers_as_the_fake_store(Mode::Window, &redis);
    same_answers_as_the_fake_store(Mode::Leaky, &redis);
}

#[test]
fn the_scripts_keep_the_redis_keys_names_values_and_expiries() {
    let redis = RedisServer::start();
    let mut link = RedisLink::new(&redis.url(), std::time::Duration::from_secs(5)).expect("link");
    let exchange = |link: &mut RedisLink, sharing, report, now_ms, key_ttl_ms| {
        let mut batch = Batch::default();
        batch.push(0, 0, report, b"app 7");
        let req = ExchangeRequest {
            prefix: b"waypost:limit_req:z:",
            instance: "i0",
            now_ms,
            instance_ttl_ms: 1300,
            key_ttl_ms,
            sharing,
            since_ms: now_ms,
            batch: &batch,
        };
        let mut out = Vec::new();
        assert_eq!(link.exchange(&req, &mut out), Ok(1));
        out
    };
    let pttl = |key: &str| -> i64 { redis.query(redis::cmd("PTTL").arg(key)) };
    // The instance set expires with the instance.
    let now = crate::zone::wall_ms();
    let window = Sharing::Window { limit: 100 };
    let report = Report::Window {
        window: now / 1000,
        count: 10,
        expected: 1,
    };
    let out = exchange(&mut link, window, report, now, 3000);
    assert_eq!(
        out,
        [SyncReply::Window {
            grant: 100,
            others: 0,
            peers: 1
        }]
    );
    let ttl = pttl("waypost:limit_req:z:instances");
    assert!((1..=1300).contains(&ttl), "{ttl}");
    // A window: a hash of the instances' grants, expiring with the
    // window from when it was made (a later exchange does not move it).
    let key = format!("waypost:limit_req:z:{}:app 7", now / 1000);
    let fields: Vec<(String, String)> = redis.query(redis::cmd("HGETALL").arg(&key));
    assert_eq!(fields, [("i0".to_owned(), "100".to_owned())]);
    let ttl = pttl(&key);
    assert!((1..=3000).contains(&ttl), "{ttl}");
    exchange(&mut link, window, report, now, 60_000);
    assert!(pttl(&key) <= 3000);
    // A bucket: `LEVEL TIME`, expiring when drained, plus the keys' time
    // to live. 5,000 thousandths at 100r/s drain in 50 ms.
    let leaky = Sharing::Leaky { rate: 100_000 };
    let report = Report::Leaky {
        added: 5000,
        level: 4000,
    };
    let out = exchange(&mut link, leaky, report, now, 1200);
    assert_eq!(out, [SyncReply::Leaky { level: 5000 }]);
    let value: String = redis.query(redis::cmd("GET").arg("waypost:limit_req:z:b:app 7"));
    assert_eq!(value, format!("5000 {now}"));
    let ttl = pttl("waypost:limit_req:z:b:app 7");
    assert!((1..=1250).contains(&ttl), "{ttl}");
    // A level that takes a day to drain: the expiry stops at a day.
    let report = Report::Leaky {
        added: 0,
        level: 9_000_000_000_000,
    };
    let out = exchange(&mut link, leaky, report, now, 1200);
    assert_eq!(
        out,
        [SyncReply::Leaky {
            level: 9_000_000_000_000
        }]
    );
    let value: String = redis.query(redis::cmd("GET").arg("waypost:limit_req:z:b:app 7"));
    assert_eq!(value, format!("9000000000000 {now}"));
    let ttl = pttl("waypost:limit_req:z:b:app 7");
    assert!(ttl > 86_400_000 && ttl <= 86_401_200, "{ttl}");
}

// ------------------------------------------------------- configuration

fn build_error(zone: &'static str) -> String {
    crate::tests::error(&[zone], &[])
}

#[test]
fn cluster_parameters_and_their_errors() {
    let at = |m: &str| format!("{m} in /t/waypost.conf:1");
    let cases: &[(&str, String)] = &[
        ("limit_req_zone $k zone=one:1m rate=100r/s cluster=redis://127.0.0.1:1", "ok".into()),
        ("limit_req_zone $k zone=one:1m rate=100r/s mode=leaky cluster=redis://127.0.0.1:1 sync=50ms",
         "ok".into()),
        ("limit_req_zone $k zone=one:1m rate=100r/s cluster=redis://127.0.0.1:1 sync=5ms",
         at("invalid sync \"sync=5ms\", it must be from 10ms to 60s")),
        ("limit_req_zone $k zone=one:1m rate=100r/s on_cluster_error=allow",
         at("\"on_cluster_error=allow\" requires \"cluster=\"")),
        ("limit_req_zone $k zone=one:1m rate=100r/s mode=window cluster=http://x:1",
         at("invalid cluster \"cluster=http://x:1\", it must be \"redis://HOST:PORT[/DB]\"")),
        ("limit_req_zone $k zone=one:1m rate=100r/s mode=window cluster=redis://:1",
         at("invalid cluster \"cluster=redis://:1\", it must be \"redis://HOST:PORT[/DB]\"")),
        ("limit_req_zone $k zone=one:1m rate=100r/s mode=window cluster=redis://h:0",
         at("invalid cluster \"cluster=redis://h:0\", it must be \"redis://HOST:PORT[/DB]\"")),
        ("limit_req_zone $k zone=one:1m rate=100r/s mode=window cluster=redis://h:1/x",
         at("invalid cluster \"cluster=redis://h:1/x\", it must be \"redis://HOST:PORT[/DB]\"")),
        ("limit_req_zone $k zone=one:1m rate=100r/s mode=window cluster=redis://h:1 sync=5ms",
         at("invalid sync \"sync=5ms\", it must be from 10ms to 60s")),
        ("limit_req_zone $k zone=one:1m rate=100r/s mode=window cluster=redis://h:1 sync=2m",
         at("invalid sync \"sync=2m\", it must be from 10ms to 60s")),
        ("limit_req_zone $k zone=one:1m rate=100r/s mode=window cluster=redis://h:1 on_cluster_error=fail",
         at("invalid on_cluster_error \"on_cluster_error=fail\", it must be \"local\", \"allow\" or \"deny\"")),
        ("limit_req_zone $k zone=one:1m rate=100r/s mode=window sync=1s",
         at("\"sync=1s\" requires \"cluster=\"")),
        ("limit_req_zone $k zone=one:1m rate=100r/s mode=window on_cluster_error=deny",
         at("\"on_cluster_error=deny\" requires \"cluster=\"")),
    ];
    for (zone, want) in cases {
        assert_eq!(&build_error(zone), want, "{zone}");
    }
    assert_eq!(parse_sync("100ms"), Some(100));
    assert_eq!(parse_sync("2s"), Some(2000));
    assert_eq!(parse_sync("1"), Some(1000));
    assert_eq!(parse_sync("60s"), Some(60_000));
    assert_eq!(parse_sync("61s"), None);
    assert_eq!(parse_sync("ms"), None);
    assert!(valid_url("redis://127.0.0.1:6379"));
    assert!(valid_url("redis://cache.example:6379/2"));
    assert!(valid_url("redis://localhost"));
    assert!(valid_url("redis://user:secret@cache:6379/0"));
    assert!(valid_url("redis://[::1]:6379"));
    assert!(!valid_url("redis://127.0.0.1:99999"));
    let spec = ClusterSpec {
        url: "redis://user:secret@cache:6379/0".into(),
        sync_ms: 100,
        on_error: OnClusterError::Local,
    };
    assert_eq!(spec.display(), "redis://cache:6379/0");
    assert_eq!(spec.timeout(), std::time::Duration::from_millis(200));
}

#[test]
fn a_cluster_zone_is_parsed_and_a_reload_keeps_its_state_and_thread() {
    for mode in ["window", "leaky"] {
        // A port nothing listens on: the exchanges fail, which is beside
        // the point here.
        let port = waypost_tests::free_port();
        let zone: &'static str = Box::leak(
            format!("limit_req_zone $k zone=c:1m rate=100r/s mode={mode} cluster=redis://127.0.0.1:{port}/3 sync=50ms on_cluster_error=deny")
                .into_boxed_str(),
        );
        let conf = crate::tests::Conf {
            http: vec![zone],
            scopes: vec![vec!["limit_req zone=c"]],
        };
        let first = crate::tests::build(&conf, None).0.expect("valid");
        let c = first.zone("c").expect("zone c");
        assert_eq!(
            c.spec().cluster,
            Some(ClusterSpec {
                url: format!("redis://127.0.0.1:{port}/3"),
                sync_ms: 50,
                on_error: OnClusterError::Deny,
            })
        );
        let second = crate::tests::build(&conf, Some(&first)).0.expect("valid");
        assert!(second.zone("c").expect("c").shares_state_with(c));
        assert!(first.same_sync_thread(&second));
        drop(first);
        // Nothing listens: the zone soon denies.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while second.zone("c").expect("c").cluster_up() {
            assert!(std::time::Instant::now() < deadline, "never failed");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let s = second.scope(0).expect("limited");
        let (answer, _) = crate::tests::request_at_now(s, "k");
        assert_eq!(answer, "reject 429 REJECTED", "{mode}");
    }
}
