//! `least_conn`: nginx's least connections balancer
//! (`ngx_http_upstream_least_conn_module.c`), loaded from
//! `libwaypost_least_conn.so`.
//!
//! Anatomy shared by every waypost balancer: directives, init_upstream,
//! init_peer, get, free. A request goes to the eligible peer with the
//! fewest tries in flight per unit of weight; when several share that
//! minimum, the smooth weighted round robin step runs over them only. A
//! single-server upstream is round robin's, and failures are accounted as
//! round robin does.

use std::ops::Range;

use waypost_module_api::prelude::*;
use waypost_module_api::wrr::SmoothWeights;

/// Directives: `least_conn;`, a balancing method of an `upstream` block
/// that takes every `server` parameter, `backup` included.
pub struct LeastConnModule;

impl Module for LeastConnModule {
    const NAME: &'static str = "least_conn";
    const DIRECTIVES: &'static [DirectiveSpec] = &[DirectiveSpec::balancer(
        "least_conn",
        0,
        0,
        ServerParams::ALL,
    )];
    type Upstream = LeastConn;

    /// init_upstream: round robin's per-worker weights, which break ties.
    fn init_upstream(config: &UpstreamConfig<'_>) -> Result<LeastConn, ConfigError> {
        Ok(LeastConn::new(config.peers(), config.workers()))
    }
}

/// The upstream object.
pub struct LeastConn {
    weights: SmoothWeights,
}

impl LeastConn {
    /// The balancer for `peers` (primaries first) with `workers` worker
    /// threads.
    pub fn new(peers: &[PeerConfig<'_>], workers: usize) -> LeastConn {
        LeastConn {
            weights: SmoothWeights::new(peers, workers),
        }
    }

    /// One list (primaries or backups), as
    /// `ngx_http_upstream_get_least_conn_peer`: the eligible peer with the
    /// smallest `conns / weight`, compared as
    /// `conns_i * weight_best < conns_best * weight_i` so that the first of
    /// equal ratios stays best; when another peer ties with it, the round
    /// robin step over the tied peers from the best one onward.
    fn pick_in(&self, peers: &Peers<'_>, list: Range<usize>) -> Option<usize> {
        let ratio = |i: usize| (u64::from(peers.conns(i)), u64::from(peers.weight(i)));
        let mut best: Option<(usize, u64, u64)> = None;
        let mut many = false;
        for i in list.clone() {
            if !peers.is_eligible(i) {
                continue;
            }
            let (conns, weight) = ratio(i);
            match best {
                Some((_, best_conns, best_weight)) => {
                    if conns * best_weight < best_conns * weight {
                        best = Some((i, conns, weight));
                        many = false;
                    } else if conns * best_weight == best_conns * weight {
                        many = true;
                    }
                }
                None => best = Some((i, conns, weight)),
            }
        }
        let (first, best_conns, best_weight) = best?;
        if !many {
            // nginx subtracts a total of 0: the weights are left alone.
            return Some(first);
        }
        // Counters move under other workers: the ratio is the one `first`
        // had above, and `first` itself always takes part (nginx's loop
        // starts at it).
        let tied = (first..list.end).filter(|&i| {
            let (conns, weight) = ratio(i);
            i == first || conns * best_weight == best_conns * weight
        });
        Some(self.weights.pick(peers, tied).unwrap_or(first))
    }
}

impl Balancer for LeastConn {
    /// Least connections keeps nothing per request: the core's tried
    /// bitmap and connection counters are all it needs.
    type Request = ();

    /// init_peer
    fn init_peer(&self, _: &Request<'_>, _: &Peers<'_>) -> Result<(), Rejection> {
        Ok(())
    }

    /// get: a single server is round robin's; otherwise the primaries,
    /// then, when none is eligible, the backups.
    fn get(&self, _: &mut (), peers: &Peers<'_>) -> Option<usize> {
        if peers.single() {
            return self.weights.pick_with_backup(peers);
        }
        self.pick_in(peers, 0..peers.primary())
            .or_else(|| self.pick_in(peers, peers.primary()..peers.len()))
    }

    /// free: round robin's; a failure lowers the peer's effective weight
    /// (the core has already counted it against max_fails and released its
    /// connection).
    fn free(&self, _: &mut (), peers: &Peers<'_>, outcome: &TryOutcome) -> FreeAction {
        self.weights.free(peers, outcome)
    }
}

waypost_module_api::export_module!(LeastConnModule);

#[cfg(test)]
mod tests {
    use super::*;
    use waypost_module_api::testing::PeerSet;

    /// `n` new requests, each with the current connection counts.
    fn run(set: &mut PeerSet, lc: &LeastConn, n: usize) -> Vec<usize> {
        (0..n)
            .map(|_| {
                set.new_request();
                lc.get(&mut (), &set.view()).expect("a peer")
            })
            .collect()
    }

    /// Round robin's sequence for `set` from fresh weights.
    fn round_robin(set: &mut PeerSet, n: usize) -> Vec<usize> {
        let rr = SmoothWeights::new(set.configs(), 1);
        (0..n)
            .map(|_| {
                set.new_request();
                rr.pick_with_backup(&set.view()).expect("a peer")
            })
            .collect()
    }

    fn conns(set: &mut PeerSet, conns: &[u32]) {
        for (i, &c) in conns.iter().enumerate() {
            set.set_conns(i, c);
        }
    }

    #[test]
    fn no_connections_is_round_robin() {
        // Every peer ties at 0: the step runs over all of them.
        let mut set = PeerSet::new(&[5, 1, 1]);
        let lc = LeastConn::new(set.configs(), 1);
        assert_eq!(
            run(&mut set, &lc, 14),
            [0, 0, 1, 0, 2, 0, 0, 0, 0, 1, 0, 2, 0, 0]
        );
        let mut set = PeerSet::new(&[3, 1, 2]);
        let lc = LeastConn::new(set.configs(), 1);
        let expected = round_robin(&mut set, 12);
        assert_eq!(run(&mut set, &lc, 12), expected);
        assert_eq!(expected, [0, 2, 0, 1, 2, 0, 0, 2, 0, 1, 2, 0]);
    }

    #[test]
    fn fewest_connections_per_weight_wins() {
        let mut set = PeerSet::new(&[1, 1, 1]);
        let lc = LeastConn::new(set.configs(), 1);
        conns(&mut set, &[2, 1, 3]);
        assert_eq!(run(&mut set, &lc, 3), [1, 1, 1]);
        // Weights divide: 2/3 < 1/1.
        let mut set = PeerSet::new(&[3, 1]);
        let lc = LeastConn::new(set.configs(), 1);
        conns(&mut set, &[2, 1]);
        assert_eq!(run(&mut set, &lc, 3), [0, 0, 0]);
        // 4/3 > 1/1.
        conns(&mut set, &[4, 1]);
        assert_eq!(run(&mut set, &lc, 3), [1, 1, 1]);
    }

    #[test]
    fn a_unique_best_leaves_the_weights_alone() {
        let mut set = PeerSet::new(&[5, 1, 1]);
        let lc = LeastConn::new(set.configs(), 1);
        conns(&mut set, &[1, 0, 3]);
        assert_eq!(run(&mut set, &lc, 4), [1, 1, 1, 1]);
        conns(&mut set, &[0, 0, 0]);
        let fresh = round_robin(&mut set, 7);
        assert_eq!(run(&mut set, &lc, 7), fresh);
    }

    #[test]
    fn ties_run_round_robin_over_the_tied_peers_only() {
        // Peers 1 and 2 tie at 0; peer 0 (1 conn) takes no part, so its
        // current weight stays 0.
        let mut set = PeerSet::new(&[1, 2, 2]);
        let lc = LeastConn::new(set.configs(), 1);
        conns(&mut set, &[1, 0, 0]);
        assert_eq!(run(&mut set, &lc, 4), [1, 2, 1, 2]);
        // Those four steps brought 1 and 2 back to 0: the state is fresh.
        conns(&mut set, &[0, 0, 0]);
        let fresh = round_robin(&mut set, 10);
        assert_eq!(run(&mut set, &lc, 10), fresh);
        assert_eq!(fresh[..5], [1, 2, 0, 1, 2]);
    }

    #[test]
    fn ties_are_weighted_and_start_at_the_first_tied_peer() {
        // 2/2 = 1/1 = 3/3: peers 1, 2, 3 tie; weights 2, 1, 3.
        let mut set = PeerSet::new(&[1, 2, 1, 3]);
        let lc = LeastConn::new(set.configs(), 1);
        conns(&mut set, &[0, 2, 1, 3]);
        // Peer 0 alone has the fewest: no step.
        assert_eq!(run(&mut set, &lc, 2), [0, 0]);
        conns(&mut set, &[5, 2, 1, 3]);
        let picks = run(&mut set, &lc, 12);
        // The round robin of weights 2, 1, 3 over peers 1..=3.
        let mut tied = PeerSet::new(&[2, 1, 3]);
        let expected: Vec<usize> = round_robin(&mut tied, 12).iter().map(|i| i + 1).collect();
        assert_eq!(picks, expected);
        assert_eq!(picks.iter().filter(|&&i| i == 3).count(), 6);
        assert_eq!(picks.iter().filter(|&&i| i == 1).count(), 4);
        assert_eq!(picks.iter().filter(|&&i| i == 2).count(), 2);
    }

    #[test]
    fn unavailable_peers_are_skipped() {
        let mut set = PeerSet::new(&[1, 1, 1, 1]);
        set.config_mut(0).down = true;
        set.config_mut(1).max_conns = 2;
        set.set_failed(2, 1, set.now);
        let lc = LeastConn::new(set.configs(), 1);
        // 0 down, 1 at max_conns, 2 failed: 3 despite its connections.
        conns(&mut set, &[0, 2, 0, 7]);
        assert_eq!(run(&mut set, &lc, 3), [3, 3, 3]);
        // Peers this request tried are skipped too.
        conns(&mut set, &[0, 0, 0, 7]);
        set.new_request();
        set.mark_tried(1);
        assert_eq!(lc.get(&mut (), &set.view()), Some(3));
        set.mark_tried(3);
        assert_eq!(lc.get(&mut (), &set.view()), None);
    }

    #[test]
    fn backups_only_when_no_primary_is_eligible() {
        let mut set = PeerSet::new(&[1, 1, 1, 2]);
        set.config_mut(2).backup = true;
        set.config_mut(3).backup = true;
        let lc = LeastConn::new(set.configs(), 1);
        conns(&mut set, &[9, 9, 0, 0]);
        assert_eq!(run(&mut set, &lc, 2), [0, 1]);
        set.config_mut(0).down = true;
        set.set_failed(1, 1, set.now);
        // Backups 2 and 3 tie: weights 1 and 2.
        assert_eq!(run(&mut set, &lc, 6), [3, 2, 3, 3, 2, 3]);
        // The backup with fewer connections per weight: 1/1 > 1/2.
        conns(&mut set, &[9, 9, 1, 1]);
        assert_eq!(run(&mut set, &lc, 2), [3, 3]);
    }

    #[test]
    fn single_server_is_round_robin() {
        let mut set = PeerSet::new(&[1]);
        let lc = LeastConn::new(set.configs(), 1);
        // Failures do not count against a single server.
        set.set_failed(0, 5, set.now);
        set.set_conns(0, 3);
        assert_eq!(run(&mut set, &lc, 2), [0, 0]);
        set.config_mut(0).down = true;
        set.new_request();
        assert_eq!(lc.get(&mut (), &set.view()), None);
    }

    #[test]
    fn failure_lowers_effective_weight_as_round_robin() {
        // max_fails 1: the failure takes all of peer 0's effective weight.
        let mut set = PeerSet::new(&[3, 1, 2]);
        let lc = LeastConn::new(set.configs(), 1);
        let rr = SmoothWeights::new(set.configs(), 1);
        let failed = TryOutcome {
            peer: 0,
            state: TryState::Failed,
            status: 0,
            elapsed_us: 0,
        };
        assert_eq!(lc.free(&mut (), &set.view(), &failed), FreeAction::Continue);
        rr.failed(&set.view(), 0);
        let ours = run(&mut set, &lc, 12);
        let theirs: Vec<usize> = (0..12)
            .map(|_| rr.pick_with_backup(&set.view()).unwrap())
            .collect();
        assert_eq!(ours, theirs);
        assert_ne!(
            ours,
            round_robin(&mut set, 12),
            "the failure changed nothing"
        );
    }
}
