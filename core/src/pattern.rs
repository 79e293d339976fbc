//! nginx's regular expressions: PCRE patterns matched on bytes, as nginx
//! matches them without UTF-8. The `regex` crate runs every pattern it
//! takes, in linear time. One it cannot take, with look-around or a
//! backreference, runs on `fancy-regex`, which backtracks as PCRE does
//! (nginx configurations deny dot files but `.well-known` with
//! `location ~ /\.(?!well-known)`), in its ASCII bytes mode: `.` is any
//! byte and `\w` ASCII, as in PCRE without UTF-8.

use std::ops::Range;

/// A compiled pattern.
#[derive(Clone, Debug)]
pub struct Regex(Inner);

#[derive(Clone, Debug)]
enum Inner {
    Plain(regex::bytes::Regex),
    Fancy(fancy_regex::Regex),
}

impl Regex {
    /// Compiles `pattern` (`caseless`: `~*`). The error is the `regex`
    /// crate's where neither engine takes it.
    pub fn new(pattern: &str, caseless: bool) -> Result<Regex, String> {
        let plain = regex::bytes::RegexBuilder::new(pattern)
            .case_insensitive(caseless)
            .unicode(false)
            .build();
        let error = match plain {
            Ok(re) => return Ok(Regex(Inner::Plain(re))),
            Err(regex::Error::Syntax(text)) => text
                .lines()
                .last()
                .unwrap_or("invalid regular expression")
                .trim_start_matches("error: ")
                .to_owned(),
            Err(other) => other.to_string(),
        };
        fancy_regex::RegexBuilder::new(pattern)
            .case_insensitive(caseless)
            .bytes_mode(fancy_regex::BytesMode::Ascii)
            .build()
            .map(|re| Regex(Inner::Fancy(re)))
            .map_err(|_| error)
    }

    pub fn is_match(&self, subject: &[u8]) -> bool {
        match &self.0 {
            Inner::Plain(re) => re.is_match(subject),
            // (A pattern that backtracks past its limit matches nothing.)
            Inner::Fancy(re) => re.is_match(subject).unwrap_or(false),
        }
    }

    /// The groups of the first match in `subject`.
    pub fn captures<'h>(&self, subject: &'h [u8]) -> Option<Captures<'h>> {
        match &self.0 {
            Inner::Plain(re) => re.captures(subject).map(|c| Captures {
                subject,
                inner: Caps::Plain(c),
            }),
            Inner::Fancy(re) => {
                let caps = re.captures(subject).ok()??;
                let spans = (0..caps.len())
                    .map(|i| caps.get(i).map(|m| m.range()))
                    .collect();
                Some(Captures {
                    subject,
                    inner: Caps::Fancy(spans),
                })
            }
        }
    }

    /// The groups' names, the whole match (`None`) first.
    pub fn capture_names(&self) -> Vec<Option<&str>> {
        match &self.0 {
            Inner::Plain(re) => re.capture_names().collect(),
            Inner::Fancy(re) => re.capture_names().collect(),
        }
    }

    /// How many groups, the whole match included.
    pub fn captures_len(&self) -> usize {
        match &self.0 {
            Inner::Plain(re) => re.captures_len(),
            Inner::Fancy(re) => re.captures_len(),
        }
    }
}

/// A match's groups.
#[derive(Debug)]
pub struct Captures<'h> {
    subject: &'h [u8],
    inner: Caps<'h>,
}

#[derive(Debug)]
enum Caps<'h> {
    Plain(regex::bytes::Captures<'h>),
    /// Each group's span in the subject.
    Fancy(Vec<Option<Range<usize>>>),
}

impl<'h> Captures<'h> {
    /// Group `i` (0: the whole match), if it took part in the match.
    pub fn get(&self, i: usize) -> Option<Match<'h>> {
        let range = match &self.inner {
            Caps::Plain(c) => c.get(i).map(|m| m.range()),
            Caps::Fancy(spans) => spans.get(i).cloned().flatten(),
        }?;
        Some(Match {
            subject: self.subject,
            range,
        })
    }

    /// How many groups, the whole match included.
    pub fn len(&self) -> usize {
        match &self.inner {
            Caps::Plain(c) => c.len(),
            Caps::Fancy(spans) => spans.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Each group in order, `None` where it took no part.
    pub fn iter(&self) -> impl Iterator<Item = Option<Match<'h>>> + '_ {
        (0..self.len()).map(|i| self.get(i))
    }
}

/// One group's match.
#[derive(Clone, Debug)]
pub struct Match<'h> {
    subject: &'h [u8],
    range: Range<usize>,
}

impl<'h> Match<'h> {
    pub fn as_bytes(&self) -> &'h [u8] {
        &self.subject[self.range.clone()]
    }

    pub fn start(&self) -> usize {
        self.range.start
    }

    pub fn end(&self) -> usize {
        self.range.end
    }

    pub fn range(&self) -> Range<usize> {
        self.range.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn look_ahead_runs_on_the_backtracking_engine() {
        let re = Regex::new(r"/\.(?!well-known)", false).expect("compiles");
        assert!(re.is_match(b"/.git/config"));
        assert!(!re.is_match(b"/.well-known/acme-challenge/x"));
        let re = Regex::new(r"^/(?<dir>[^/]+)/(?!index)(.*)$", true).expect("compiles");
        // Bytes that are not UTF-8 match as bytes.
        let caps = re.captures(b"/d\xe9j\xe0/page").expect("matches");
        assert_eq!(caps.get(1).map(|m| m.as_bytes()), Some(&b"d\xe9j\xe0"[..]));
        assert_eq!(caps.get(2).map(|m| m.as_bytes()), Some(&b"page"[..]));
        assert_eq!(re.capture_names(), [None, Some("dir"), None]);
        assert!(Regex::new(r"(a", false).is_err());
    }
}
