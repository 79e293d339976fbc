//! `allow` and `deny`: nginx's `ngx_http_access_module`.
//!
//! The rules of a level are checked in order and the first that matches
//! the client decides; a client no rule matches may go on. nginx keeps a
//! list per address family (`all` adds to each), so a client is checked
//! only against the rules of its own family: `deny 10.0.0.0/8` alone lets
//! every IPv6 client in. An IPv4-mapped IPv6 client counts as IPv4 when
//! the level has IPv4 rules.
//!
//! The check runs in nginx's access phase: after realip, a `return` (the
//! rewrite phase) and `limit_req` (pre-access), before the content, so a
//! proxied location checks once its filter modules have run. A denied
//! request gets 403 and the line `access forbidden by rule` at `error`.

use std::net::IpAddr;

use http::request::Parts;

use crate::http::auth_basic::{AuthBasic, Verdict};
use crate::http::body::RespBody;
use crate::http::proxy::{request_context, ClientCx};
use crate::http::realip::{self, Cidr};
use crate::http::response::error_page;
use crate::log::{self, Level};
use crate::vars::VarCtx;

/// One `allow` or `deny` line's network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    pub allow: bool,
    pub cidr: Cidr,
}

/// A level's rules, in order (empty: no check).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rules(Box<[Rule]>);

/// Why an `allow`/`deny` value was refused: nginx's `invalid parameter`.
#[derive(Debug, PartialEq, Eq)]
pub struct InvalidParameter;

/// The networks of one `allow`/`deny` value, and whether its address had
/// bits set past the prefix (nginx warns `low address bits of ... are
/// meaningless`). Host names are not taken, as in nginx.
pub fn parse(value: &str) -> Result<(Vec<Cidr>, bool), InvalidParameter> {
    match value {
        "all" => Ok((
            vec![
                Cidr::V4 { addr: 0, mask: 0 },
                Cidr::V6 {
                    addr: [0; 16],
                    mask: [0; 16],
                },
                Cidr::Unix,
            ],
            true,
        )),
        "unix:" => Ok((vec![Cidr::Unix], true)),
        _ => realip::parse_cidr(value)
            .map(|(cidr, exact)| (vec![cidr], exact))
            .ok_or(InvalidParameter),
    }
}

impl Rules {
    pub fn new(rules: Vec<Rule>) -> Rules {
        Rules(rules.into_boxed_slice())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether a client at `ip` may go on.
    pub fn allows(&self, ip: IpAddr) -> bool {
        self.decide(ip).unwrap_or(true)
    }

    /// The first rule that matches `ip`: allowed or not; `None` when no
    /// rule matches (nginx's `NGX_DECLINED`, which `satisfy any` does not
    /// count as a grant).
    pub fn decide(&self, ip: IpAddr) -> Option<bool> {
        let ip = match ip {
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) if self.0.iter().any(|r| matches!(r.cidr, Cidr::V4 { .. })) => {
                    IpAddr::V4(v4)
                }
                _ => IpAddr::V6(v6),
            },
            v4 => v4,
        };
        self.0.iter().find(|r| r.cidr.contains(ip)).map(|r| r.allow)
    }
}

/// nginx's access phase for a request: `allow`/`deny`, then `auth_basic`,
/// with `satisfy all` (both must let it in; the first refusal answers)
/// or `satisfy any` (either may; an explicit `allow` skips the password,
/// and of two refusals the 401 is answered). `None`: the request goes on.
pub async fn access_phase(
    rules: &Rules,
    auth: Option<&AuthBasic>,
    satisfy_any: bool,
    parts: &Parts,
    vars: &VarCtx<'_>,
    cx: &ClientCx<'_>,
) -> Option<http::Response<RespBody>> {
    // A subrequest has no access phase; `satisfy any` let the request in.
    if cx.granted {
        return None;
    }
    let ruled = if rules.is_empty() {
        None
    } else {
        rules.decide(cx.client.ip())
    };
    if !satisfy_any {
        if ruled == Some(false) {
            return Some(forbidden(cx, parts));
        }
        return match auth?.check(parts, vars, cx).await {
            Verdict::Refused(resp) => Some(*resp),
            _ => None,
        };
    }
    if ruled == Some(true) {
        return None;
    }
    let verdict = match auth {
        Some(auth) => auth.check(parts, vars, cx).await,
        None => Verdict::Declined,
    };
    match verdict {
        Verdict::Pass => None,
        Verdict::Refused(resp) if resp.status() != http::StatusCode::FORBIDDEN => Some(*resp),
        // A 403 of the password file, or only the rules': nginx's
        // post-access phase logs it as the rules' refusal.
        Verdict::Refused(_) => Some(forbidden(cx, parts)),
        Verdict::Declined if ruled == Some(false) => Some(forbidden(cx, parts)),
        Verdict::Declined => None,
    }
}

/// A client the rules deny: 403, and nginx's line for it.
#[cold]
#[inline(never)]
pub fn forbidden(cx: &ClientCx<'_>, parts: &Parts) -> http::Response<RespBody> {
    let mut line = String::from("access forbidden by rule");
    request_context(cx, parts, &mut line);
    log::write(Level::Error, Some(cx.conn), &line);
    error_page(403)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(lines: &[(bool, &str)]) -> Rules {
        let mut all = Vec::new();
        for (allow, value) in lines {
            for cidr in parse(value).expect("valid").0 {
                all.push(Rule {
                    allow: *allow,
                    cidr,
                });
            }
        }
        Rules::new(all)
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("address")
    }

    #[test]
    fn first_matching_rule_decides() {
        let r = rules(&[(true, "10.1.0.0/16"), (false, "10.0.0.0/8"), (true, "all")]);
        assert!(r.allows(ip("10.1.2.3")));
        assert!(!r.allows(ip("10.2.2.3")));
        assert!(r.allows(ip("192.0.2.1")));
        assert!(Rules::default().allows(ip("10.2.2.3")));
    }

    #[test]
    fn each_family_has_its_own_rules() {
        let r = rules(&[(false, "10.0.0.0/8")]);
        assert!(r.allows(ip("::1")));
        assert!(!r.allows(ip("::ffff:10.0.0.1")));
        let v6 = rules(&[(false, "::/0")]);
        // No IPv4 rules: a mapped address is checked as IPv6.
        assert!(!v6.allows(ip("::ffff:10.0.0.1")));
        assert!(v6.allows(ip("10.0.0.1")));
        let all = rules(&[(true, "::1"), (false, "all")]);
        assert!(all.allows(ip("::1")));
        assert!(!all.allows(ip("127.0.0.1")));
    }

    #[test]
    fn values_as_nginx_takes_them() {
        assert_eq!(parse("10.0.0.1/8").map(|p| p.1), Ok(false));
        assert_eq!(parse("10.0.0.0/8").map(|p| p.1), Ok(true));
        for bad in ["ALL", "localhost", "[::1]", "10.0.0.0/33", "::1/129", ""] {
            assert_eq!(parse(bad), Err(InvalidParameter), "{bad}");
        }
    }
}
