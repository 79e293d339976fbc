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
    regexes: Vec<regex::bytes::Regex>,
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
        let add = |r: &mut Referers, word: &str| -> Result<(), String> {
            if let Some(pattern) = word.strip_prefix('~') {
                let regex = regex::bytes::RegexBuilder::new(pattern)
                    .case_insensitive(true)
                    .unicode(false)
                    .build()
                    .map_err(|e| format!("{e}"))?;
                r.regexes.push(regex);
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
            if let Some(rest) = host.strip_prefix("*.") {
                r.head.push((format!(".{rest}").into_bytes().into(), uri));
            } else if let Some(rest) = host.strip_prefix('.') {
                r.exact.insert(rest.as_bytes().into(), uri.clone());
                r.head.push((host.clone().into_bytes().into(), uri));
            } else if let Some(rest) = host.strip_suffix(".*") {
                r.tail.push((format!("{rest}.").into_bytes().into(), uri));
            } else {
                r.exact.insert(host.into_bytes().into(), uri);
            }
            Ok(())
        };
        for word in words {
            match word.as_str() {
                "none" => r.none = true,
                "blocked" => r.blocked = true,
                "server_names" => {
                    for name in server_names.iter().filter(|n| !n.is_empty()) {
                        add(&mut r, name)?;
                    }
                }
                word => add(&mut r, word)?,
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
        if host_end >= HOST_MAX {
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
        self.regexes.iter().any(|re| re.is_match(rest))
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
    }
}
