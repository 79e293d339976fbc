//! Hook timing. A module hook runs on a worker thread and cannot be
//! pre-empted: a slow one holds up every request of that worker. Each call
//! is timed; the slow ones are counted per module (exported by `metrics;`)
//! and logged with the module's name, at most once a second per module, so
//! an operator can find a bad module.

use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use crate::clock::{self, Mono};

use crate::log::{self, Level};
use crate::modules::loader::LoadedModule;

/// A hook slower than this is counted and logged.
pub const SLOW_HOOK: Duration = Duration::from_millis(1);

/// Runs `f`, a call of `module`'s hook `hook`, timed from `start`, a
/// clock reading the caller took just before (often the end of the hook
/// before), and reports it if slow; returns the reading at the hook's end
/// too, so the next hook or a caller that needs the time after this one
/// does not read the clock again.
#[inline]
pub fn timed_from<R>(
    module: &LoadedModule,
    hook: &'static str,
    start: Mono,
    f: impl FnOnce() -> R,
) -> (R, Mono) {
    let result = f();
    let end = Mono::read();
    let took = end.since(start);
    if took >= SLOW_HOOK {
        // The worker's cached time is a millisecond or more behind now.
        clock::refresh();
        slow(module, hook, took);
    }
    (result, end)
}

#[cold]
fn slow(module: &LoadedModule, hook: &str, took: Duration) {
    module.slow_hooks.fetch_add(1, Relaxed);
    let second = crate::modules::host::now_ns() / 1_000_000_000 + 1;
    let last = module.slow_logged.load(Relaxed);
    if last != second
        && module
            .slow_logged
            .compare_exchange(last, second, Relaxed, Relaxed)
            .is_ok()
    {
        log::write(
            Level::Warn,
            None,
            &format!(
                "module \"{}\" hook {hook} took {:.3} ms; hooks cannot be pre-empted, so its worker waited (slow hooks so far: {})",
                module.name,
                took.as_secs_f64() * 1000.0,
                module.slow_hooks.load(Relaxed)
            ),
        );
    }
}
