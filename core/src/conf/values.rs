//! Argument values in nginx's syntax: times, sizes, numbers.
//!
//! Each function ports the nginx parser of the same name, limits included,
//! so that a value nginx refuses is refused here too.

use std::time::Duration;

/// The largest value nginx's parsers return (`NGX_MAX_INT_T_VALUE`).
const MAX: i64 = i64::MAX;

/// nginx's `ngx_parse_time` in milliseconds mode (the `msec` slots, e.g.
/// `proxy_connect_timeout`): `500ms`, `10s`, `1m`, `1h 30m`, `2d`, `1w`; a
/// bare number is seconds. Units must come in decreasing order, and months
/// and years are refused in this mode, as in nginx.
pub fn parse_time(s: &str) -> Option<Duration> {
    let ms = ngx_parse_time(s.as_bytes(), false)?;
    Some(Duration::from_millis(u64::try_from(ms).ok()?))
}

/// nginx's `ngx_parse_time` in seconds mode (e.g. `fail_timeout=`): like
/// [`parse_time`], but `ms` is refused and `M` (30 days) and `y` allowed.
pub fn parse_time_sec(s: &str) -> Option<u64> {
    u64::try_from(ngx_parse_time(s.as_bytes(), true)?).ok()
}

fn ngx_parse_time(s: &[u8], is_sec: bool) -> Option<i64> {
    #[derive(Clone, Copy, PartialEq, PartialOrd)]
    enum Step {
        Start,
        Year,
        Month,
        Week,
        Day,
        Hour,
        Min,
        Sec,
        Msec,
        Last,
    }
    const DAY: i64 = 60 * 60 * 24;
    let mut valid = false;
    let mut value: i64 = 0;
    let mut total: i64 = 0;
    let mut step = if is_sec { Step::Start } else { Step::Month };
    let mut i = 0;
    while let Some(&c) = s.get(i) {
        i += 1;
        if c.is_ascii_digit() {
            value = value.checked_mul(10)?.checked_add(i64::from(c - b'0'))?;
            valid = true;
            continue;
        }
        let (next, unit) = match c {
            b'y' if step == Step::Start => (Step::Year, DAY * 365),
            b'M' if step < Step::Month => (Step::Month, DAY * 30),
            b'w' if step < Step::Week => (Step::Week, DAY * 7),
            b'd' if step < Step::Day => (Step::Day, DAY),
            b'h' if step < Step::Hour => (Step::Hour, 60 * 60),
            b'm' if s.get(i) == Some(&b's') => {
                if is_sec || step >= Step::Msec {
                    return None;
                }
                i += 1;
                (Step::Msec, 1)
            }
            b'm' if step < Step::Min => (Step::Min, 60),
            b's' if step < Step::Sec => (Step::Sec, 1),
            // A number followed by a blank counts as seconds.
            b' ' if step < Step::Sec => (Step::Last, 1),
            _ => return None,
        };
        step = next;
        let (mut max, mut scale) = (MAX / unit, unit);
        if step != Step::Msec && !is_sec {
            scale *= 1000;
            max /= 1000;
        }
        if value > max {
            return None;
        }
        value *= scale;
        total = total.checked_add(value)?;
        value = 0;
        while s.get(i) == Some(&b' ') {
            i += 1;
        }
    }
    if !valid {
        return None;
    }
    if !is_sec {
        value = value.checked_mul(1000)?;
    }
    total.checked_add(value)
}

/// A non-negative integer as nginx's `ngx_atoi`: digits only, at most
/// `i64::MAX`.
pub fn parse_number(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    s.parse::<i64>().ok().and_then(|n| u64::try_from(n).ok())
}

/// nginx's `ngx_parse_size`: `512`, `16k`, `1m` (no `g`, unlike offsets).
pub fn parse_size(s: &str) -> Option<u64> {
    let (num, scale) = match s.as_bytes().last()? {
        b'k' | b'K' => (&s[..s.len() - 1], 1024),
        b'm' | b'M' => (&s[..s.len() - 1], 1024 * 1024),
        _ => (s, 1),
    };
    let n = parse_number(num)?;
    if n > MAX as u64 / scale {
        return None;
    }
    Some(n * scale)
}

/// nginx's `ngx_parse_offset`: `512`, `16k`, `1m`, `2g`.
pub fn parse_offset(s: &str) -> Option<u64> {
    let (num, scale) = match s.as_bytes().last()? {
        b'k' | b'K' => (&s[..s.len() - 1], 1024),
        b'm' | b'M' => (&s[..s.len() - 1], 1024 * 1024),
        b'g' | b'G' => (&s[..s.len() - 1], 1024 * 1024 * 1024),
        _ => (s, 1),
    };
    let n = parse_number(num)?;
    if n > MAX as u64 / scale {
        return None;
    }
    Some(n * scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times() {
        assert_eq!(parse_time("10"), Some(Duration::from_secs(10)));
        assert_eq!(parse_time("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_time("1m 30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_time("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_time("1h"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_time("1w"), Some(Duration::from_secs(7 * 86400)));
        assert_eq!(parse_time("1s 500ms"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_time("x"), None);
        assert_eq!(parse_time("10q"), None);
        assert_eq!(parse_time(""), None);
        assert_eq!(parse_time("s"), None);
        // Units in decreasing order only; no months or years in msec mode.
        assert_eq!(parse_time("1s 1m"), None);
        assert_eq!(parse_time("1M"), None);
        assert_eq!(parse_time("1y"), None);
        assert_eq!(parse_time("99999999999999999999"), None);
    }

    #[test]
    fn times_in_seconds() {
        assert_eq!(parse_time_sec("10"), Some(10));
        assert_eq!(parse_time_sec("1m 30s"), Some(90));
        assert_eq!(parse_time_sec("1y"), Some(365 * 86400));
        assert_eq!(parse_time_sec("1M"), Some(30 * 86400));
        assert_eq!(parse_time_sec("500ms"), None);
        assert_eq!(parse_time_sec("1x"), None);
    }

    #[test]
    fn sizes_and_numbers() {
        assert_eq!(parse_size("16k"), Some(16384));
        assert_eq!(parse_size("1m"), Some(1 << 20));
        assert_eq!(parse_size("1g"), None);
        assert_eq!(parse_offset("1g"), Some(1 << 30));
        assert_eq!(parse_offset("0"), Some(0));
        assert_eq!(parse_offset("1x"), None);
        assert_eq!(parse_size("k"), None);
        assert_eq!(parse_number("0"), Some(0));
        assert_eq!(parse_number("-1"), None);
        assert_eq!(parse_number("1x"), None);
        assert_eq!(parse_number("9223372036854775807"), Some(i64::MAX as u64));
        assert_eq!(parse_number("9223372036854775808"), None);
    }
}
