//! State a reload carries from the running configuration to the new one.
//!
//! Peer health: a server that failed keeps counting as failed after a
//! reload, so a dead backend is not tried again by the first requests on
//! the new configuration. nginx rebuilds non-zone upstreams from scratch;
//! waypost keeps what it knows for every peer still configured, health
//! check state included.

use crate::upstream::addr::PeerAddr;
use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;

use super::Runtime;
use crate::upstream::Upstream;

/// For each upstream of `new` with the name of one of `old`, copies the
/// failure state (`fails`, `accessed`, `checked`) of every peer whose
/// `server` text and address are the same. A server listed several times
/// pairs its occurrences in order. `conns` is not copied: the requests it
/// counts finish on the old upstream and release there.
///
/// Called before the swap, while `new` serves nothing yet.
pub fn carry_over(old: &Runtime, new: &Runtime) {
    let by_name: HashMap<&str, &Upstream> = old
        .upstreams
        .iter()
        .map(|u| (u.name.as_str(), &**u))
        .collect();
    for up in &new.upstreams {
        if let Some(prev) = by_name.get(up.name.as_str()) {
            carry_peers(prev, up);
        }
    }
}

fn carry_peers(old: &Upstream, new: &Upstream) {
    // (server, address) -> indexes in `old`, in order; taken from the front
    // as `new` peers match them.
    let mut slots: HashMap<(&str, &PeerAddr), Vec<usize>> = HashMap::new();
    for (i, config) in old.configs.iter().enumerate() {
        slots
            .entry((config.server.as_str(), &old.addrs[i]))
            .or_default()
            .push(i);
    }
    for list in slots.values_mut() {
        list.reverse();
    }
    for (i, config) in new.configs.iter().enumerate() {
        let Some(j) = slots
            .get_mut(&(config.server.as_str(), &new.addrs[i]))
            .and_then(Vec::pop)
        else {
            continue;
        };
        let (from, to) = (&old.live[j], &new.live[i]);
        to.fails.store(from.fails.load(Relaxed), Relaxed);
        to.accessed.store(from.accessed.load(Relaxed), Relaxed);
        to.checked.store(from.checked.load(Relaxed), Relaxed);
        let (from, to) = (&old.stats[j], &new.stats[i]);
        to.recovered_ns
            .store(from.recovered_ns.load(Relaxed), Relaxed);
        // Health checks on both sides: the peer keeps its state. A peer
        // checked only now starts as the new block says (up, or down when
        // `mandatory`).
        if old.health.is_some() && new.health.is_some() {
            to.health.store(from.health.load(Relaxed), Relaxed);
        }
    }
    let unhealthy = new
        .stats
        .iter()
        .filter(|s| s.health.load(Relaxed) != 0)
        .count();
    new.unhealthy.store(unhealthy as u32, Relaxed);
}
