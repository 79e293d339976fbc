//! `random`: nginx's random balancer (`ngx_http_upstream_random_module.c`),
//! loaded from `libwaypost_random.so`: `random;` draws a peer with
//! probability proportional to its weight; `random two [least_conn];`
//! draws two distinct peers and keeps the one with fewer tries in flight
//! per unit of weight.
//!
//! Anatomy shared by every waypost balancer: directives, init_upstream,
//! init_peer, get, free. As in nginx, a request that met more than 20
//! unusable draws, and an upstream of fewer than two servers, is balanced
//! by round robin, and failures are accounted as round robin does.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use waypost_module_api::prelude::*;
use waypost_module_api::wrr::SmoothWeights;

/// The `server` parameters `random` accepts: all but `backup`.
const PARAMS: ServerParams = ServerParams::ALL.without(ServerParams::BACKUP);

/// Unusable draws a request may make before falling back to round robin
/// (nginx: `tries > 20`).
const MAX_TRIES: u32 = 20;

/// Directives: `random [two [least_conn]];`, a balancing method of an
/// `upstream` block that refuses `backup`.
pub struct RandomModule;

impl Module for RandomModule {
    const NAME: &'static str = "random";
    const DIRECTIVES: &'static [DirectiveSpec] = &[DirectiveSpec::balancer("random", 0, 2, PARAMS)];
    type Upstream = RandomBalancer;

    /// init_upstream: the method, and the cumulative weight ranges of the
    /// primary peers.
    fn init_upstream(config: &UpstreamConfig<'_>) -> Result<RandomBalancer, ConfigError> {
        let directive = config
            .directives()
            .filter(|d| d.name() == "random")
            .last()
            .ok_or_else(|| config.error("no \"random\" directive in upstream"))?;
        let args = directive.args().iter().map(|a| a.as_str());
        let two = parse_args(args).map_err(|message| directive.error(message))?;
        Ok(RandomBalancer::new(
            two,
            config.peers(),
            config.workers(),
            seed(),
        ))
    }
}

/// The arguments of `random`, as nginx reads them: none, `two`, or
/// `two least_conn` (the only method, so `two` alone means it too).
/// Returns whether `two` was given, or nginx's error message.
pub fn parse_args<'a>(mut args: impl Iterator<Item = &'a str>) -> Result<bool, String> {
    let invalid = |a: &str| Err(format!("invalid parameter \"{a}\""));
    match args.next() {
        None => return Ok(false),
        Some("two") => {}
        Some(a) => return invalid(a),
    }
    match args.next() {
        None | Some("least_conn") => Ok(true),
        Some(a) => invalid(a),
    }
}

/// A seed from the clock and a per-process counter: two upstreams (or two
/// loads of one) draw different sequences.
fn seed() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    nanos
        ^ COUNTER
            .fetch_add(1, Ordering::Relaxed)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ u64::from(std::process::id()).rotate_left(32)
}

/// SplitMix64's output function: spreads a seed over all 64 bits.
fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// One worker's xorshift64* state, padded so two workers' states never
/// share a cache line. Only its worker thread steps it.
#[repr(align(64))]
struct RngShard(AtomicU64);

/// Per-worker random numbers, as nginx's `ngx_random()` is per process.
struct Rng {
    shards: Box<[RngShard]>,
}

impl Rng {
    fn new(workers: usize, seed: u64) -> Rng {
        let shards = (0..workers.max(1) as u64)
            .map(|w| {
                // xorshift must not start at 0.
                let s = splitmix64(seed ^ w.wrapping_mul(0xD1B5_4A32_D192_ED03)) | 1;
                RngShard(AtomicU64::new(s))
            })
            .collect();
        Rng { shards }
    }

    /// The next number of `worker`'s xorshift64* sequence.
    fn next(&self, worker: usize) -> u64 {
        let state = &self.shards[worker % self.shards.len()].0;
        let mut x = state.load(Ordering::Relaxed);
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        state.store(x, Ordering::Relaxed);
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

/// The upstream object.
pub struct RandomBalancer {
    /// `random two`: the better of two draws.
    two: bool,
    /// Where each primary peer's weight range starts: peer `i` owns
    /// `ranges[i]..ranges[i] + weight`, `down` peers included.
    ranges: Box<[u32]>,
    /// The sum of the primary weights, `down` ones included.
    total: u32,
    rng: Rng,
    /// Round robin's weights, for the fallback and failure accounting.
    weights: SmoothWeights,
}

impl RandomBalancer {
    /// The balancer for `peers` (primaries first) with `workers` worker
    /// threads, drawing from `seed`.
    pub fn new(two: bool, peers: &[PeerConfig<'_>], workers: usize, seed: u64) -> RandomBalancer {
        let mut total = 0u32;
        let ranges = peers
            .iter()
            .take_while(|p| !p.backup)
            .map(|p| {
                let start = total;
                total = total.saturating_add(p.weight);
                start
            })
            .collect();
        RandomBalancer {
            two,
            ranges,
            total,
            rng: Rng::new(workers, seed),
            weights: SmoothWeights::new(peers, workers),
        }
    }

    /// nginx's round robin, with the backup switch.
    fn round_robin(&self, peers: &Peers<'_>) -> Option<usize> {
        self.weights.pick_with_backup(peers)
    }

    /// Whether the draws give up to round robin before drawing.
    fn fallback(&self, s: &State) -> bool {
        s.tries > MAX_TRIES || self.ranges.len() < 2 || self.total == 0
    }

    /// One draw (`ngx_http_upstream_peek_random_peer`): `x = random %
    /// total`, and the primary whose range holds `x`, by binary search.
    fn peek(&self, peers: &Peers<'_>) -> usize {
        let x = ((self.rng.next(peers.worker()) >> 32) % u64::from(self.total)) as u32;
        let (mut i, mut j) = (0, self.ranges.len());
        while j - i > 1 {
            let k = (i + j) / 2;
            if x < self.ranges[k] {
                j = k;
            } else {
                i = k;
            }
        }
        i
    }

    /// `random;` (`ngx_http_upstream_get_random_peer`): draw until a peer
    /// is eligible.
    fn get_random(&self, s: &mut State, peers: &Peers<'_>) -> Option<usize> {
        if self.fallback(s) {
            return self.round_robin(peers);
        }
        loop {
            let i = self.peek(peers);
            if peers.is_eligible(i) {
                return Some(i);
            }
            s.tries += 1;
            if s.tries > MAX_TRIES {
                return self.round_robin(peers);
            }
        }
    }

    /// `random two;` (`ngx_http_upstream_get_random2_peer`): draw until two
    /// distinct peers are eligible, and keep the second unless it has more
    /// connections per weight than the first. Every draw but the one that
    /// completes the pair counts as a try.
    fn get_random2(&self, s: &mut State, peers: &Peers<'_>) -> Option<usize> {
        if self.fallback(s) {
            return self.round_robin(peers);
        }
        let mut prev: Option<usize> = None;
        loop {
            let i = self.peek(peers);
            if prev != Some(i) && peers.is_eligible(i) {
                let Some(p) = prev else {
                    prev = Some(i);
                    s.tries += 1;
                    if s.tries > MAX_TRIES {
                        return self.round_robin(peers);
                    }
                    continue;
                };
                let (conns, weight) = (u64::from(peers.conns(i)), u64::from(peers.weight(i)));
                let (prev_conns, prev_weight) =
                    (u64::from(peers.conns(p)), u64::from(peers.weight(p)));
                return Some(if conns * prev_weight > prev_conns * weight {
                    p
                } else {
                    i
                });
            }
            s.tries += 1;
            if s.tries > MAX_TRIES {
                return self.round_robin(peers);
            }
        }
    }
}

/// Per-request state, kept across the request's retries.
pub struct State {
    /// Unusable draws so far.
    tries: u32,
}

impl Balancer for RandomBalancer {
    type Request = State;

    /// init_peer: no draw made yet.
    fn init_peer(&self, _: &Request<'_>, _: &Peers<'_>) -> Result<State, Rejection> {
        Ok(State { tries: 0 })
    }

    /// get: the method's draws, or round robin when they give up.
    fn get(&self, state: &mut State, peers: &Peers<'_>) -> Option<usize> {
        if self.two {
            self.get_random2(state, peers)
        } else {
            self.get_random(state, peers)
        }
    }

    /// free: round robin's; a failure lowers the peer's effective weight
    /// (the core has already counted it against max_fails).
    fn free(&self, _: &mut State, peers: &Peers<'_>, outcome: &TryOutcome) -> FreeAction {
        self.weights.free(peers, outcome)
    }
}

waypost_module_api::export_module!(RandomModule);

#[cfg(test)]
mod tests {
    use super::*;
    use waypost_module_api::testing::PeerSet;

    const SEED: u64 = 0x5EED;

    /// The peer chosen for each of `n` new requests.
    fn picks(b: &RandomBalancer, set: &mut PeerSet, n: usize) -> Vec<usize> {
        (0..n)
            .map(|_| {
                set.new_request();
                let mut state = State { tries: 0 };
                b.get(&mut state, &set.view()).expect("a peer")
            })
            .collect()
    }

    fn counts(picks: &[usize], peers: usize) -> Vec<usize> {
        let mut c = vec![0; peers];
        for &p in picks {
            c[p] += 1;
        }
        c
    }

    /// Each peer's share of `picks` is within 0.02 of `weight / total`:
    /// over 10,000 draws that is more than 4 standard deviations.
    fn assert_shares(picks: &[usize], weights: &[u32]) {
        let total: u32 = weights.iter().sum();
        let c = counts(picks, weights.len());
        for (i, (&n, &w)) in c.iter().zip(weights).enumerate() {
            let share = n as f64 / picks.len() as f64;
            let expected = f64::from(w) / f64::from(total);
            assert!(
                (share - expected).abs() < 0.02,
                "peer {i}: share {share:.3}, expected {expected:.3} ({c:?})"
            );
        }
    }

    #[test]
    fn arguments_as_nginx() {
        let parse = |args: &[&str]| parse_args(args.iter().copied());
        assert_eq!(parse(&[]), Ok(false));
        assert_eq!(parse(&["two"]), Ok(true));
        assert_eq!(parse(&["two", "least_conn"]), Ok(true));
        assert_eq!(
            parse(&["least_conn"]),
            Err("invalid parameter \"least_conn\"".into())
        );
        assert_eq!(parse(&["TWO"]), Err("invalid parameter \"TWO\"".into()));
        assert_eq!(
            parse(&["two", "fewest"]),
            Err("invalid parameter \"fewest\"".into())
        );
    }

    #[test]
    fn ranges_cover_the_primary_weights() {
        let mut set = PeerSet::new(&[2, 1, 3, 4]);
        set.config_mut(3).backup = true;
        let b = RandomBalancer::new(false, set.configs(), 1, SEED);
        assert_eq!(&*b.ranges, [0, 2, 3]);
        assert_eq!(b.total, 6);
        // Every draw lands on the peer whose range holds it.
        let c = counts(
            &(0..600).map(|_| b.peek(&set.view())).collect::<Vec<_>>(),
            3,
        );
        assert!(c.iter().all(|&n| n > 0), "{c:?}");
    }

    #[test]
    fn draws_are_proportional_to_weights() {
        let weights = [1, 2, 3, 4];
        let mut set = PeerSet::new(&weights);
        let b = RandomBalancer::new(false, set.configs(), 1, SEED);
        assert_shares(&picks(&b, &mut set, 10_000), &weights);
        let mut set = PeerSet::new(&[1, 1]);
        let b = RandomBalancer::new(false, set.configs(), 1, SEED);
        assert_shares(&picks(&b, &mut set, 10_000), &[1, 1]);
    }

    #[test]
    fn workers_draw_different_sequences() {
        let set = PeerSet::new(&[1; 16]);
        let rng = Rng::new(2, SEED);
        let a: Vec<u64> = (0..8).map(|_| rng.next(0)).collect();
        let b: Vec<u64> = (0..8).map(|_| rng.next(1)).collect();
        assert_ne!(a, b);
        let other = RandomBalancer::new(false, set.configs(), 1, SEED + 1);
        let same = RandomBalancer::new(false, set.configs(), 1, SEED);
        let first = RandomBalancer::new(false, set.configs(), 1, SEED);
        let seq = |b: &RandomBalancer| (0..32).map(|_| b.peek(&set.view())).collect::<Vec<_>>();
        assert_eq!(seq(&same), seq(&first));
        assert_ne!(seq(&same), seq(&other));
    }

    #[test]
    fn unavailable_peers_are_never_chosen() {
        let weights = [1, 5, 2, 2, 1];
        let mut set = PeerSet::new(&weights);
        set.config_mut(1).down = true;
        set.set_failed(3, 1, set.now);
        set.config_mut(4).max_conns = 1;
        set.set_conns(4, 1);
        for two in [false, true] {
            let b = RandomBalancer::new(two, set.configs(), 1, SEED);
            let c = counts(&picks(&b, &mut set, 10_000), weights.len());
            assert_eq!((c[1], c[3], c[4]), (0, 0, 0), "two: {two}: {c:?}");
            assert!(c[0] > 0 && c[2] > 0, "two: {two}: {c:?}");
        }
        // Without `two`, the live peers keep their weights' proportion.
        let b = RandomBalancer::new(false, set.configs(), 1, SEED);
        let c = counts(&picks(&b, &mut set, 9_000), weights.len());
        assert!((2_700..3_300).contains(&c[0]), "{c:?}");
    }

    #[test]
    fn tried_peers_are_skipped_and_none_when_all_were() {
        let mut set = PeerSet::new(&[1, 1, 1]);
        for two in [false, true] {
            let b = RandomBalancer::new(two, set.configs(), 1, SEED);
            set.new_request();
            let mut state = State { tries: 0 };
            let mut seen = Vec::new();
            while let Some(p) = b.get(&mut state, &set.view()) {
                assert!(!seen.contains(&p), "{p} chosen twice: {seen:?}");
                seen.push(p);
                set.mark_tried(p);
            }
            seen.sort_unstable();
            assert_eq!(seen, [0, 1, 2]);
        }
    }

    #[test]
    fn two_prefers_fewer_connections_per_weight() {
        // Of any two of three peers, the idle one; between two idle ones,
        // the second draw.
        let mut set = PeerSet::new(&[1, 1, 1]);
        set.set_conns(0, 5);
        let b = RandomBalancer::new(true, set.configs(), 1, SEED);
        let c = counts(&picks(&b, &mut set, 3_000), 3);
        assert_eq!(c[0], 0, "{c:?}");
        assert!(c[1] > 1_000 && c[2] > 1_000, "{c:?}");
        // Two peers: both are drawn (unless 20 draws in a row hit the
        // first one's peer, then round robin decides: 4/7 to the 20th
        // power, 1.4e-5), so the lighter one wins: equal connections, 3
        // per weight 4 beats 3 per weight 3.
        let mut set = PeerSet::new(&[3, 4]);
        set.set_conns(0, 3);
        set.set_conns(1, 3);
        let b = RandomBalancer::new(true, set.configs(), 1, SEED);
        assert_eq!(counts(&picks(&b, &mut set, 1_000), 2), [0, 1_000]);
        // Plain random ignores connections.
        let b = RandomBalancer::new(false, set.configs(), 1, SEED);
        assert_shares(&picks(&b, &mut set, 10_000), &[3, 4]);
    }

    #[test]
    fn two_with_equal_load_keeps_the_second_draw() {
        // Equal connections per weight: the second of two distinct draws
        // wins. It is drawn among the peers other than the first, so its
        // share is sum over i != j of p_i * p_j / (1 - p_i): with weights
        // 1, 2, 3 that is 1/4, 2/5 and 7/20, not 1/6, 2/6 and 3/6.
        let weights = [1, 2, 3];
        let mut set = PeerSet::new(&weights);
        let b = RandomBalancer::new(true, set.configs(), 1, SEED);
        let c = counts(&picks(&b, &mut set, 10_000), 3);
        for (i, expected) in [0.25, 0.4, 0.35].into_iter().enumerate() {
            let share = c[i] as f64 / 10_000.0;
            assert!((share - expected).abs() < 0.02, "{c:?}");
        }
    }

    #[test]
    fn after_twenty_unusable_draws_round_robin_takes_over() {
        // Peer 0 holds nearly all the weight but is down.
        let mut set = PeerSet::new(&[1_000_000, 1]);
        set.config_mut(0).down = true;
        for two in [false, true] {
            let b = RandomBalancer::new(two, set.configs(), 1, SEED);
            set.new_request();
            let mut state = State { tries: 0 };
            assert_eq!(b.get(&mut state, &set.view()), Some(1));
            assert_eq!(state.tries, MAX_TRIES + 1, "two: {two}");
            set.mark_tried(1);
            assert_eq!(b.get(&mut state, &set.view()), None);
        }
    }

    #[test]
    fn one_server_is_round_robin() {
        let mut set = PeerSet::new(&[3]);
        let b = RandomBalancer::new(true, set.configs(), 1, SEED);
        assert_eq!(picks(&b, &mut set, 3), [0, 0, 0]);
        set.config_mut(0).down = true;
        let b = RandomBalancer::new(false, set.configs(), 1, SEED);
        set.new_request();
        assert_eq!(b.get(&mut State { tries: 0 }, &set.view()), None);
    }

    #[test]
    fn failure_lowers_effective_weight_as_round_robin() {
        // The round robin fallback sees the lowered weight.
        let mut set = PeerSet::new(&[3, 1, 2]);
        set.config_mut(0).max_fails = 3;
        let b = RandomBalancer::new(false, set.configs(), 1, SEED);
        let rr = SmoothWeights::new(set.configs(), 1);
        let failed = TryOutcome {
            peer: 0,
            state: TryState::Failed,
            status: 0,
            elapsed_us: 0,
        };
        let mut state = State {
            tries: MAX_TRIES + 1,
        };
        assert_eq!(
            b.free(&mut state, &set.view(), &failed),
            FreeAction::Continue
        );
        rr.failed(&set.view(), 0);
        for _ in 0..12 {
            set.new_request();
            let view = set.view();
            assert_eq!(b.get(&mut state, &view), rr.pick_with_backup(&view));
        }
    }

    #[test]
    fn state_fits_inline() {
        assert!(std::mem::size_of::<State>() <= 64);
    }
}
