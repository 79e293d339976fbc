//! `sub_filter`: nginx's sub filter. An answer of a `sub_filter_types`
//! type (`text/html` always) whose length is not known to be 0 has each
//! string replaced as it streams: the strings are matched without ASCII
//! case, at each place the first in the configuration's order that
//! matches wins, and the text after a replacement is looked at anew; with
//! `sub_filter_once on` (the default) each string is replaced once. The
//! answer loses its Content-Length, and its Last-Modified and ETag unless
//! `sub_filter_last_modified on` (which makes the ETag weak).

use bytes::Bytes;
use http::header;
use http::Response;

use crate::http::body::{known_length, type_of, RespBody};
use crate::http::gzip::{etag_weakened, weaken_etag};
use crate::http::upstream_h1::{LineEdit, Passed};
use crate::vars::{Template, VarCtx};

/// A string or replacement: fixed at load (lowercased there for a
/// string), or evaluated for each answer.
#[derive(Debug)]
pub enum Text {
    Fixed(Bytes),
    Template(Template),
}

impl Text {
    /// `template` as a string to find (`lower`) or a replacement.
    pub fn new(template: Template, lower: bool) -> Text {
        match template.as_literal() {
            Some(t) if lower => Text::Fixed(Bytes::from(t.to_ascii_lowercase())),
            Some(t) => Text::Fixed(Bytes::copy_from_slice(t.as_bytes())),
            None => Text::Template(template),
        }
    }

    fn value(&self, vars: &VarCtx<'_>, lower: bool) -> Bytes {
        match self {
            Text::Fixed(b) => b.clone(),
            Text::Template(t) if lower => Bytes::from(t.eval(vars).to_ascii_lowercase()),
            Text::Template(t) => Bytes::from(t.eval(vars)),
        }
    }
}

/// A level's compiled `sub_filter` settings.
#[derive(Debug)]
pub struct SubFilter {
    /// Each string and its replacement, in the configuration's order.
    pairs: Box<[(Text, Text)]>,
    once: bool,
    last_modified: bool,
    /// Lowercase MIME types; `None`: any (`sub_filter_types *`).
    types: Option<Box<[String]>>,
}

impl SubFilter {
    pub fn new(
        pairs: Box<[(Text, Text)]>,
        once: bool,
        last_modified: bool,
        types: Option<Box<[String]>>,
    ) -> SubFilter {
        SubFilter {
            pairs,
            once,
            last_modified,
            types,
        }
    }

    /// nginx's header filter: where the answer is one to change, its
    /// strings and replacements are evaluated, its headers changed, and
    /// its body wrapped.
    pub fn apply(&self, resp: &mut Response<RespBody>, vars: &VarCtx<'_>) {
        if known_length(resp) == Some(0) {
            return;
        }
        // (`*` takes an answer without a type too, as nginx's.)
        if let Some(types) = &self.types {
            let Some(content_type) = crate::http::body::header_of(resp, "content-type") else {
                return;
            };
            let mime = type_of(&content_type).0.to_ascii_lowercase();
            if !types.iter().any(|t| t.as_bytes() == mime) {
                return;
            }
        }
        let patterns: Vec<Pattern> = self
            .pairs
            .iter()
            .filter_map(|(find, with)| {
                let find = find.value(vars, true);
                (!find.is_empty()).then(|| Pattern {
                    find,
                    with: with.value(vars, false),
                    applied: false,
                })
            })
            .collect();
        if patterns.is_empty() {
            return;
        }
        let headers = resp.headers_mut();
        crate::http::response::remove_in_order(headers, &header::CONTENT_LENGTH);
        if self.last_modified {
            weaken_etag(headers);
        } else {
            crate::http::response::remove_in_order(headers, &header::LAST_MODIFIED);
            crate::http::response::remove_in_order(headers, &header::ETAG);
        }
        let last_modified = self.last_modified;
        if let Some(passed) = resp.body_mut().passed_mut() {
            without_validators(passed, last_modified);
        }
        // A HEAD gets the changed headers, no length, and no body to
        // change.
        if vars.req.method == http::Method::HEAD {
            resp.body_mut().forget_length();
            return;
        }
        let mut starts = [false; 256];
        for p in &patterns {
            starts[usize::from(p.find[0])] = true;
            starts[usize::from(p.find[0].to_ascii_uppercase())] = true;
        }
        resp.body_mut().substitute(Matcher {
            patterns,
            starts,
            once: self.once,
            applied: 0,
            held: Vec::new(),
        });
    }
}

/// One string to find (lowercase) and its replacement.
#[derive(Debug)]
struct Pattern {
    find: Bytes,
    with: Bytes,
    applied: bool,
}

/// The replacing of one answer's body, piece by piece: the end of a piece
/// that may begin a string is held until the next piece tells.
#[derive(Debug)]
pub struct Matcher {
    patterns: Vec<Pattern>,
    /// The bytes a string starts with, either case: a place that starts
    /// with another is passed at once.
    starts: [bool; 256],
    once: bool,
    applied: usize,
    held: Vec<u8>,
}

/// What the first string that can still match at a place does there.
enum At {
    /// The string at this index matches.
    Match(usize),
    /// None can.
    None,
    /// One before any match could, if more bytes came.
    Undecided,
}

impl Matcher {
    /// `data`, the next piece of the body, with its strings replaced; the
    /// bytes that could begin one are held back unless `last` (the body
    /// ended). Once every string is replaced under `once`, pieces pass as
    /// they are.
    pub fn feed(&mut self, data: Bytes, last: bool) -> Bytes {
        if self.finished() && self.held.is_empty() {
            return data;
        }
        let joined;
        let text: &[u8] = if self.held.is_empty() {
            &data
        } else {
            let mut held = std::mem::take(&mut self.held);
            held.extend_from_slice(&data);
            joined = held;
            &joined
        };
        let mut out = Vec::with_capacity(text.len());
        let mut pos = 0;
        // Bytes up to here go out as they are.
        let mut plain = 0;
        while pos < text.len() {
            if self.finished() {
                break;
            }
            if !self.starts[usize::from(text[pos])] {
                pos += 1;
                continue;
            }
            match self.at(&text[pos..], last) {
                At::Match(i) => {
                    out.extend_from_slice(&text[plain..pos]);
                    let p = &mut self.patterns[i];
                    out.extend_from_slice(&p.with);
                    pos += p.find.len();
                    plain = pos;
                    if !p.applied {
                        p.applied = true;
                        self.applied += 1;
                    }
                }
                At::None => pos += 1,
                At::Undecided => {
                    out.extend_from_slice(&text[plain..pos]);
                    self.held.extend_from_slice(&text[pos..]);
                    return Bytes::from(out);
                }
            }
        }
        out.extend_from_slice(&text[plain..]);
        Bytes::from(out)
    }

    /// Every string was replaced under `sub_filter_once`.
    fn finished(&self) -> bool {
        self.once && self.applied == self.patterns.len()
    }

    /// The strings' say at the start of `rest`: the first in order that
    /// matches, unless one before it cannot tell yet.
    fn at(&self, rest: &[u8], last: bool) -> At {
        for (i, p) in self.patterns.iter().enumerate() {
            if self.once && p.applied {
                continue;
            }
            let n = p.find.len().min(rest.len());
            if !rest[..n].eq_ignore_ascii_case(&p.find[..n]) {
                continue;
            }
            if n == p.find.len() {
                return At::Match(i);
            }
            if !last {
                return At::Undecided;
            }
        }
        At::None
    }
}

/// The upstream's lines for a changed body: no Content-Length, and no
/// Last-Modified or ETag unless they are kept (the ETag then weak).
fn without_validators(passed: &mut Passed, keep: bool) {
    passed.edit_lines(|name, value| {
        if name.eq_ignore_ascii_case(b"content-length") {
            LineEdit::Drop
        } else if name.eq_ignore_ascii_case(b"last-modified") || name.eq_ignore_ascii_case(b"etag")
        {
            match keep {
                false => LineEdit::Drop,
                true if name.eq_ignore_ascii_case(b"etag") => etag_weakened(value),
                true => LineEdit::Keep,
            }
        } else {
            LineEdit::Keep
        }
    });
    passed.length = None;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matcher(pairs: &[(&str, &str)], once: bool) -> Matcher {
        let mut starts = [false; 256];
        for (f, _) in pairs {
            let c = f.as_bytes()[0];
            starts[usize::from(c.to_ascii_lowercase())] = true;
            starts[usize::from(c.to_ascii_uppercase())] = true;
        }
        Matcher {
            patterns: pairs
                .iter()
                .map(|(f, w)| Pattern {
                    find: Bytes::from(f.as_bytes().to_ascii_lowercase()),
                    with: Bytes::copy_from_slice(w.as_bytes()),
                    applied: false,
                })
                .collect(),
            starts,
            once,
            applied: 0,
            held: Vec::new(),
        }
    }

    /// The whole body fed in pieces of `size` bytes.
    fn run(m: &mut Matcher, body: &str, size: usize) -> String {
        let mut out = Vec::new();
        for piece in body.as_bytes().chunks(size) {
            out.extend(m.feed(Bytes::copy_from_slice(piece), false));
        }
        out.extend(m.feed(Bytes::new(), true));
        String::from_utf8_lossy(&out).into_owned()
    }

    #[test]
    fn the_first_string_in_order_wins_at_each_place() {
        for size in [1, 2, 3, 100] {
            let mut m = matcher(&[("abc", "X"), ("abcd", "Y"), ("cd", "Z")], false);
            assert_eq!(run(&mut m, "abcd ABCD cd", size), "Xd XD Z", "{size}");
            let mut m = matcher(&[("abcd", "Y"), ("abc", "X")], false);
            assert_eq!(run(&mut m, "abcd abc ab", size), "Y X ab", "{size}");
        }
    }

    #[test]
    fn once_replaces_each_string_once() {
        for size in [1, 4, 100] {
            let mut m = matcher(&[("a", "1"), ("b", "2")], true);
            assert_eq!(run(&mut m, "xaxbxaxb", size), "x1x2xaxb", "{size}");
        }
    }

    #[test]
    fn a_string_cut_at_the_end_goes_out_as_it_is() {
        let mut m = matcher(&[("hello", "bye")], false);
        assert_eq!(run(&mut m, "say hell", 3), "say hell");
    }
}
