//! `p2c_ewma`: the power of two choices over a peak-EWMA latency estimate,
//! as Finagle's, Linkerd's and tower's `PeakEwma`, loaded from
//! `libwaypost_p2c_ewma.so`. nginx OSS has no equivalent.
//!
//! Anatomy shared by every waypost balancer: directives, init_upstream,
//! init_peer, get, free. `get` draws two eligible peers at random and takes
//! the cheaper, cost = latency estimate × (tries in flight + 1); `free`
//! feeds the try's time into its peer's estimate. The estimates live in the
//! peers' slots, shared by every worker; nothing is kept per request.

use std::ops::Range;
use std::sync::atomic::Ordering::Relaxed;

use waypost_module_api::prelude::*;
use waypost_module_api::sdk;

/// `weight` is refused rather than ignored: the choice compares latencies,
/// it does not share requests out.
const PARAMS: ServerParams = ServerParams::ALL.without(ServerParams::WEIGHT);

/// A failed try weighs as an answer after at least this many µs, so that a
/// peer that fails fast (connection refused) does not look fast.
const FAILURE_US: f64 = 1_000_000.0;

/// The longest `decay` or `default_rtt` (1 day, in ms): far beyond any use,
/// and well inside the 32-bit millisecond stamps of the slots.
const MAX_MS: u64 = 86_400_000;

/// Directives: `p2c_ewma [decay=TIME] [default_rtt=TIME];`, a balancing
/// method of an `upstream` block.
pub struct P2cEwmaModule;

impl Module for P2cEwmaModule {
    const NAME: &'static str = "p2c_ewma";
    const DIRECTIVES: &'static [DirectiveSpec] =
        &[DirectiveSpec::balancer("p2c_ewma", 0, 2, PARAMS)];
    type Upstream = P2cEwma;

    /// init_upstream: the two times, and the probe counter.
    fn init_upstream(config: &UpstreamConfig<'_>) -> Result<P2cEwma, ConfigError> {
        let (mut decay_ms, mut default_rtt_ms) = (10_000, 1);
        for d in config.directives() {
            for arg in d.args().iter().map(|a| a.as_str()) {
                // As nginx's `server` parameters: an unknown name and a bad
                // value are both an "invalid parameter".
                let invalid = || d.error(format!("invalid parameter \"{arg}\""));
                let (target, value) = if let Some(v) = arg.strip_prefix("decay=") {
                    (&mut decay_ms, v)
                } else if let Some(v) = arg.strip_prefix("default_rtt=") {
                    (&mut default_rtt_ms, v)
                } else {
                    return Err(invalid());
                };
                *target = parse_ms(value)
                    .filter(|ms| (1..=MAX_MS).contains(ms))
                    .ok_or_else(invalid)?;
            }
        }
        Ok(P2cEwma {
            decay_ms: decay_ms as u32,
            default_rtt_us: default_rtt_ms as f64 * 1000.0,
            probes: config.counter(
                "p2c_ewma_probes",
                "Tries sent to a peer with no latency sample younger than decay, to measure it.",
            )?,
        })
    }
}

/// nginx's time syntax in ms (`ngx_parse_time`, msec mode): `500ms`, `10s`,
/// `1m30s`, `2h`, `1d`, `1w`; a bare number is seconds; units in decreasing
/// order.
pub fn parse_ms(text: &str) -> Option<u64> {
    const UNITS: [(&str, u64); 6] = [
        ("w", 604_800_000),
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("ms", 1),
        ("m", 60_000),
        ("s", 1_000),
    ];
    let (mut rest, mut total, mut last) = (text, 0u64, u64::MAX);
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let n: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        // `ms` is listed before `m` so that it matches first; a bare
        // number (the end of the text) is seconds.
        let (unit, scale) = match UNITS.iter().find(|(u, _)| rest.starts_with(u)) {
            Some(&(u, scale)) => (u, scale),
            None if rest.is_empty() => ("", 1_000),
            None => return None,
        };
        if scale >= last {
            return None;
        }
        (rest, last) = (&rest[unit.len()..], scale);
        total = total.checked_add(n.checked_mul(scale)?)?;
    }
    (!text.is_empty()).then_some(total)
}

/// The module clock: ms on the core's monotonic clock, in 32 bits (it
/// wraps every 49 days; only differences are used, see [`age_ms`]).
fn clock_ms() -> u32 {
    (sdk::now_ns() / 1_000_000) as u32
}

/// Ms from `at` to `now`. A stamp up to a minute ahead of `now` counts as 0
/// ms old: another worker wrote it after this one read the clock.
fn age_ms(now: u32, at: u32) -> u32 {
    let age = now.wrapping_sub(at);
    if age > u32::MAX - 60_000 {
        0
    } else {
        age
    }
}

/// A peer's slot: its estimate in µs as `f32` bits (high half; 24 bits of
/// precision are plenty for a latency) and the ms of its last sample on the
/// module clock (low half). An estimate is at least 1 µs, so 0 means no
/// sample yet.
fn pack(est_us: f64, at_ms: u32) -> u64 {
    (u64::from((est_us.max(1.0) as f32).to_bits()) << 32) | u64::from(at_ms)
}

fn unpack(word: u64) -> (f64, u32) {
    (f64::from(f32::from_bits((word >> 32) as u32)), word as u32)
}

/// The upstream object.
pub struct P2cEwma {
    decay_ms: u32,
    default_rtt_us: f64,
    /// Tries sent to a peer as a probe (see [`P2cEwma::cost`]).
    probes: Counter,
}

impl P2cEwma {
    /// `exp(-age / decay)`: the weight left to a sample `age` ms old.
    fn decay(&self, age: u32) -> f64 {
        (-f64::from(age) / f64::from(self.decay_ms)).exp()
    }

    /// The cost of peer `i` at `now`, and whether choosing it is a probe.
    /// With a sample no older than `decay`: the estimate decayed toward 0
    /// as tower's, × (tries in flight + 1). Without one (never sampled, or
    /// not chosen for a whole decay period): `default_rtt` for each try in
    /// flight only, so an idle such peer costs 0 and the next request that
    /// draws it measures it. A peer that was slow once is therefore tried
    /// again about once per decay period rather than starving behind peers
    /// faster than `default_rtt`, and a burst still does not pile onto a
    /// peer nobody has measured.
    pub fn cost(&self, peers: &Peers<'_>, i: usize, now: u32) -> (f64, bool) {
        let conns = f64::from(peers.conns(i));
        let word = peers.slot(i).load(Relaxed);
        let (est, at) = unpack(word);
        let age = age_ms(now, at);
        if word == 0 || age > self.decay_ms {
            return (self.default_rtt_us * conns, true);
        }
        (est * self.decay(age) * (conns + 1.0), false)
    }

    /// One list (primaries or backups): two distinct eligible peers drawn
    /// with `random`, the cheaper one (the first drawn on a tie, so that
    /// equal peers share evenly); the only one if there is one.
    fn pick_in(
        &self,
        peers: &Peers<'_>,
        list: Range<usize>,
        now: u32,
        random: u64,
    ) -> Option<(usize, bool)> {
        let n = list.clone().filter(|&i| peers.is_eligible(i)).count() as u64;
        // Multiply-shift maps 32 random bits onto 0..n without a division.
        let a = ((random >> 32) * n) >> 32;
        let b = ((random & 0xffff_ffff) * n.saturating_sub(1)) >> 32;
        let b = if b >= a { b + 1 } else { b };
        let (mut first, mut second, mut any) = (None, None, None);
        for (k, i) in (0u64..).zip(list.filter(|&i| peers.is_eligible(i))) {
            any.get_or_insert(i);
            if k == a {
                first = Some(i);
            } else if k == b {
                second = Some(i);
            }
        }
        // Other workers move the counters (max_conns) between the passes:
        // a drawn peer may have gone; then the other one, or any left.
        let (x, y) = match (first, second) {
            (Some(x), Some(y)) => (x, y),
            (x, y) => {
                let i = x.or(y).or(any)?;
                return Some((i, self.cost(peers, i, now).1));
            }
        };
        let ((cost_x, probe_x), (cost_y, probe_y)) =
            (self.cost(peers, x, now), self.cost(peers, y, now));
        Some(if cost_y < cost_x {
            (y, probe_y)
        } else {
            (x, probe_x)
        })
    }

    /// get's choice at `now` with `random`: among the primaries, else among
    /// the backups; whether it is a probe.
    pub fn pick(&self, peers: &Peers<'_>, now: u32, random: u64) -> Option<(usize, bool)> {
        self.pick_in(peers, 0..peers.primary(), now, random)
            .or_else(|| self.pick_in(peers, peers.primary()..peers.len(), now, random))
    }

    /// free's update of the tried peer's estimate at `now`. A response is a
    /// sample: above the decayed estimate it replaces it (the peak), else
    /// the estimate moves from its decayed value toward it by `1 - d`, d
    /// the weight left after the time since the last sample (tower weighs
    /// by the time since its last pick, when it also decays the estimate;
    /// this module writes only here). A failed try is a sample of at least
    /// [`FAILURE_US`] and never lowers the estimate: a peer answering
    /// errors at once must not attract the traffic (the core also counts
    /// it against max_fails).
    pub fn observe(&self, peers: &Peers<'_>, outcome: &TryOutcome, now: u32) {
        let i = outcome.peer as usize;
        if i >= peers.len() {
            return;
        }
        let slot = peers.slot(i);
        let word = slot.load(Relaxed);
        let (est, at) = if word == 0 { (0.0, now) } else { unpack(word) };
        let d = self.decay(age_ms(now, at));
        let (cur, rtt) = (est * d, outcome.elapsed_us.max(1) as f64);
        let next = if outcome.state == TryState::Failed {
            cur.max(rtt).max(FAILURE_US)
        } else if outcome.status == 0 {
            return; // no answer and no failure: nothing was measured
        } else if rtt > cur {
            rtt
        } else {
            cur * d + rtt * (1.0 - d)
        };
        // A plain load and store, not a compare-exchange loop: two workers
        // finishing tries on one peer at the same moment may lose one of
        // the samples, which an estimate of recent latency can spare.
        slot.store(pack(next, now), Relaxed);
    }
}

impl Balancer for P2cEwma {
    /// Nothing per request: the core's tried bitmap and counters and the
    /// slots are all it needs.
    type Request = ();

    /// init_peer
    fn init_peer(&self, _: &Request<'_>, _: &Peers<'_>) -> Result<(), Rejection> {
        Ok(())
    }

    /// get: the cheaper of two random eligible peers, primaries first.
    fn get(&self, _: &mut (), peers: &Peers<'_>) -> Option<usize> {
        let (i, probe) = self.pick(peers, clock_ms(), sdk::random())?;
        if probe {
            self.probes.inc();
        }
        Some(i)
    }

    /// free: the sample; retries are the core's (proxy_next_upstream).
    fn free(&self, _: &mut (), peers: &Peers<'_>, outcome: &TryOutcome) -> FreeAction {
        self.observe(peers, outcome, clock_ms());
        FreeAction::Continue
    }
}

waypost_module_api::export_module!(P2cEwmaModule);

#[cfg(test)]
mod tests {
    use super::*;
    use waypost_module_api::abi_stable::std_types::{RSlice, RStr};
    use waypost_module_api::testing::PeerSet;
    use waypost_module_api::{DirectiveArgs, UpstreamConfig};

    /// `p2c_ewma ARGS;` at test.conf:7 over `set`.
    fn build(set: &PeerSet, args: &[&'static str]) -> Result<P2cEwma, ConfigError> {
        let args: Vec<RStr<'static>> = args.iter().map(|a| RStr::from_str(a)).collect();
        let directive = DirectiveArgs {
            name: RStr::from_str("p2c_ewma"),
            args: RSlice::from_slice(&args),
            file: RStr::from_str("test.conf"),
            line: 7,
        };
        set.with_args(&[directive], |a| {
            P2cEwmaModule::init_upstream(&UpstreamConfig::new(a))
        })
    }

    fn p2c(set: &PeerSet) -> P2cEwma {
        build(set, &[]).expect("defaults")
    }

    /// A response from peer `i` after `rtt_us`, observed at `now`.
    fn answer(b: &P2cEwma, set: &PeerSet, i: u32, rtt_us: u64, now: u32) {
        let outcome = TryOutcome {
            peer: i,
            state: TryState::Ok,
            status: 200,
            elapsed_us: rtt_us,
        };
        set.with_peers(|peers| b.observe(peers, &outcome, now));
    }

    fn pick(b: &P2cEwma, set: &PeerSet, now: u32, random: u64) -> Option<usize> {
        set.with_peers(|peers| b.pick(peers, now, random).map(|(i, _)| i))
    }

    fn cost(b: &P2cEwma, set: &PeerSet, i: usize, now: u32) -> (f64, bool) {
        set.with_peers(|peers| b.cost(peers, i, now))
    }

    /// Random words that draw every order of a pair.
    const DRAWS: [u64; 4] = [0, u64::MAX, 0x8000_0000_0000_0000, 0x0000_0000_ffff_ffff];

    #[test]
    fn times_and_parameters() {
        for (text, ms) in [
            ("500ms", 500),
            ("10s", 10_000),
            ("10", 10_000),
            ("1m30s", 90_000),
        ] {
            assert_eq!(parse_ms(text), Some(ms), "{text}");
        }
        for text in [
            "",
            "ms",
            "5x",
            "1s1m",
            "1s 2",
            "-1s",
            "99999999999999999999d",
        ] {
            assert_eq!(parse_ms(text), None, "{text}");
        }
        let set = PeerSet::new(&[1, 1]);
        let b = build(&set, &["default_rtt=5ms", "decay=1m"]).expect("valid");
        assert_eq!((b.decay_ms, b.default_rtt_us), (60_000, 5_000.0));
        let b = p2c(&set);
        assert_eq!((b.decay_ms, b.default_rtt_us), (10_000, 1_000.0));
        for bad in ["foo", "decay", "decay=0", "decay=abc", "default_rtt=2d"] {
            let e = build(&set, &[bad]).err().expect("refused");
            assert_eq!(e.message.as_str(), format!("invalid parameter \"{bad}\""));
            assert_eq!((e.file.as_str(), e.line), ("test.conf", 7));
        }
    }

    #[test]
    fn the_cheaper_of_two_wins_and_pending_tries_count() {
        let set = PeerSet::new(&[1, 1]);
        let b = p2c(&set);
        answer(&b, &set, 0, 5_000, 100);
        answer(&b, &set, 1, 1_000, 100);
        for r in DRAWS {
            assert_eq!(pick(&b, &set, 100, r), Some(1));
        }
        // Equal estimates: two tries in flight on peer 1 make it dearer.
        let mut set = PeerSet::new(&[1, 1]);
        answer(&b, &set, 0, 1_000, 100);
        answer(&b, &set, 1, 1_000, 100);
        set.set_conns(1, 2);
        assert_eq!(cost(&b, &set, 1, 100), (3_000.0, false));
        for r in DRAWS {
            assert_eq!(pick(&b, &set, 100, r), Some(0));
        }
    }

    #[test]
    fn an_unsampled_peer_is_probed_then_costs_default_rtt_per_try() {
        let mut set = PeerSet::new(&[1, 1, 1]);
        let b = p2c(&set);
        answer(&b, &set, 1, 500, 0);
        answer(&b, &set, 2, 2_000, 0);
        // Idle and never measured: 0, whatever the others cost.
        assert_eq!(cost(&b, &set, 0, 0), (0.0, true));
        set.mark_tried(2);
        assert_eq!(set.with_peers(|p| b.pick(p, 0, 0)), Some((0, true)));
        // One try in flight: default_rtt (1 ms), between 0.5 ms and 2 ms.
        set.set_conns(0, 1);
        assert_eq!(cost(&b, &set, 0, 0), (1_000.0, true));
        assert_eq!(pick(&b, &set, 0, 0), Some(1));
        set.new_request();
        set.mark_tried(1);
        assert_eq!(pick(&b, &set, 0, 0), Some(0));
    }

    #[test]
    fn a_sample_older_than_decay_counts_as_none() {
        let set = PeerSet::new(&[1, 1]);
        let b = p2c(&set);
        answer(&b, &set, 0, 50_000, 0);
        answer(&b, &set, 1, 1_000, 10_001);
        // At exactly `decay` the estimate is e^-1 of the sample, and dearer.
        let (c, probe) = cost(&b, &set, 0, 10_000);
        assert!((c - 50_000.0 / std::f64::consts::E).abs() < 1.0 && !probe);
        assert_eq!(pick(&b, &set, 10_000, 0), Some(1));
        // A ms later it is stale: measured again by the next request.
        assert_eq!(cost(&b, &set, 0, 10_001), (0.0, true));
        for r in DRAWS {
            assert_eq!(pick(&b, &set, 10_001, r), Some(0));
        }
    }

    #[test]
    fn the_estimate_decays_toward_zero() {
        let set = PeerSet::new(&[1, 1]);
        let b = p2c(&set);
        answer(&b, &set, 0, 5_000, 0);
        let c = |now| cost(&b, &set, 0, now).0;
        assert_eq!(c(0), 5_000.0);
        assert!((c(5_000) - 5_000.0 * (-0.5f64).exp()).abs() < 0.01);
        // Peer 1 answered in 4 ms at each pick: 5 ms decays below it after
        // 10 s × ln(5/4) ≈ 2.2 s.
        for (now, expected) in [(1_000, 1), (3_000, 0)] {
            answer(&b, &set, 1, 4_000, now);
            assert_eq!(pick(&b, &set, now, 0), Some(expected), "at {now} ms");
        }
        // A lower sample moves the decayed estimate toward it by 1 - d.
        answer(&b, &set, 0, 1_000, 10_000);
        let d = (-1.0f64).exp();
        assert!((c(10_000) - (5_000.0 * d * d + 1_000.0 * (1.0 - d))).abs() < 0.01);
    }

    #[test]
    fn a_higher_sample_replaces_the_estimate_at_once() {
        let set = PeerSet::new(&[1]);
        let b = p2c(&set);
        answer(&b, &set, 0, 1_000, 0);
        answer(&b, &set, 0, 10_000, 1);
        assert_eq!(cost(&b, &set, 0, 1), (10_000.0, false));
        // A fast answer 100 ms later barely lowers it (d = e^-0.01).
        answer(&b, &set, 0, 1_000, 101);
        let c = cost(&b, &set, 0, 101).0;
        assert!(c > 9_700.0 && c < 10_000.0, "{c}");
    }

    #[test]
    fn a_failure_weighs_as_a_slow_answer_and_continues() {
        let set = PeerSet::new(&[1, 1]);
        let b = p2c(&set);
        answer(&b, &set, 0, 200, 0);
        answer(&b, &set, 1, 2_000, 0);
        let failed = TryOutcome {
            peer: 0,
            state: TryState::Failed,
            status: 0,
            elapsed_us: 30,
        };
        set.with_peers(|peers| b.observe(peers, &failed, 0));
        assert_eq!(cost(&b, &set, 0, 0), (FAILURE_US, false));
        assert_eq!(pick(&b, &set, 0, 0), Some(1));
        // The hook leaves the retry to the core.
        let other = PeerSet::new(&[1, 1]);
        let action = other.with_peers(|peers| b.free(&mut (), peers, &failed));
        assert_eq!(action, FreeAction::Continue);
        assert_ne!(other.stats(0).slot.load(Relaxed), 0);
    }

    #[test]
    fn equal_peers_share_evenly() {
        let mut set = PeerSet::new(&[1, 1, 1]);
        let b = p2c(&set);
        for i in 0..3 {
            answer(&b, &set, i, 1_000, 0);
        }
        let mut counts = [0u32; 3];
        for _ in 0..30_000 {
            set.new_request();
            counts[pick(&b, &set, 0, sdk::random()).expect("a peer")] += 1;
        }
        assert!(counts.iter().all(|&n| n >= 9_000), "{counts:?}");
    }

    #[test]
    fn backups_only_when_no_primary_is_eligible() {
        let mut set = PeerSet::new(&[1, 1, 1]);
        set.config_mut(2).backup = true;
        set.config_mut(0).down = true;
        let b = p2c(&set);
        answer(&b, &set, 1, 90_000, 0);
        // The unsampled backup would cost 0: the slow primary still wins.
        for r in DRAWS {
            assert_eq!(pick(&b, &set, 0, r), Some(1));
        }
        set.set_failed(1, 1, set.now);
        assert_eq!(pick(&b, &set, 0, 0), Some(2));
        set.config_mut(2).down = true;
        assert_eq!(pick(&b, &set, 0, 0), None);
    }

    #[test]
    fn tried_peers_are_skipped() {
        let mut set = PeerSet::new(&[1, 1, 1]);
        let b = p2c(&set);
        for (i, rtt) in [(0, 1_000), (1, 2_000), (2, 3_000)] {
            answer(&b, &set, i, rtt, 0);
        }
        set.mark_tried(0);
        for r in DRAWS {
            assert_eq!(pick(&b, &set, 0, r), Some(1));
        }
        set.mark_tried(1);
        assert_eq!(pick(&b, &set, 0, 0), Some(2));
        set.mark_tried(2);
        assert_eq!(pick(&b, &set, 0, 0), None);
    }
}
