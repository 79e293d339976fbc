//! `expires`: nginx's headers filter setting Expires and Cache-Control
//! (`ngx_http_set_expires`) on a 200, 201, 204, 206, 301, 302, 303, 304,
//! 307 or 308 answer, the upstream's own lines replaced (one Cache-Control
//! left, the first).

use std::time::{Duration, UNIX_EPOCH};

use http::header::{self, HeaderValue};
use http::Response;

use crate::conf::model::Expires;
use crate::http::body::{header_of, RespBody};
use crate::vars::{Template, VarCtx};

/// A level's `expires`.
pub enum Rule {
    Fixed(Expires),
    /// A value with variables, read per answer (`expires modified` when
    /// `modified`).
    Var {
        modified: bool,
        value: Template,
    },
}

impl Rule {
    /// A value with variables as this answer reads it: one that reads
    /// `off`, or one nginx would not take, sets nothing (nginx's
    /// `ngx_http_set_expires` logs nothing for it either).
    fn read(modified: bool, value: &Template, vars: &VarCtx<'_>) -> Option<Expires> {
        let text = value.eval(vars);
        Expires::parse(std::str::from_utf8(&text).ok()?, modified).ok()?
    }

    /// Whether its value reads what the upstream answered.
    pub fn reads_upstream(&self) -> bool {
        matches!(self, Rule::Var { value, .. } if value.reads_upstream())
    }
}

/// Sets the answer's Expires and Cache-Control as `rule` says; `vars`
/// gives the request's variables with the answer's status.
pub fn apply<'v>(rule: &Rule, resp: &mut Response<RespBody>, vars: impl Fn(u16) -> VarCtx<'v>) {
    let status = resp.status().as_u16();
    if !matches!(
        status,
        200 | 201 | 204 | 206 | 301 | 302 | 303 | 304 | 307 | 308
    ) {
        return;
    }
    let expires = match rule {
        Rule::Fixed(e) => *e,
        Rule::Var { modified, value } => {
            // (`$sent_http_*` reads the answer as it is now.)
            let answer = &*resp;
            let vars = VarCtx {
                answer: Some(answer),
                ..vars(status)
            };
            match Rule::read(*modified, value, &vars) {
                Some(e) => e,
                None => return,
            }
        }
    };
    let now = crate::clock::unix_secs() as i64;
    let (when, cache_control): (String, String) = match expires {
        Expires::Epoch => ("Thu, 01 Jan 1970 00:00:01 GMT".into(), "no-cache".into()),
        Expires::Max => (
            "Thu, 31 Dec 2037 23:55:55 GMT".into(),
            "max-age=315360000".into(),
        ),
        Expires::Access(0) | Expires::Modified(0) => (http_time(now), "max-age=0".into()),
        other => {
            let (at, max_age, negative) = match other {
                Expires::Daily(seconds) => {
                    let at = next_time(now, seconds);
                    (at, at.saturating_sub(now), false)
                }
                Expires::Modified(t) => match last_modified(resp) {
                    Some(modified) => {
                        let at = modified.saturating_add(t);
                        (at, at.saturating_sub(now), t < 0)
                    }
                    None => (now.saturating_add(t), t, t < 0),
                },
                Expires::Access(t) => (now.saturating_add(t), t, t < 0),
                _ => (now, 0, false),
            };
            let cc = if negative || max_age < 0 {
                "no-cache".to_owned()
            } else {
                format!("max-age={max_age}")
            };
            (http_time(at), cc)
        }
    };
    let (Ok(when), Ok(cache_control)) = (
        HeaderValue::from_str(&when),
        HeaderValue::from_str(&cache_control),
    ) else {
        return;
    };
    // The upstream's lines keep their place with the new values.
    let body = resp.body_mut();
    let (mut set_expires, mut set_cc) = (false, false);
    if let Some(mut passed) = body.take_passed() {
        set_expires = passed.replace(b"expires", when.as_bytes());
        set_cc = passed.replace_all(b"cache-control", cache_control.as_bytes());
        body.put_passed(passed);
    }
    let headers = resp.headers_mut();
    if !set_expires {
        headers.insert(header::EXPIRES, when);
    }
    if !set_cc {
        headers.insert(header::CACHE_CONTROL, cache_control);
    }
}

/// The answer's Last-Modified, as a Unix time.
fn last_modified(resp: &Response<RespBody>) -> Option<i64> {
    let value = header_of(resp, "last-modified")?;
    let time = httpdate::parse_http_date(std::str::from_utf8(&value).ok()?).ok()?;
    Some(time.duration_since(UNIX_EPOCH).ok()?.as_secs() as i64)
}

/// An HTTP date (`Thu, 01 Jan 1970 00:00:01 GMT`) for a Unix time, kept
/// within the years an HTTP date can show (`expires 100000d` is fine).
fn http_time(t: i64) -> String {
    const LAST: u64 = 253_402_300_799; // 9999-12-31 23:59:59
    let secs = u64::try_from(t).unwrap_or(0).min(LAST);
    httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(secs))
}

/// nginx's `ngx_next_time`: the next time the local clock shows
/// `seconds` after midnight (today's if it is still to come).
fn next_time(now: i64, seconds: i64) -> i64 {
    let t = now as libc::time_t;
    // SAFETY: localtime_r and mktime touch only the tm we own.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    unsafe { libc::localtime_r(&t, &mut tm) };
    tm.tm_hour = (seconds / 3600) as libc::c_int;
    tm.tm_min = ((seconds % 3600) / 60) as libc::c_int;
    tm.tm_sec = (seconds % 60) as libc::c_int;
    let mut next = unsafe { libc::mktime(&mut tm) } as i64;
    if next == -1 {
        return now;
    }
    if next <= now {
        tm.tm_mday += 1;
        next = unsafe { libc::mktime(&mut tm) } as i64;
    }
    next
}
