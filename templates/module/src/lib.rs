//! The module of docs/writing-a-module.md: every request goes to the first
//! peer that is up, with no retry. A starting point for your own.

use waypost_module_api::prelude::*;

/// The module: its directive and how it builds an upstream object.
pub struct FirstUpModule;

impl Module for FirstUpModule {
    const NAME: &'static str = "first_up";
    // `first_up;` in an upstream block selects this balancer; it accepts
    // every `server` parameter.
    const DIRECTIVES: &'static [DirectiveSpec] =
        &[DirectiveSpec::balancer("first_up", 0, 0, ServerParams::ALL)];
    type Upstream = FirstUp;

    fn init_upstream(config: &UpstreamConfig<'_>) -> Result<FirstUp, ConfigError> {
        if config.peers().len() > 64 {
            return Err(config.error("first_up takes at most 64 servers"));
        }
        Ok(FirstUp)
    }
}

/// The upstream object: one per `upstream {}` block, shared by all
/// worker threads.
pub struct FirstUp;

impl Balancer for FirstUp {
    /// Per-request state; up to 64 bytes it costs no allocation.
    type Request = ();

    fn init_peer(&self, _: &Request<'_>, _: &Peers<'_>) -> Result<(), Rejection> {
        Ok(())
    }

    /// `is_eligible` applies nginx's rules: not down, not failed within
    /// fail_timeout, not at max_conns, not already tried by this request.
    fn get(&self, _: &mut (), peers: &Peers<'_>) -> Option<usize> {
        (0..peers.len()).find(|&i| peers.is_eligible(i))
    }

    fn free(&self, _: &mut (), _: &Peers<'_>, _: &TryOutcome) -> FreeAction {
        FreeAction::StopRetries
    }
}

waypost_module_api::export_module!(FirstUpModule);

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn skips_a_down_peer() {
        use waypost_module_api::testing::PeerSet;
        let mut set = PeerSet::new(&[1, 1]);
        set.config_mut(0).down = true;
        assert_eq!(FirstUp.get(&mut (), &set.view()), Some(1));
    }
}
