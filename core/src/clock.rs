//! Time for the request path, as nginx keeps it: a worker reads the clock
//! when it wakes from its wait for events (`ngx_time_update` after
//! `epoll_wait`) and every timestamp of that turn of the loop uses the
//! reading. Reading the monotonic clock costs about 40 ns here (an
//! `rdtsc` in a virtual machine); a proxied request used to read it 16
//! times and the wall clock 3 times.
//!
//! Threads other than the workers (the master, module threads, tests)
//! have no cached reading and read the clock each time. A worker that
//! never waits, because it always has a task ready, still reads it again
//! after [`USES`] cached readings, so a timestamp is never older than a
//! few requests' work.
//!
//! What needs a duration to the microsecond (a try's time handed to the
//! balancer's `free`, a module hook's run time) reads the clock with
//! [`Mono::read`]: nanoseconds as one integer, where an `Instant` is a
//! normalised (seconds, nanoseconds) pair whose reading and subtraction
//! cost about 100 instructions more (five readings per proxied request).

use std::cell::Cell;
use std::time::Instant;

/// Cached readings served before the clock is read again.
const USES: u32 = 32;

thread_local! {
    /// The worker's reading and how many more uses it serves; `None` on
    /// threads that do not cache.
    static CACHED: Cell<Option<(Instant, u32)>> = const { Cell::new(None) };
    /// The wall clock's second read with the worker's cached reading
    /// (0 on threads that do not cache): one second for the whole turn,
    /// so that an answer's Expires and Date, made microseconds apart,
    /// never straddle a second boundary (nginx's `ngx_time()`).
    static SECS: Cell<u64> = const { Cell::new(0) };
}

/// The time of this turn of the worker's event loop (on other threads,
/// now).
#[inline]
pub fn now() -> Instant {
    CACHED
        .try_with(|c| match c.get() {
            Some((at, left)) if left > 0 => {
                c.set(Some((at, left - 1)));
                at
            }
            Some(_) => {
                let at = Instant::now();
                c.set(Some((at, USES)));
                cache_secs();
                at
            }
            None => Instant::now(),
        })
        .unwrap_or_else(|_| Instant::now())
}

/// [`now`] for tokio's timers.
#[inline]
pub fn tokio_now() -> tokio::time::Instant {
    tokio::time::Instant::from_std(now())
}

/// A reading of the monotonic clock (`CLOCK_MONOTONIC`, the clock
/// `Instant` reads), in nanoseconds since an unspecified start.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Mono(u64);

impl Mono {
    /// Reads the clock.
    #[inline]
    pub fn read() -> Mono {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: ts is a valid timespec to write to. CLOCK_MONOTONIC
        // cannot fail on Linux; were it to, the zero reading makes
        // durations zero (differences saturate), never a panic.
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
        Mono((ts.tv_sec as u64).wrapping_mul(1_000_000_000) + ts.tv_nsec as u64)
    }

    /// The reading as nanoseconds (never 0 on a running system).
    #[inline]
    pub fn nanos(self) -> u64 {
        self.0
    }

    /// A reading from [`Mono::nanos`].
    #[inline]
    pub fn from_nanos(nanos: u64) -> Mono {
        Mono(nanos)
    }

    /// Nanoseconds since `earlier` (zero if `earlier` is later).
    #[inline]
    pub fn nanos_since(self, earlier: Mono) -> u64 {
        self.0.saturating_sub(earlier.0)
    }

    /// The time since `earlier` (zero if `earlier` is later).
    #[inline]
    pub fn since(self, earlier: Mono) -> std::time::Duration {
        std::time::Duration::from_nanos(self.nanos_since(earlier))
    }
}

/// Called when a worker wakes from its wait for events (tokio's
/// `on_thread_unpark`): from its first wake on, the thread caches
/// readings.
pub fn woke() {
    let _ = CACHED.try_with(|c| c.set(Some((Instant::now(), USES))));
    cache_secs();
}

/// Brings a worker's cached reading forward: after a slow module hook,
/// so that the rest of the turn does not time from before it.
pub fn refresh() {
    let _ = CACHED.try_with(|c| {
        if c.get().is_some() {
            c.set(Some((Instant::now(), USES)));
            cache_secs();
        }
    });
}

fn cache_secs() {
    let _ = SECS.try_with(|s| s.set(read_unix_secs()));
}

/// Seconds since the Unix epoch: for what counts whole seconds (the
/// Date header, `expires`, `$time_local`, `fail_timeout`). On a worker,
/// the second read with the turn's cached reading (see [`now`]); on
/// other threads, read each time.
#[inline]
pub fn unix_secs() -> u64 {
    match SECS.try_with(Cell::get) {
        Ok(secs) if secs != 0 => secs,
        _ => read_unix_secs(),
    }
}

/// The kernel's coarse wall clock (a few nanoseconds, updated every
/// tick).
fn read_unix_secs() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid timespec to write to; the clock id is a
    // constant Linux has had since 2.6.32.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_REALTIME_COARSE, &mut ts) };
    if rc == 0 {
        u64::try_from(ts.tv_sec).unwrap_or(0)
    } else {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_worker_reads_the_clock_again_after_its_uses() {
        std::thread::spawn(|| {
            woke();
            let first = now();
            std::thread::sleep(std::time::Duration::from_millis(2));
            // Within the uses: the reading of the wake.
            for _ in 1..USES {
                assert_eq!(now(), first);
            }
            // Past them: a new reading.
            let second = now();
            assert!(second > first);
            // refresh() brings the cached reading forward.
            std::thread::sleep(std::time::Duration::from_millis(2));
            refresh();
            assert!(now() > second);
        })
        .join()
        .expect("the test thread");
    }

    #[test]
    fn a_worker_keeps_the_second_of_its_reading() {
        std::thread::spawn(|| {
            woke();
            let secs = unix_secs();
            assert!(secs > 1_700_000_000);
            // Past a second boundary, the turn's second stands until the
            // clock is read again.
            let start = read_unix_secs();
            while read_unix_secs() == start {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            assert_eq!(unix_secs(), secs);
            refresh();
            assert!(unix_secs() > secs);
        })
        .join()
        .expect("the test thread");
    }

    #[test]
    fn mono_readings_measure_the_time_between_them() {
        let a = Mono::read();
        let before = Instant::now();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = Mono::read();
        let took = before.elapsed();
        assert!(b.since(a) >= std::time::Duration::from_millis(2));
        // The same clock as Instant: the two durations agree within the
        // time between the paired readings.
        assert!(b.since(a) <= took + std::time::Duration::from_millis(1));
        assert_eq!(a.nanos_since(b), 0);
    }

    #[test]
    fn other_threads_read_the_clock_each_time() {
        std::thread::spawn(|| {
            let a = now();
            std::thread::sleep(std::time::Duration::from_millis(2));
            assert!(now() > a);
            assert!(unix_secs() > 1_700_000_000);
        })
        .join()
        .expect("the test thread");
    }
}
