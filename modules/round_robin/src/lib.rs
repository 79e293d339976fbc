//! `round_robin`: nginx's smooth weighted round robin, the balancer of every
//! upstream block that names no other (`ngx_http_upstream_round_robin.c`).
//!
//! Anatomy shared by every waypost balancer: directives, init_upstream,
//! init_peer, get, free.

use waypost_module_api::prelude::*;
use waypost_module_api::wrr::SmoothWeights;

/// Directives: none. Round robin is the default and nginx has no directive
/// for it; every `server` parameter is supported.
pub struct RoundRobinModule;

impl Module for RoundRobinModule {
    const NAME: &'static str = "round_robin";
    const DIRECTIVES: &'static [DirectiveSpec] = &[];
    type Upstream = RoundRobin;

    /// init_upstream: per-worker current and effective weights.
    fn init_upstream(config: &UpstreamConfig<'_>) -> Result<RoundRobin, ConfigError> {
        Ok(RoundRobin {
            weights: SmoothWeights::new(config.peers(), config.workers()),
        })
    }
}

/// The upstream object.
pub struct RoundRobin {
    weights: SmoothWeights,
}

impl Balancer for RoundRobin {
    /// Round robin keeps nothing per request: the core's tried bitmap is
    /// all it needs.
    type Request = ();

    /// init_peer
    fn init_peer(&self, _: &Request<'_>, _: &Peers<'_>) -> Result<(), Rejection> {
        Ok(())
    }

    /// get: a step over the primaries, then over the backups.
    fn get(&self, _: &mut (), peers: &Peers<'_>) -> Option<usize> {
        self.weights.pick_with_backup(peers)
    }

    /// free: a failure lowers the peer's effective weight; the core has
    /// already counted it against max_fails.
    fn free(&self, _: &mut (), peers: &Peers<'_>, outcome: &TryOutcome) -> FreeAction {
        self.weights.free(peers, outcome)
    }
}

waypost_module_api::export_module!(RoundRobinModule);

#[cfg(test)]
mod tests {
    use super::*;
    use waypost_module_api::testing::PeerSet;

    fn run(set: &mut PeerSet, rr: &RoundRobin, n: usize) -> Vec<usize> {
        (0..n)
            .map(|_| {
                set.new_request();
                rr.get(&mut (), &set.view()).expect("a peer")
            })
            .collect()
    }

    #[test]
    fn weights_5_1_1_give_nginx_sequence() {
        let mut set = PeerSet::new(&[5, 1, 1]);
        let rr = RoundRobin {
            weights: SmoothWeights::new(set.configs(), 1),
        };
        assert_eq!(
            run(&mut set, &rr, 14),
            [0, 0, 1, 0, 2, 0, 0, 0, 0, 1, 0, 2, 0, 0]
        );
    }

    #[test]
    fn backups_only_when_no_primary_is_eligible() {
        let mut set = PeerSet::new(&[1, 1, 1]);
        set.config_mut(2).backup = true;
        set.config_mut(0).down = true;
        let rr = RoundRobin {
            weights: SmoothWeights::new(set.configs(), 1),
        };
        assert_eq!(run(&mut set, &rr, 3), [1, 1, 1]);
        set.set_failed(1, 1, set.now);
        assert_eq!(run(&mut set, &rr, 2), [2, 2]);
    }
}
