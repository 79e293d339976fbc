//! The module's metrics: requests per zone by result, exported by the
//! core's `metrics;` and `status;` as
//! `waypost_module_limit_req_requests_total{module="limit_req",zone="..",result=".."}`.
//!
//! Each request a `limit_req` applied to is counted once, under one zone:
//! the zone whose limit rejected it or set its delay, or, for a request
//! passed at once, the last zone that accounted it. A request none of
//! whose keys applied (all empty, or over 65535 bytes) is not counted,
//! as its `$limit_req_status` is empty. Counting is one relaxed atomic
//! add; the core hands back the same cell for the same zone after a
//! reload, so the counts go on.

use waypost_module_api::filter::FilterConfig;
use waypost_module_api::{ConfigError, Counter};

use crate::limits::Decision;

/// The metric's name (the core exports it with `waypost_module_` before
/// and `_total` after).
pub const METRIC: &str = "limit_req_requests";

/// A request's result, as the `result` label: `$limit_req_status`,
/// lowercased.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestResult {
    /// `PASSED`: admitted at once.
    Passed,
    /// `DELAYED`: admitted after a wait.
    Delayed,
    /// `REJECTED`: answered by the limit (over the rate, zone full, or a
    /// missing key under `limit_req_missing_key reject`).
    Rejected,
    /// `DELAYED_DRY_RUN`: would have waited.
    DelayedDryRun,
    /// `REJECTED_DRY_RUN`: would have been rejected.
    RejectedDryRun,
}

impl RequestResult {
    /// Every result, in label order.
    pub const ALL: [RequestResult; 5] = [
        RequestResult::Passed,
        RequestResult::Delayed,
        RequestResult::Rejected,
        RequestResult::DelayedDryRun,
        RequestResult::RejectedDryRun,
    ];

    /// The `result` label value.
    pub fn label(self) -> &'static str {
        match self {
            RequestResult::Passed => "passed",
            RequestResult::Delayed => "delayed",
            RequestResult::Rejected => "rejected",
            RequestResult::DelayedDryRun => "delayed_dry_run",
            RequestResult::RejectedDryRun => "rejected_dry_run",
        }
    }

    /// The result of `decision` with `limit_req_dry_run` `dry_run`, and the
    /// index of the limit it is counted under. `None`: not counted.
    pub fn of(decision: &Decision, dry_run: bool) -> Option<(usize, RequestResult)> {
        let (limit, result) = match *decision {
            Decision::Declined => return None,
            Decision::Passed { limit } => (limit, RequestResult::Passed),
            Decision::Delayed { limit, .. } if dry_run => (limit, RequestResult::DelayedDryRun),
            Decision::Delayed { limit, .. } => (limit, RequestResult::Delayed),
            Decision::Rejected { limit, .. }
            | Decision::NoMemory { limit }
            | Decision::MissingKey { limit } => {
                if dry_run {
                    (limit, RequestResult::RejectedDryRun)
                } else {
                    (limit, RequestResult::Rejected)
                }
            }
        };
        Some((limit, result))
    }
}

/// One zone's counters, one per [`RequestResult`].
#[derive(Clone, Copy, Debug)]
pub struct ZoneCounters {
    by_result: [Counter; 5],
}

impl ZoneCounters {
    /// Registers zone `zone`'s counters (at 0 until a request counts).
    pub fn register(config: &FilterConfig<'_>, zone: &str) -> Result<ZoneCounters, ConfigError> {
        let help = "Requests limit_req applied to, by zone and result ($limit_req_status).";
        let counter = |r: RequestResult| {
            config.counter(METRIC, help, &[("zone", zone), ("result", r.label())])
        };
        Ok(ZoneCounters {
            by_result: [
                counter(RequestResult::Passed)?,
                counter(RequestResult::Delayed)?,
                counter(RequestResult::Rejected)?,
                counter(RequestResult::DelayedDryRun)?,
                counter(RequestResult::RejectedDryRun)?,
            ],
        })
    }

    /// Counts one request.
    pub fn count(&self, result: RequestResult) {
        self.by_result[result as usize].inc();
    }

    /// The count of `result`.
    pub fn get(&self, result: RequestResult) -> u64 {
        self.by_result[result as usize].get()
    }
}
