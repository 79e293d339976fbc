//! The limits in effect in one scope and nginx's handler over them
//! (`ngx_http_limit_req_handler`, §3.5): check every limit in order, the
//! last one saving as it checks and the others held; reject if any
//! rejects, with nothing saved; otherwise save the held ones at the same
//! time and wait the longest delay.
//!
//! [`ScopeLimits::decide`] is the algorithm, with the keys and the clock
//! given, so it is tested without a proxy; [`ScopeLimits::verdict`]
//! turns its decision into the answer, log line and variable value under
//! the scope's settings (status, log level, dry run).

use std::sync::Arc;

use waypost_module_api::filter::Check;
use waypost_module_api::{LogLevel, Rejection};

use crate::zone::{Mode, Now, Outcome, Pin, Zone};

/// `delay` of a `nodelay` limit: no level is ever above it.
pub const NODELAY: u64 = u64::MAX;

/// Longest key nginx limits; longer ones are skipped with an error log.
pub const MAX_KEY: usize = 65535;

/// One `limit_req zone=NAME [burst=N] [nodelay | delay=N]`.
pub struct Limit {
    /// The zone.
    pub zone: Arc<Zone>,
    /// `burst=` in thousandths of a request, as nginx stores it.
    pub burst: u64,
    /// `delay=` in thousandths; 0 delays every excess request;
    /// [`NODELAY`] for `nodelay`.
    pub delay: u64,
}

impl Limit {
    /// A limit with `burst` and `delay` in requests (`u64::MAX` delay for
    /// `nodelay`).
    pub fn new(zone: Arc<Zone>, burst: u64, delay: u64) -> Limit {
        Limit {
            zone,
            burst: burst.saturating_mul(1000),
            delay: if delay == u64::MAX {
                NODELAY
            } else {
                delay.saturating_mul(1000)
            },
        }
    }

    /// The wait for a request that leaves the bucket at `excess`
    /// (thousandths): `(excess - delay) * 1000 / rate` ms past the delay
    /// threshold. Windows never delay.
    pub fn delay_ms(&self, excess: u64) -> u64 {
        if self.zone.spec().mode == Mode::Window || excess <= self.delay {
            return 0;
        }
        (excess - self.delay).saturating_mul(1000) / self.zone.rate()
    }
}

/// `limit_req_missing_key` (an extension).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MissingKey {
    /// An empty key is not limited (nginx).
    Pass,
    /// An empty key is answered 401.
    Reject,
}

/// The settings in effect in a scope.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settings {
    /// `limit_req_status` (429 by default; nginx's is 503).
    pub status: u16,
    /// `limit_req_log_level` for rejections; delays log one level lower.
    pub log_level: LogLevel,
    /// `limit_req_dry_run`.
    pub dry_run: bool,
    /// `limit_req_missing_key`.
    pub missing_key: MissingKey,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            status: 429,
            log_level: LogLevel::Error,
            dry_run: false,
            missing_key: MissingKey::Pass,
        }
    }
}

impl Settings {
    /// Delays log one level below rejections (error→warn, warn→notice,
    /// notice→info, info→info).
    pub fn delay_log_level(&self) -> LogLevel {
        match self.log_level {
            LogLevel::Crit | LogLevel::Error => LogLevel::Warn,
            LogLevel::Warn => LogLevel::Notice,
            _ => LogLevel::Info,
        }
    }
}

/// What nginx's handler decided for a request, before the settings are
/// applied. `limit` indexes [`ScopeLimits::limits`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// No limit applied: every key was empty (or too long).
    Declined,
    /// Admitted at once; `limit` is the last limit that accounted it
    /// (the one the request is counted under).
    Passed {
        /// That limit.
        limit: usize,
    },
    /// Admitted after `ms`; `limit` had the longest delay, at `excess`.
    Delayed {
        /// The wait.
        ms: u64,
        /// The level of `limit`'s bucket, in thousandths.
        excess: u64,
        /// The limit that set the wait.
        limit: usize,
    },
    /// `limit` rejected the request at `excess`; nothing was saved.
    Rejected {
        /// The level the request would have left, in thousandths.
        excess: u64,
        /// The rejecting limit.
        limit: usize,
        /// Whole seconds until that limit would admit this key.
        retry_after: u64,
    },
    /// `limit`'s zone was full (an alert was logged).
    NoMemory {
        /// The full zone's limit.
        limit: usize,
    },
    /// `limit`'s key was empty under `limit_req_missing_key reject`.
    MissingKey {
        /// The limit with the empty key.
        limit: usize,
    },
}

/// Values of `$limit_req_status`.
pub mod status {
    /// Admitted at once.
    pub const PASSED: &str = "PASSED";
    /// Admitted after a wait.
    pub const DELAYED: &str = "DELAYED";
    /// Rejected.
    pub const REJECTED: &str = "REJECTED";
    /// Would have waited (dry run).
    pub const DELAYED_DRY_RUN: &str = "DELAYED_DRY_RUN";
    /// Would have been rejected (dry run).
    pub const REJECTED_DRY_RUN: &str = "REJECTED_DRY_RUN";
}

/// Body of a rejection.
pub const TOO_MANY_REQUESTS: &str = "{\"message\":\"Too Many Requests\"}";
/// Body of a rejection for a missing key.
pub const UNAUTHORIZED: &str = "{\"message\":\"Unauthorized\"}";

/// The limits and settings in effect in one location or upstream.
pub struct ScopeLimits {
    /// In the order written.
    pub limits: Vec<Limit>,
    /// Status, log level, dry run, missing key.
    pub settings: Settings,
    mono: bool,
    wall: bool,
}

impl ScopeLimits {
    /// The scope's limits, checked in this order.
    pub fn new(limits: Vec<Limit>, settings: Settings) -> ScopeLimits {
        let mono = limits.iter().any(|l| l.zone.spec().mode == Mode::Leaky);
        let wall = limits.iter().any(|l| l.zone.spec().mode == Mode::Window);
        ScopeLimits {
            limits,
            settings,
            mono,
            wall,
        }
    }

    /// The current time, reading only the clocks these limits use.
    pub fn now(&self) -> Now {
        Now::current(self.mono, self.wall)
    }

    /// nginx's handler. `key` evaluates a zone's key for this request;
    /// `log` receives the lines logged on the way (a key over 65535
    /// bytes, a full zone).
    pub fn decide<'k>(
        &self,
        now: Now,
        mut key: impl FnMut(&Zone) -> &'k [u8],
        log: &mut dyn FnMut(LogLevel, &str),
    ) -> Decision {
        let n = self.limits.len();
        // Made at the first held limit: a scope with one limit (most)
        // never builds, nor drops, the set.
        let mut held: Option<HeldSet> = None;
        // nginx's rc: None is NGX_DECLINED; Some(None) NGX_AGAIN (the
        // checked limits are held); Some(Some(excess)) NGX_OK.
        let mut rc: Option<Option<u64>> = None;
        let mut at = 0;
        let mut accounted = 0;
        for (i, limit) in self.limits.iter().enumerate() {
            at = i;
            let zone = &*limit.zone;
            let key = key(zone);
            if key.is_empty() {
                if self.settings.missing_key == MissingKey::Reject {
                    return Decision::MissingKey { limit: i };
                }
                continue;
            }
            if key.len() > MAX_KEY {
                log(
                    LogLevel::Error,
                    &format!(
                        "the value of the \"{}\" key is more than 65535 bytes: \"{}...\"",
                        zone.spec().key,
                        String::from_utf8_lossy(&key[..1024])
                    ),
                );
                continue;
            }
            accounted = i;
            match zone.lookup(key, zone.clock(now), limit.burst, i == n - 1) {
                Outcome::Held { pin, .. } => {
                    held.get_or_insert_with(HeldSet::default).push(Held {
                        zone,
                        pin: Some(pin),
                        limit: i,
                    });
                    rc = Some(None);
                }
                Outcome::Admitted { excess } => {
                    rc = Some(Some(excess));
                    break;
                }
                // The held limits are released as `held` drops.
                Outcome::Rejected {
                    excess,
                    retry_after,
                } => {
                    return Decision::Rejected {
                        excess,
                        limit: i,
                        retry_after,
                    }
                }
                Outcome::NoMemory => {
                    log(
                        LogLevel::Crit,
                        &format!(
                            "could not allocate node in limit_req zone \"{}\"",
                            zone.name()
                        ),
                    );
                    return Decision::NoMemory { limit: i };
                }
            }
        }
        let Some(saved) = rc else {
            return Decision::Declined;
        };
        // ngx_http_limit_req_account: the delay of the limit that saved,
        // then each held limit saved at the same time, from the last to
        // the first; a strictly longer delay wins.
        let mut excess = saved.unwrap_or(0);
        let mut limit = at;
        let mut max = self.limits[at].delay_ms(excess);
        while let Some(mut h) = held.as_mut().and_then(HeldSet::pop) {
            let pin = h.pin.take().expect("held limits keep their pin");
            let e = h.zone.commit(pin, h.zone.clock(now));
            let d = self.limits[h.limit].delay_ms(e);
            if d > max {
                max = d;
                excess = e;
                limit = h.limit;
            }
        }
        if max == 0 {
            Decision::Passed { limit: accounted }
        } else {
            Decision::Delayed {
                ms: max,
                excess,
                limit,
            }
        }
    }

    /// The answer for `decision` under the scope's settings, logging as
    /// nginx does.
    #[inline]
    pub fn verdict(&self, decision: &Decision, log: &mut dyn FnMut(LogLevel, &str)) -> Check {
        match *decision {
            Decision::Declined => Check::pass(""),
            Decision::Passed { .. } => Check::pass(status::PASSED),
            _ => self.verdict_limited(decision, log),
        }
    }

    /// [`Self::verdict`] of a request a limit delayed or rejected: out of
    /// line, most requests pass.
    #[inline(never)]
    fn verdict_limited(&self, decision: &Decision, log: &mut dyn FnMut(LogLevel, &str)) -> Check {
        let s = &self.settings;
        let dry = if s.dry_run { ", dry run" } else { "" };
        match *decision {
            Decision::Declined => Check::pass(""),
            Decision::Passed { .. } => Check::pass(status::PASSED),
            Decision::Delayed { ms, excess, limit } => {
                log(
                    s.delay_log_level(),
                    &format!(
                        "delaying request{dry}, excess: {}.{:03}, by zone \"{}\"",
                        excess / 1000,
                        excess % 1000,
                        self.limits[limit].zone.name()
                    ),
                );
                if s.dry_run {
                    Check::pass(status::DELAYED_DRY_RUN)
                } else {
                    Check::delay(std::time::Duration::from_millis(ms), status::DELAYED)
                }
            }
            Decision::Rejected {
                excess,
                limit,
                retry_after,
            } => {
                log(
                    s.log_level,
                    &format!(
                        "limiting requests{dry}, excess: {}.{:03} by zone \"{}\"",
                        excess / 1000,
                        excess % 1000,
                        self.limits[limit].zone.name()
                    ),
                );
                self.reject(too_many_requests(s.status, retry_after))
            }
            Decision::NoMemory { .. } => self.reject(too_many_requests(s.status, 1)),
            Decision::MissingKey { limit } => {
                let zone = &self.limits[limit].zone;
                log(
                    s.log_level,
                    &format!(
                        "limiting requests{dry}, empty key \"{}\" by zone \"{}\"",
                        zone.spec().key,
                        zone.name()
                    ),
                );
                self.reject(Rejection::new(401, "application/json", UNAUTHORIZED))
            }
        }
    }

    fn reject(&self, rejection: Rejection) -> Check {
        if self.settings.dry_run {
            Check::pass(status::REJECTED_DRY_RUN)
        } else {
            Check::reject(rejection, status::REJECTED)
        }
    }
}

/// The rejection of an over-limit request.
pub fn too_many_requests(status: u16, retry_after: u64) -> Rejection {
    let mut buf = [0u8; 20];
    Rejection::new(status, "application/json", TOO_MANY_REQUESTS)
        .with_header("Retry-After", decimal(retry_after, &mut buf))
}

fn decimal(mut n: u64, buf: &mut [u8; 20]) -> &str {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    std::str::from_utf8(&buf[i..]).unwrap_or("1")
}

/// A limit held between its check and the save; released when dropped
/// unsaved (another limit rejected, or a panic unwound).
struct Held<'a> {
    zone: &'a Zone,
    pin: Option<Pin>,
    limit: usize,
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        if let Some(pin) = self.pin.take() {
            self.zone.release(pin);
        }
    }
}

/// The held limits of one request: inline up to eight, so that the
/// request path does not allocate.
#[derive(Default)]
struct HeldSet<'a> {
    inline: [Option<Held<'a>>; 8],
    len: usize,
    spill: Vec<Held<'a>>,
}

impl<'a> HeldSet<'a> {
    fn push(&mut self, held: Held<'a>) {
        if self.len < self.inline.len() {
            self.inline[self.len] = Some(held);
            self.len += 1;
        } else {
            self.spill.push(held);
        }
    }

    /// The last pushed.
    fn pop(&mut self) -> Option<Held<'a>> {
        if let Some(held) = self.spill.pop() {
            return Some(held);
        }
        if self.len == 0 {
            return None;
        }
        self.len -= 1;
        self.inline[self.len].take()
    }
}
