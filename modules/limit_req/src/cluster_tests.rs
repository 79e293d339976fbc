//! Unit tests of cluster windows without Redis: the per-request decision,
//! the exchange folded into the zones (a fake store that runs the Lua
//! script's steps), several instances on a made-up clock, store failures
//! and restarts, and the configuration.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

use waypost_module_api::Template;

use crate::cluster::*;
use crate::*;

// ---------------------------------------------------------------- helpers

/// A key's window in the fake store: per instance, the most it may have
/// admitted (`max(count, grant)`).
type Window = HashMap<String, u64>;

/// A store shared by the instances of a test: what the script does, in
/// memory (the instance set expires by the wall clock; keys never do here).
#[derive(Default)]
struct FakeStore {
    hashes: HashMap<Vec<u8>, Window>,
    sets: HashMap<Vec<u8>, HashMap<String, u64>>,
    exchanges: usize,
}

impl FakeStore {
    /// A restart without persistence.
    fn flush(&mut self) {
        self.hashes.clear();
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
            let mut k = req.prefix.to_vec();
            k.extend_from_slice(format!("{}:", item.window).as_bytes());
            k.extend_from_slice(req.batch.key(item));
            let h = st.hashes.entry(k).or_default();
            let held: u64 = h
                .iter()
                .filter(|(who, _)| who.as_str() != req.instance)
                .map(|(_, v)| *v)
                .sum();
            let seen = 1 + h.keys().filter(|who| who.as_str() != req.instance).count() as u64;
            let n = seen.max(item.expected);
            let blind = (req.limit / n).max(1);
            let free =
                req.limit as i64 - held as i64 - item.count as i64 - (blind * (n - seen)) as i64;
            let grant = if free > 0 {
                item.count + (free as u64 / seen).max(1)
            } else {
                item.count
            };
            h.insert(req.instance.into(), grant);
            out.push(SyncReply {
                grant: grant as i64,
                others: held as i64,
                peers: seen as i64,
            });
        }
        Ok(instances)
    }
}

const LIMIT: u64 = 100;

fn cluster_zone(on_error: OnClusterError) -> Arc<Zone> {
    Arc::new(Zone::new(
        ZoneSpec {
            name: "c".into(),
            key: "$k".into(),
            size: 1 << 20,
            rate: Rate::per_second(LIMIT),
            mode: Mode::Window,
            cluster: Some(ClusterSpec {
                url: "redis://127.0.0.1:6379".into(),
                sync_ms: 100,
                on_error,
            }),
        },
        Template(0),
    ))
}

/// An instance: its zone and its link, first exchange at `phase` ms.
struct Instance {
    zone: Arc<Zone>,
    link: ZoneLink<FakeLink>,
    logs: Vec<String>,
}

impl Instance {
    fn new(
        id: usize,
        store: &Rc<RefCell<FakeStore>>,
        down: &Rc<RefCell<bool>>,
        on_error: OnClusterError,
        first_due: u64,
    ) -> Instance {
        let zone = cluster_zone(on_error);
        let link = FakeLink {
            store: store.clone(),
            down: down.clone(),
        };
        let mut link = ZoneLink::new(&zone, "redis://127.0.0.1:6379", link);
        link.instance = format!("i{id}");
        link.next_due = first_due;
        Instance {
            zone,
            link,
            logs: Vec::new(),
        }
    }

    fn request(&self, key: &[u8], t: u64) -> bool {
        matches!(self.zone.account(key, t, 0), Outcome::Admitted { .. })
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

/// Three instances (exchanges 100 ms apart, at phases 0, 33 and 66 ms)
/// on one key for `secs` seconds; `load(t, i)` requests reach instance `i`
/// at ms `t`. Returns the requests admitted in each window.
fn simulate(secs: u64, load: impl Fn(u64, usize) -> u64) -> Vec<u64> {
    let store = Rc::new(RefCell::new(FakeStore::default()));
    let down = Rc::new(RefCell::new(false));
    let mut inst: Vec<Instance> = (0..3)
        .map(|i| {
            Instance::new(
                i,
                &store,
                &down,
                OnClusterError::Local,
                T0 - 1000 + 33 * i as u64,
            )
        })
        .collect();
    // A second of exchanges before the load: the instances know each
    // other, as they do from start-up (they exchange, keys or not).
    for t in T0 - 1000..T0 {
        for x in &mut inst {
            x.tick(t);
        }
    }
    let mut per_window = vec![0; secs as usize];
    for t in T0..T0 + secs * 1000 {
        for (i, x) in inst.iter_mut().enumerate() {
            for _ in 0..load(t, i) {
                if x.request(b"k", t) {
                    per_window[((t - T0) / 1000) as usize] += 1;
                }
            }
            x.tick(t);
        }
    }
    per_window
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
    let store = Rc::new(RefCell::new(FakeStore::default()));
    let down = Rc::new(RefCell::new(false));
    let mut a = Instance::new(0, &store, &down, OnClusterError::Local, 0);
    let mut b = Instance::new(1, &store, &down, OnClusterError::Local, 0);
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
    assert_eq!(store.borrow().held(), 98);
    let last_b = (0..40).filter(|_| b.request(b"k", t + 7)).count();
    assert_eq!(last_b, 4);
    assert_eq!(exchange(&mut b, t + 8), Ok(1));
    assert!(store.borrow().held() <= 100);
    // Nothing is exchanged until a request touches a key again.
    let before = store.borrow().exchanges;
    assert_eq!(exchange(&mut b, t + 9), Ok(0));
    assert_eq!(store.borrow().exchanges, before + 1);
}

#[test]
fn a_reply_for_a_window_that_has_passed_is_not_folded() {
    let store = Rc::new(RefCell::new(FakeStore::default()));
    let down = Rc::new(RefCell::new(false));
    let a = Instance::new(0, &store, &down, OnClusterError::Local, 0);
    assert!(a.request(b"k", T0 + 999));
    let mut batch = Batch::default();
    a.zone.collect(&mut batch, 100);
    assert_eq!(batch.len(), 1);
    assert_eq!((batch.items()[0].count, batch.items()[0].expected), (1, 1));
    // The next window starts before the reply.
    assert!(a.request(b"k", T0 + 1000));
    let reply = SyncReply {
        grant: 1,
        others: 100,
        peers: 3,
    };
    a.zone.apply(&batch, &[reply]);
    let s = a.zone.sync_slot(b"k").expect("slot");
    assert_eq!(
        (s.window, s.others, s.pushed, s.grant),
        ((T0 + 1000) / 1000, 0, 0, 100)
    );
}

#[test]
fn a_failed_exchange_puts_its_keys_back_and_a_store_restart_is_repaired() {
    let store = Rc::new(RefCell::new(FakeStore::default()));
    let down = Rc::new(RefCell::new(false));
    let mut a = Instance::new(0, &store, &down, OnClusterError::Local, 0);
    let t = T0 + 100;
    for _ in 0..10 {
        assert!(a.request(b"k", t));
    }
    *down.borrow_mut() = true;
    assert!(exchange(&mut a, t).is_err());
    assert!(!a.zone.cluster_up());
    // The key is still to be exchanged: 10 when the store is back.
    *down.borrow_mut() = false;
    assert_eq!(exchange(&mut a, t + 1), Ok(1));
    assert!(a.zone.cluster_up());
    assert_eq!(a.zone.sync_slot(b"k").map(|s| s.pushed), Some(10));

    // The store restarts empty: a writes what it holds again at its next
    // exchange (absolute, not added), so another instance sees it.
    let mut b = Instance::new(1, &store, &down, OnClusterError::Local, 0);
    exchange(&mut b, t + 2).expect("b");
    exchange(&mut a, t + 2).expect("a");
    assert_eq!(a.zone.cluster_instances(), 2);
    store.borrow_mut().flush();
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
    let store = Rc::new(RefCell::new(FakeStore::default()));
    let down = Rc::new(RefCell::new(true));
    let mut a = Instance::new(0, &store, &down, OnClusterError::Local, 0);
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
    *down.borrow_mut() = false;
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
    for (on_error, want) in [
        (OnClusterError::Local, 100),
        (OnClusterError::Allow, 300),
        (OnClusterError::Deny, 0),
    ] {
        let store = Rc::new(RefCell::new(FakeStore::default()));
        let down = Rc::new(RefCell::new(false));
        let mut a = Instance::new(0, &store, &down, on_error, 0);
        let mut b = Instance::new(1, &store, &down, on_error, 0);
        exchange(&mut a, T0 - 500).expect("a");
        exchange(&mut b, T0 - 500).expect("b");
        *down.borrow_mut() = true;
        assert!(exchange(&mut a, T0 - 100).is_err());
        assert!(!a.zone.cluster_up());
        let admitted = (0..300).filter(|_| a.request(b"k", T0 + 10)).count();
        assert_eq!(admitted, want, "{on_error:?}");
    }
}

// ------------------------------------------------- several instances

#[test]
fn three_instances_share_one_limit_under_heavy_even_load() {
    // Each instance gets a request every ms (1,000 r/s each, 30 times the
    // limit together).
    let windows = simulate(10, |_, _| 1);
    let total: u64 = windows.iter().sum();
    eprintln!("even load: {windows:?}, total {total}");
    for w in &windows {
        assert!((97..=102).contains(w), "{windows:?}");
    }
}

#[test]
fn three_instances_share_one_limit_under_uneven_load() {
    // Instance 0 gets 90% of the traffic.
    let windows = simulate(10, |t, i| match i {
        0 => 1,
        _ => u64::from(matches!(t % 9, 0)),
    });
    let total: u64 = windows.iter().sum();
    eprintln!("uneven load: {windows:?}, total {total}");
    for w in &windows {
        assert!((90..=102).contains(w), "{windows:?}");
    }
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

// ------------------------------------------------------- configuration

fn build_error(zone: &'static str) -> String {
    crate::tests::error(&[zone], &[])
}

#[test]
fn cluster_parameters_and_their_errors() {
    let at = |m: &str| format!("{m} in /t/waypost.conf:1");
    let cases: &[(&str, String)] = &[
        ("limit_req_zone $k zone=one:1m rate=100r/s cluster=redis://127.0.0.1:1",
         at("\"cluster=\" requires \"mode=window\": the leaky bucket is not shared across instances")),
        ("limit_req_zone $k zone=one:1m rate=100r/s mode=leaky cluster=redis://127.0.0.1:1",
         at("\"cluster=\" requires \"mode=window\": the leaky bucket is not shared across instances")),
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
    // A port nothing listens on: the exchanges fail, which is beside the
    // point here.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a port");
    let zone: &'static str = Box::leak(
        format!("limit_req_zone $k zone=c:1m rate=100r/s mode=window cluster=redis://127.0.0.1:{port}/3 sync=50ms on_cluster_error=deny")
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
    assert_eq!(answer, "reject 429 REJECTED");
}
