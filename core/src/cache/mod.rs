//! The proxy cache, as nginx's `ngx_http_file_cache` and the cache half
//! of `ngx_http_upstream`:
//!
//! - `zone`: a `proxy_cache_path`'s index in memory and its disk thread
//!   (store, load at start, `inactive` and `max_size`);
//! - `file`: the layout of an entry's file and its name;
//! - this file: whether an upstream's answer may be stored, and for how
//!   long (`proxy_cache_valid`, `X-Accel-Expires`, `Cache-Control`,
//!   `Expires`, `Set-Cookie`, `Vary`, `proxy_ignore_headers`).
//!
//! The request side (lookup, answering from an entry, storing as the
//! answer streams) is `crate::http::cache`.

pub mod file;
pub mod zone;

pub use zone::{Found, Settings, Zone};

/// `proxy_ignore_headers` names the cache reads.
pub mod ignore {
    pub const X_ACCEL_EXPIRES: u8 = 1 << 0;
    pub const EXPIRES: u8 = 1 << 1;
    pub const CACHE_CONTROL: u8 = 1 << 2;
    pub const SET_COOKIE: u8 = 1 << 3;
    pub const VARY: u8 = 1 << 4;
    pub const X_ACCEL_BUFFERING: u8 = 1 << 5;
}

/// One `proxy_cache_valid` line: its statuses (empty: `any`) and seconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Valid {
    pub statuses: Box<[u16]>,
    pub any: bool,
    pub secs: u64,
}

/// The seconds `proxy_cache_valid` gives a status, as
/// `ngx_http_file_cache_valid`: the first line that lists it, else an
/// `any` line.
pub fn valid_for(lines: &[Valid], status: u16) -> Option<u64> {
    lines
        .iter()
        .find(|v| v.any || v.statuses.contains(&status))
        .map(|v| v.secs)
        .filter(|&s| s > 0)
}

/// What the upstream's header lines say of storing its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Not to be stored (`no-store`, `private`, `Set-Cookie`, `Vary: *`,
    /// an `Expires` in the past, `X-Accel-Expires: 0` ...).
    No,
    /// Valid until this Unix time, as the headers say.
    Until(i64),
    /// The headers say nothing: `proxy_cache_valid` decides.
    Default,
}

/// Reads the lines nginx's upstream module reads for the cache, in the
/// order they came, as nginx 1.22's header handlers do: a line that
/// forbids storing is final, a validity may be replaced by a later
/// line, `Cache-Control` is not read after an `X-Accel-Expires` that set
/// one, nor `Expires` after any line that did.
pub fn verdict<'a>(
    lines: impl Iterator<Item = (&'a [u8], &'a [u8])>,
    ignore: u8,
    now: i64,
) -> Verdict {
    let mut valid: Option<i64> = None;
    let mut accel = false;
    let mut cacheable = true;
    let is =
        |name: &[u8], bit: u8, want: &[u8]| ignore & bit == 0 && name.eq_ignore_ascii_case(want);
    for (name, value) in lines {
        if is(name, ignore::X_ACCEL_EXPIRES, b"x-accel-expires") {
            accel = true;
            match value.strip_prefix(b"@") {
                Some(at) => {
                    if let Some(at) = number(at) {
                        valid = Some(at as i64);
                    }
                }
                None => match number(value) {
                    Some(0) => cacheable = false,
                    Some(n) => valid = Some(now + n as i64),
                    None => {}
                },
            }
        } else if is(name, ignore::CACHE_CONTROL, b"cache-control") {
            if accel && valid.is_some() {
                continue;
            }
            match cache_control(value) {
                CacheControl::No => cacheable = false,
                CacheControl::MaxAge(n) => valid = Some(now + n as i64),
                CacheControl::Nothing => {}
            }
        } else if is(name, ignore::EXPIRES, b"expires") {
            if valid.is_some() {
                continue;
            }
            let at = std::str::from_utf8(value)
                .ok()
                .and_then(|t| httpdate::parse_http_date(t.trim()).ok())
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| d.as_secs() as i64);
            match at {
                Some(at) if at >= now => valid = Some(at),
                _ => cacheable = false,
            }
        } else if is(name, ignore::SET_COOKIE, b"set-cookie") {
            cacheable = false;
        } else if is(name, ignore::VARY, b"vary") {
            if value.len() > 128 || value.trim_ascii() == b"*" {
                cacheable = false;
            }
        } else if is(name, ignore::X_ACCEL_BUFFERING, b"x-accel-buffering")
            && value.eq_ignore_ascii_case(b"no")
        {
            // nginx stores only what it buffers.
            cacheable = false;
        }
    }
    match (cacheable, valid) {
        (false, _) => Verdict::No,
        (true, Some(at)) => Verdict::Until(at),
        (true, None) => Verdict::Default,
    }
}

enum CacheControl {
    No,
    MaxAge(u64),
    Nothing,
}

/// `ngx_http_upstream_process_cache_control`: `no-cache`, `no-store` or
/// `private` anywhere in the value forbid storing; else `s-maxage=`, or
/// `max-age=`, gives the seconds (0 forbids).
fn cache_control(value: &[u8]) -> CacheControl {
    let has = |word: &[u8]| {
        value
            .windows(word.len())
            .position(|w| w.eq_ignore_ascii_case(word))
    };
    if has(b"no-cache").is_some() || has(b"no-store").is_some() || has(b"private").is_some() {
        return CacheControl::No;
    }
    let at = match has(b"s-maxage=") {
        Some(i) => i + 9,
        None => match has(b"max-age=") {
            Some(i) => i + 8,
            None => return CacheControl::Nothing,
        },
    };
    let digits: Vec<u8> = value[at..]
        .iter()
        .copied()
        .take_while(|&c| !matches!(c, b',' | b';' | b' '))
        .collect();
    match number(&digits) {
        Some(0) => CacheControl::No,
        Some(n) => CacheControl::MaxAge(n),
        None => CacheControl::No,
    }
}

fn number(digits: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(digits).ok()?.trim();
    if text.is_empty() || !text.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(lines: &[(&str, &str)], ignore: u8) -> Verdict {
        verdict(
            lines.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())),
            ignore,
            1000,
        )
    }

    #[test]
    fn the_headers_decide_as_nginx_reads_them() {
        assert_eq!(v(&[], 0), Verdict::Default);
        assert_eq!(
            v(&[("Cache-Control", "max-age=60")], 0),
            Verdict::Until(1060)
        );
        assert_eq!(
            v(&[("Cache-Control", "public, s-maxage=5, max-age=60")], 0),
            Verdict::Until(1005)
        );
        assert_eq!(v(&[("Cache-Control", "max-age=0")], 0), Verdict::No);
        assert_eq!(
            v(&[("Cache-Control", "private, max-age=60")], 0),
            Verdict::No
        );
        assert_eq!(v(&[("cache-control", "No-Store")], 0), Verdict::No);
        assert_eq!(
            v(&[("Cache-Control", "no-cache")], ignore::CACHE_CONTROL),
            Verdict::Default
        );
        assert_eq!(v(&[("X-Accel-Expires", "30")], 0), Verdict::Until(1030));
        assert_eq!(v(&[("X-Accel-Expires", "@2000")], 0), Verdict::Until(2000));
        assert_eq!(v(&[("X-Accel-Expires", "0")], 0), Verdict::No);
        // nginx 1.22 reads them in order: Cache-Control after an
        // X-Accel-Expires is not read, a refusal before it stays.
        assert_eq!(
            v(
                &[("X-Accel-Expires", "30"), ("Cache-Control", "no-store")],
                0
            ),
            Verdict::Until(1030)
        );
        assert_eq!(
            v(
                &[("Cache-Control", "no-store"), ("X-Accel-Expires", "30")],
                0
            ),
            Verdict::No
        );
        assert_eq!(
            v(
                &[("Cache-Control", "max-age=60"), ("X-Accel-Expires", "30")],
                0
            ),
            Verdict::Until(1030)
        );
        assert_eq!(v(&[("Cache-Control", "max-age=\"60\"")], 0), Verdict::No);
        assert_eq!(v(&[("X-Accel-Buffering", "no")], 0), Verdict::No);
        assert_eq!(
            v(&[("Expires", "Thu, 01 Jan 1970 00:00:00 GMT")], 0),
            Verdict::No
        );
        assert_eq!(
            v(&[("Expires", "Thu, 01 Jan 1970 00:20:00 GMT")], 0),
            Verdict::Until(1200)
        );
        assert_eq!(
            v(
                &[
                    ("Cache-Control", "max-age=60"),
                    ("Expires", "Thu, 01 Jan 1970 00:00:00 GMT")
                ],
                0
            ),
            Verdict::Until(1060)
        );
        assert_eq!(
            v(
                &[
                    ("Expires", "Thu, 01 Jan 1970 00:00:00 GMT"),
                    ("Cache-Control", "max-age=60")
                ],
                0
            ),
            Verdict::No
        );
        assert_eq!(v(&[("Set-Cookie", "a=b")], 0), Verdict::No);
        assert_eq!(
            v(&[("Set-Cookie", "a=b")], ignore::SET_COOKIE),
            Verdict::Default
        );
        assert_eq!(v(&[("Vary", "*")], 0), Verdict::No);
        assert_eq!(v(&[("Vary", "Accept-Encoding")], 0), Verdict::Default);
    }

    #[test]
    fn proxy_cache_valid_takes_the_first_line_that_lists_the_status() {
        let lines = [
            Valid {
                statuses: [200, 302].into(),
                any: false,
                secs: 600,
            },
            Valid {
                statuses: [404].into(),
                any: false,
                secs: 60,
            },
            Valid {
                statuses: [].into(),
                any: true,
                secs: 5,
            },
        ];
        assert_eq!(valid_for(&lines, 200), Some(600));
        assert_eq!(valid_for(&lines, 404), Some(60));
        assert_eq!(valid_for(&lines, 500), Some(5));
        assert_eq!(valid_for(&lines[..2], 500), None);
    }
}
