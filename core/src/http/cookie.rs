//! `proxy_cookie_domain`, `proxy_cookie_path` and `proxy_cookie_flags`:
//! nginx's rewriting of an upstream's Set-Cookie lines
//! (`ngx_http_proxy_rewrite_cookie`). The first rule that matches an
//! attribute replaces it: a domain compared whole, without case and
//! without a leading dot (which the new value keeps); a path by its
//! start; a regex on the whole value, its groups `$1`.. in the
//! replacement. The first flags rule whose cookie matches the cookie's
//! name (without case; `~` a regex, without case too) sets or removes its
//! `Secure`, `HttpOnly` and `SameSite`, the missing ones added in that
//! order. A line a rule applied to is written again with `; ` between its
//! parts, as nginx writes it; others stay as they came.

use crate::pattern::Regex;

use crate::conf::model::CookieRule;
use crate::conf::ConfError;
use crate::http::upstream_h1::Passed;
use crate::map::MapNames;
use crate::vars::{Template, VarCtx};

enum Match {
    /// A domain without its leading dot, lowercase; or a path's start.
    Plain(Vec<u8>),
    Regex(Regex),
}

struct Rule {
    matches: Match,
    to: Template,
}

/// A location's cookie rules.
pub struct CookieRules {
    domains: Vec<Rule>,
    paths: Vec<Rule>,
    flags: Vec<Flags>,
}

/// One `proxy_cookie_flags` line.
struct Flags {
    /// The cookie's name: a template compared without case, or a regex.
    cookie: Result<Template, Regex>,
    /// `secure`/`nosecure`, `httponly`/`nohttponly`: set or removed.
    secure: Option<bool>,
    httponly: Option<bool>,
    /// `samesite=strict|lax|none` (`Some(Some(..))`), `nosamesite`.
    samesite: Option<Option<&'static str>>,
}

impl Flags {
    fn new(cookie: &str, flags: &[String], maps: &MapNames) -> Result<Flags, ConfError> {
        let cookie = match cookie.strip_prefix('~') {
            Some(p) => Err(crate::vars::regex(p, true).map_err(ConfError::bare)?),
            None => Ok(Template::compile_with(cookie, &|n| maps.var(n))
                .map_err(|e| ConfError::bare(e.to_string()))?),
        };
        let mut f = Flags {
            cookie,
            secure: None,
            httponly: None,
            samesite: None,
        };
        // Flags nginx does not know do nothing, as in nginx.
        for flag in flags {
            match flag.to_ascii_lowercase().as_str() {
                "secure" => f.secure = Some(true),
                "nosecure" => f.secure = Some(false),
                "httponly" => f.httponly = Some(true),
                "nohttponly" => f.httponly = Some(false),
                "samesite=strict" => f.samesite = Some(Some("Strict")),
                "samesite=lax" => f.samesite = Some(Some("Lax")),
                "samesite=none" => f.samesite = Some(Some("None")),
                "nosamesite" => f.samesite = Some(None),
                _ => {}
            }
        }
        Ok(f)
    }

    fn matches(&self, name: &[u8], vars: &VarCtx<'_>) -> bool {
        match &self.cookie {
            Ok(template) => template.eval(vars).eq_ignore_ascii_case(name),
            Err(regex) => regex.is_match(name),
        }
    }
}

fn rules(confs: &[CookieRule], domain: bool, maps: &MapNames) -> Result<Vec<Rule>, ConfError> {
    confs
        .iter()
        .map(|r| {
            let matches = match r.from.strip_prefix('~') {
                // A domain regex is always without case, as nginx's.
                Some(p) if domain => {
                    Match::Regex(crate::vars::regex(p, true).map_err(ConfError::bare)?)
                }
                Some(p) => {
                    let (pattern, caseless) = match p.strip_prefix('*') {
                        Some(p) => (p, true),
                        None => (p, false),
                    };
                    Match::Regex(crate::vars::regex(pattern, caseless).map_err(ConfError::bare)?)
                }
                None if domain => {
                    let d = r.from.strip_prefix('.').unwrap_or(&r.from);
                    Match::Plain(d.to_ascii_lowercase().into_bytes())
                }
                None => Match::Plain(r.from.clone().into_bytes()),
            };
            // A plain domain rule's replacement loses its leading dot: the
            // cookie's own is kept (nginx's ngx_http_proxy_cookie_domain).
            let to = match (&matches, domain) {
                (Match::Plain(_), true) => r.to.strip_prefix('.').unwrap_or(&r.to),
                _ => &r.to,
            };
            let to = Template::compile_with(to, &|n| maps.var(n))
                .map_err(|e| ConfError::bare(e.to_string()))?;
            Ok(Rule { matches, to })
        })
        .collect()
}

impl CookieRules {
    /// The rules of a location; `None` with no directive in effect.
    pub fn new(
        domains: &[CookieRule],
        paths: &[CookieRule],
        flags: &[crate::conf::model::CookieFlags],
        maps: &MapNames,
    ) -> Result<Option<CookieRules>, ConfError> {
        if domains.is_empty() && paths.is_empty() && flags.is_empty() {
            return Ok(None);
        }
        Ok(Some(CookieRules {
            domains: rules(domains, true, maps)?,
            paths: rules(paths, false, maps)?,
            flags: flags
                .iter()
                .map(|(cookie, f)| Flags::new(cookie, f, maps))
                .collect::<Result<_, _>>()?,
        }))
    }

    /// Rewrites the Set-Cookie lines among `passed`.
    pub fn apply(&self, passed: &mut Passed, vars: &VarCtx<'_>) {
        let mut lines = Vec::with_capacity(passed.lines.len());
        let mut changed = false;
        for (name, value) in passed.iter() {
            let new = if name.eq_ignore_ascii_case(b"set-cookie") {
                self.cookie(value, vars)
            } else {
                None
            };
            changed |= new.is_some();
            lines.extend_from_slice(name);
            lines.extend_from_slice(b": ");
            lines.extend_from_slice(new.as_deref().unwrap_or(value));
            lines.extend_from_slice(b"\r\n");
        }
        if changed {
            passed.set_lines(lines);
        }
    }

    /// One Set-Cookie value rewritten, or `None` when no rule applies.
    fn cookie(&self, value: &[u8], vars: &VarCtx<'_>) -> Option<Vec<u8>> {
        // nginx trims spaces only, and leaves alone a cookie whose first
        // part is no `name=value`.
        let trim = |s: &[u8]| -> Vec<u8> {
            let start = s.iter().position(|&c| c != b' ').unwrap_or(s.len());
            let end = s.iter().rposition(|&c| c != b' ').map_or(start, |e| e + 1);
            s[start..end].to_vec()
        };
        let parts: Vec<&[u8]> = value.split(|&c| c == b';').collect();
        if !parts.first().is_some_and(|p| p.contains(&b'=')) {
            return None;
        }
        let mut out: Vec<Vec<u8>> = Vec::with_capacity(parts.len() + 3);
        let name = trim(parts[0].split(|&c| c == b'=').next().unwrap_or_default());
        let flags = self.flags.iter().find(|f| f.matches(&name, vars));
        let mut changed = flags.is_some();
        let (mut secure, mut httponly, mut samesite) = (false, false, false);
        for part in parts {
            let (key, val) = match part.iter().position(|&c| c == b'=') {
                Some(eq) => (trim(&part[..eq]), Some(trim(&part[eq + 1..]))),
                None => (trim(part), None),
            };
            if let Some(f) = flags {
                let is = |k: &[u8]| key.eq_ignore_ascii_case(k);
                if is(b"secure") {
                    secure = true;
                    if f.secure == Some(false) {
                        continue;
                    }
                } else if is(b"httponly") {
                    httponly = true;
                    if f.httponly == Some(false) {
                        continue;
                    }
                } else if is(b"samesite") {
                    samesite = true;
                    match f.samesite {
                        Some(None) => continue,
                        Some(Some(to))
                            if !val
                                .as_deref()
                                .is_some_and(|v| v.eq_ignore_ascii_case(to.as_bytes())) =>
                        {
                            out.push([&b"SameSite="[..], to.as_bytes()].concat());
                            continue;
                        }
                        _ => {}
                    }
                }
            }
            let rewritten = match &val {
                Some(v) if key.eq_ignore_ascii_case(b"domain") => {
                    rewrite(&self.domains, v, true, vars)
                }
                Some(v) if key.eq_ignore_ascii_case(b"path") => {
                    rewrite(&self.paths, v, false, vars)
                }
                _ => None,
            };
            changed |= rewritten.is_some();
            out.push(match (rewritten, val) {
                (Some(new), _) => [&key[..], b"=", &new].concat(),
                (None, Some(v)) => [&key[..], b"=", &v].concat(),
                (None, None) => key,
            });
        }
        if let Some(f) = flags {
            if f.secure == Some(true) && !secure {
                out.push(b"Secure".to_vec());
            }
            if f.httponly == Some(true) && !httponly {
                out.push(b"HttpOnly".to_vec());
            }
            if let (Some(Some(to)), false) = (f.samesite, samesite) {
                out.push([&b"SameSite="[..], to.as_bytes()].concat());
            }
        }
        changed.then(|| out.join(&b"; "[..]))
    }
}

/// The first rule of `rules` that matches `value`, applied.
fn rewrite(rules: &[Rule], value: &[u8], domain: bool, vars: &VarCtx<'_>) -> Option<Vec<u8>> {
    for rule in rules {
        match &rule.matches {
            Match::Regex(re) => {
                if let Some(groups) = re.captures(value) {
                    let with_groups = VarCtx {
                        captures: Some(&groups),
                        ..*vars
                    };
                    return Some(rule.to.eval(&with_groups));
                }
            }
            Match::Plain(from) if domain => {
                let dot = value.first() == Some(&b'.');
                let bare = if dot { &value[1..] } else { value };
                if bare.eq_ignore_ascii_case(from) {
                    let mut new = if dot { b".".to_vec() } else { Vec::new() };
                    rule.to.eval_into(vars, &mut new);
                    return Some(new);
                }
            }
            Match::Plain(from) => {
                if let Some(rest) = value.strip_prefix(&from[..]) {
                    let mut new = rule.to.eval(vars);
                    new.extend_from_slice(rest);
                    return Some(new);
                }
            }
        }
    }
    None
}
