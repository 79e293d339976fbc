//! `cargo fuzz run -s none upstream_headers`: see docs/fuzzing.md and `waypost::fuzzing::Harness::upstream_headers`.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use waypost::fuzzing::Harness;
use waypost_module_api::sdk::Shims;
use waypost_round_robin::RoundRobinModule;

static HARNESS: LazyLock<Harness> = LazyLock::new(|| {
    Harness::new(Shims::<RoundRobinModule>::root_module())
        .unwrap_or_else(|e| panic!("the fuzz harness: {e}"))
});

fuzz_target!(|data: &[u8]| {
    let _ = HARNESS.upstream_headers(data);
});
