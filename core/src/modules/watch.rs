//! Hook timing. A module hook runs on a worker thread and cannot be
//! pre-empted: a slow one holds up every request of that worker. Each call
//! is timed; the slow ones are counted per module (exported by `metrics;`)
//! and logged with the module's name, at most once a second per module, so
//! an operator can find a bad module.

use std::cell::Cell;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use crate::clock::{self, Mono};

use crate::log::{self, Level};
use crate::modules::loader::LoadedModule;

/// A hook slower than this is counted and logged.
pub const SLOW_HOOK: Duration = Duration::from_millis(1);

/// [`SLOW_HOOK`] in nanoseconds, as hook times are measured.
const SLOW_HOOK_NS: u64 = SLOW_HOOK.as_nanos() as u64;

std::thread_local! {
    /// The reading the running hook was timed from (0 outside hooks): the
    /// time modules read through `sdk::now_ns` during the call, as an
    /// nginx module reads the worker's cached `ngx_current_msec`. A
    /// request with `limit_req` read the clock once more for it (an
    /// `rdtsc` here costs about 40 ns, plus 40 instructions).
    static HOOK_AT: Cell<u64> = const { Cell::new(0) };
}

/// Sets [`HOOK_AT`] for a hook's call; puts back what was there when
/// dropped, also if the call unwinds.
struct HookAt(u64);

impl HookAt {
    #[inline]
    fn set(start: Mono) -> HookAt {
        HookAt(HOOK_AT.with(|at| at.replace(start.nanos())))
    }
}

impl Drop for HookAt {
    #[inline]
    fn drop(&mut self) {
        HOOK_AT.with(|at| at.set(self.0));
    }
}

/// The reading the running hook on this thread was timed from, if a hook
/// is running.
#[inline]
pub fn hook_start() -> Option<Mono> {
    match HOOK_AT.with(Cell::get) {
        0 => None,
        at => Some(Mono::from_nanos(at)),
    }
}

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
    let result = called_at(start, f);
    let end = Mono::read();
    ended(module, hook, start, end);
    (result, end)
}

/// Runs `f`, a hook call, with `start` as the time modules read during it,
/// without reading the clock at its end: for a hook timed together with
/// the next one (see `PeerState::init`), or by [`ended`] later.
#[inline]
pub fn called_at<R>(start: Mono, f: impl FnOnce() -> R) -> R {
    let _at = HookAt::set(start);
    f()
}

/// Reports `module`'s `hook` (or hooks) if slow: they ran from `start` to
/// `end`.
#[inline]
pub fn ended(module: &LoadedModule, hook: &'static str, start: Mono, end: Mono) {
    let took = end.nanos_since(start);
    if took >= SLOW_HOOK_NS {
        // The worker's cached time is a millisecond or more behind now.
        clock::refresh();
        slow(module, hook, Duration::from_nanos(took));
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use waypost_module_api::sdk::Shims;
    use waypost_round_robin::RoundRobinModule;

    #[test]
    fn inside_a_hook_modules_read_the_time_it_was_called() {
        let module = LoadedModule::linked(Shims::<RoundRobinModule>::root_module());
        let module_clock = crate::modules::host::HOST_EXT.monotonic_ns();
        assert_eq!(hook_start(), None);
        // The clock's origin is set at its first reading: before `start`,
        // so that readings inside the hook are not all clamped to 0.
        let before = module_clock();
        let start = Mono::read();
        let ((at, first, second), end) = timed_from(&module, "get", start, || {
            let first = module_clock();
            std::thread::sleep(Duration::from_millis(2));
            (hook_start(), first, module_clock())
        });
        assert_eq!(at, Some(start));
        // The hook's time does not advance during the call...
        assert_eq!(first, second);
        assert!(first >= before);
        assert!(first > 0);
        // ...and the hook was timed from it: end is 2 ms or more later.
        assert!(end.nanos_since(start) >= 2_000_000);
        // Outside hooks, a fresh reading.
        assert_eq!(hook_start(), None);
        assert!(module_clock() >= first + 2_000_000);
    }
}
