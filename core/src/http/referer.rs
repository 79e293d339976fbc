//! `valid_referers` and `$invalid_referer`, as nginx's referer module
//! (`ngx_http_referer_variable`): the Referer header's host (after
//! `http://` or `https://`, up to `/` or `:`, lowercased) looked up among
//! exact names, then `*.name`/`.name` wildcards (the longest), then
//! `name.*`; a name with a URI part also needs the referer's path to start
//! with it; else the regexes (`~`, without case) on the referer after its
//! scheme. `none` lets in a request without Referer, `blocked` one whose
//! Referer has no `http://` or `https://` (or is shorter than nginx's
//! `http://i.ru`).

use std::collections::HashMap;

/// A name's bytes and the URI prefix a Referer's path needs (`None`: any
/// path).
type Name = (Box<[u8]>, Option<Box<[u8]>>);

/// One level's `valid_referers`, compiled.
#[derive(Debug, Default)]
pub struct Referers {
    none: bool,
    blocked: bool,
    /// Host -> URI prefix (`None`: any path).
    exact: HashMap<Box<[u8]>, Option<Box<[u8]>>>,
    /// `*.example.com` as `.example.com` (any name that ends so), and
    /// `.example.com` also as the exact `example.com`; longest first.
    head: Vec<Name>,
    /// `www.example.*` as `www.example.`, longest first.
    tail: Vec<Name>,
    regexes: Vec<crate::pattern::Regex>,
    /// The server's regex names (`server_names`), tried on the host.
    host_regexes: Vec<crate::pattern::Regex>,
}

/// nginx's shortest Referer it reads a scheme in: `http://i.ru`.
const SHORTEST: usize = "http://i.ru".len();

/// Longest host nginx looks up.
const HOST_MAX: usize = 256;

impl Referers {
    /// Compiles the words of `valid_referers` lines; `server_names` are
    /// the server's names where `server_names` is among them. A word that
    /// is no valid name or wildcard is nginx's error.
    pub fn new(words: &[String], server_names: &[String]) -> Result<Referers, String> {
        let mut r = Referers::default();
        let add = |r: &mut Referers, word: &str, server_name: bool| -> Result<(), String> {
            if let Some(pattern) = word.strip_prefix('~') {
                if pattern.is_empty() {
                    return Err(format!("empty regex in \"{word}\""));
                }
                let regex = crate::pattern::Regex::new(pattern, !server_name)?;
                match server_name {
                    true => r.host_regexes.push(regex),
                    false => r.regexes.push(regex),
                }
                return Ok(());
            }
            let (host, uri) = match word.find('/') {
                Some(i) => (&word[..i], Some(word.as_bytes()[i..].into())),
                None => (word, None),
            };
            let host = host.to_ascii_lowercase();
            // One wildcard, at one end (nginx's `ngx_hash_add_key`).
            let stars = host.matches('*').count();
            let wild = host.starts_with("*.") || host.ends_with(".*");
            if host.is_empty() || stars > usize::from(wild) {
                return Err(format!("invalid hostname or wildcard \"{word}\""));
            }
            // A name given twice (`.a.com` is `a.com` and `*.a.com`) is
            // nginx's conflict.
            let conflict = || Err(format!("conflicting parameter \"{host}\""));
            let head_has = |r: &Referers, suffix: &[u8]| r.head.iter().any(|(s, _)| &**s == suffix);
            if let Some(rest) = host.strip_prefix("*.") {
                let suffix = format!(".{rest}").into_bytes();
                if head_has(r, &suffix) {
                    return conflict();
                }
                r.head.push((suffix.into(), uri));
            } else if let Some(rest) = host.strip_prefix('.') {
                if r.exact.contains_key(rest.as_bytes()) || head_has(r, host.as_bytes()) {
                    return conflict();
                }
                r.exact.insert(rest.as_bytes().into(), uri.clone());
                r.head.push((host.clone().into_bytes().into(), uri));
            } else if let Some(rest) = host.strip_suffix(".*") {
                let prefix = format!("{rest}.").into_bytes();
                if r.tail.iter().any(|(p, _)| **p == *prefix) {
                    return conflict();
                }
                r.tail.push((prefix.into(), uri));
            } else {
                if r.exact.contains_key(host.as_bytes()) {
                    return conflict();
                }
                r.exact.insert(host.clone().into_bytes().into(), uri);
            }
            Ok(())
        };
        for word in words {
            match word.as_str() {
                "none" => r.none = true,
                "blocked" => r.blocked = true,
                "server_names" => {
                    for name in server_names.iter().filter(|n| !n.is_empty()) {
                        add(&mut r, name, true)?;
                    }
                }
                word => add(&mut r, word, false)?,
            }
        }
        r.head
            .sort_by_key(|(suffix, _)| std::cmp::Reverse(suffix.len()));
        r.tail
            .sort_by_key(|(prefix, _)| std::cmp::Reverse(prefix.len()));
        Ok(r)
    }

    /// Whether a request with `referer` (the header's value, if it has
    /// one) is valid.
    pub fn valid(&self, referer: Option<&[u8]>) -> bool {
        let Some(referer) = referer else {
            return self.none;
        };
        let rest = if referer.len() >= SHORTEST {
            let scheme = |s: &[u8]| referer[..s.len()].eq_ignore_ascii_case(s);
            if scheme(b"http://") {
                Some(&referer[7..])
            } else if scheme(b"https://") {
                Some(&referer[8..])
            } else {
                None
            }
        } else {
            None
        };
        let Some(rest) = rest else {
            return self.blocked;
        };
        let host_end = rest
            .iter()
            .position(|&c| c == b'/' || c == b':')
            .unwrap_or(rest.len());
        if host_end > HOST_MAX {
            return false;
        }
        let host = rest[..host_end].to_ascii_lowercase();
        let uri = self.exact.get(&host[..]).or_else(|| {
            self.head
                .iter()
                .find(|(suffix, _)| host.len() > suffix.len() && host.ends_with(suffix))
                .or_else(|| {
                    self.tail
                        .iter()
                        .find(|(prefix, _)| host.len() > prefix.len() && host.starts_with(prefix))
                })
                .map(|(_, uri)| uri)
        });
        if let Some(uri) = uri {
            let Some(uri) = uri else {
                return true;
            };
            // The path: from the first `/` after the host (a port skipped).
            let path = rest[host_end..]
                .iter()
                .position(|&c| c == b'/')
                .map_or(&b""[..], |i| &rest[host_end + i..]);
            return path.starts_with(uri);
        }
        self.host_regexes.iter().any(|re| re.is_match(&host))
            || self.regexes.iter().any(|re| re.is_match(rest))
    }

    /// `none` or `blocked` without a name or regex: nginx refuses it.
    pub fn lacks_names(&self) -> bool {
        (self.none || self.blocked)
            && self.exact.is_empty()
            && self.head.is_empty()
            && self.tail.is_empty()
            && self.regexes.is_empty()
            && self.host_regexes.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn referers_as_nginx_checks_them() {
        let words: Vec<String> = [
            "none",
            "blocked",
            "server_names",
            "example.com",
            "*.example.org",
            ".example.net",
            "example.*",
            "www.site.test/gal/",
            "~\\.google\\.",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let r = Referers::new(&words, &["srv.test".into()]).expect("valid");
        let ok = |v: &str| r.valid(Some(v.as_bytes()));
        assert!(r.valid(None));
        assert!(ok("") && ok("blocked") && ok("http://a"));
        assert!(ok("http://example.com/x") && ok("https://EXAMPLE.com"));
        assert!(ok("http://example.com:8080/x"));
        assert!(!ok("http://a.example.com/"));
        assert!(ok("http://x.example.org/") && ok("http://example.org/"));
        assert!(ok("http://example.net/") && ok("http://y.example.net/"));
        assert!(ok("http://www.site.test/gal/1") && !ok("http://www.site.test/other"));
        assert!(ok("http://www.google.com/") && ok("http://srv.test/"));
        assert!(!ok("http://i.ru"));
        let strict = Referers::new(&["example.com".into()], &[]).expect("valid");
        assert!(!strict.valid(None) && !strict.valid(Some(b"example.com")));
        assert!(strict.valid(Some(b"http://example.com")));
        assert!(!strict.valid(Some(b"http://example.com?x")));
        assert!(Referers::new(&["ex*ample.com".into()], &[]).is_err());
        assert!(Referers::new(&["*.a.*".into()], &[]).is_err());
        let twice = |w: &[&str]| {
            Referers::new(&w.iter().map(|s| s.to_string()).collect::<Vec<_>>(), &[]).err()
        };
        assert_eq!(
            twice(&["a.com", "A.com/x"]),
            Some("conflicting parameter \"a.com\"".into())
        );
        assert_eq!(
            twice(&["*.a.com", ".a.com"]),
            Some("conflicting parameter \".a.com\"".into())
        );
        assert_eq!(twice(&["~"]), Some("empty regex in \"~\"".into()));
        let regex_server =
            Referers::new(&["server_names".into()], &["~^www\\.ex\\.com$".into()]).expect("valid");
        assert!(regex_server.valid(Some(b"http://www.ex.com/page")));
    }
}
