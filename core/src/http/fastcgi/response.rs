//! The application's answer: STDOUT records carry CGI header lines, an
//! empty line, then the body; STDERR records carry lines for the error
//! log; END_REQUEST ends it. As nginx reads it: a `Status` line gives the
//! status (and the reason phrase the client sees), a `Location` without
//! one makes a 302, else 200.

use http::{StatusCode, Version};

use crate::http::fastcgi::record::{Deframer, Step, END_REQUEST, STDOUT};
use crate::http::h1::io::ReadBuf;
use crate::http::upstream_h1::head::{Framing, Head, Passed};
use crate::log::{self, Level};

/// How many header lines are read without an allocation.
const HEADERS: usize = 64;

/// Why the application's answer cannot be used: nginx's log line.
#[derive(Debug)]
pub struct Invalid(pub String);

/// The answer, read up to the end of its CGI header lines.
#[derive(Default)]
pub struct HeadReader {
    records: Deframer,
    /// STDOUT so far: the header lines (and what follows them).
    stdout: Vec<u8>,
    /// STDERR records read, each for one log line.
    pub stderr: Vec<Vec<u8>>,
    /// The body's reader, once the head is read.
    pub body: Option<BodyReader>,
}

impl HeadReader {
    /// Reads the records in `buf`: the head once its lines are all
    /// there, the rest of STDOUT then the body's start.
    pub fn parse(
        &mut self,
        buf: &mut ReadBuf,
        keep_hidden: bool,
        max: usize,
    ) -> Result<Option<Head>, Invalid> {
        loop {
            match self.records.next(buf.data(), usize::MAX) {
                Step::Partial => break,
                Step::Skip(n) => buf.consume(n),
                Step::Content(STDOUT, n) => {
                    let line_ends = buf.data()[..n].contains(&b'\n');
                    self.stdout.extend_from_slice(&buf.data()[..n]);
                    buf.consume(n);
                    // (The lines are parsed again only when one more may
                    // have ended: not once per byte of a head sent in
                    // tiny records.)
                    if self.stdout.len() > max {
                        return Err(Invalid("upstream sent too big header".into()));
                    }
                    if line_ends {
                        if let Some(done) = self.head(keep_hidden)? {
                            return Ok(Some(done));
                        }
                    }
                }
                Step::Content(_, n) => {
                    // (nginx too logs what one read brought of a record.)
                    self.stderr.push(buf.data()[..n].to_vec());
                    buf.consume(n);
                }
                // (nginx's line: a record it did not expect before the
                // head's end.)
                Step::End(_) => {
                    return Err(Invalid(format!(
                        "upstream sent unexpected FastCGI record: {END_REQUEST}"
                    )));
                }
                Step::Invalid(e) => return Err(Invalid(e)),
            }
        }
        Ok(None)
    }

    /// The head and the body's reader, once STDOUT has all the lines.
    fn head(&mut self, keep_hidden: bool) -> Result<Option<Head>, Invalid> {
        let Some((len, head)) = parse_head(&self.stdout, keep_hidden)? else {
            return Ok(None);
        };
        self.body = Some(BodyReader {
            records: std::mem::take(&mut self.records),
            pending: self.stdout.split_off(len),
            at: 0,
            done: false,
            context: None,
            ends_at_close: false,
        });
        Ok(Some(head))
    }
}

/// The head, if the header lines at the start of `data` are all there,
/// and their length with the empty line after them.
fn parse_head(data: &[u8], keep_hidden: bool) -> Result<Option<(usize, Head)>, Invalid> {
    let invalid = || Invalid("upstream sent invalid header".into());
    let mut slots = [httparse::EMPTY_HEADER; HEADERS];
    let parsed = match httparse::parse_headers(data, &mut slots) {
        Err(httparse::Error::TooManyHeaders) => {
            // Rare: as many slots as there are lines.
            let lines = data.iter().filter(|&&c| c == b'\n').count();
            let mut slots = vec![httparse::EMPTY_HEADER; lines];
            return match httparse::parse_headers(data, &mut slots).map_err(|_| invalid())? {
                httparse::Status::Complete((len, lines)) => {
                    Ok(Some((len, head(lines, keep_hidden)?)))
                }
                httparse::Status::Partial => Ok(None),
            };
        }
        parsed => parsed.map_err(|_| invalid())?,
    };
    match parsed {
        httparse::Status::Complete((len, lines)) => Ok(Some((len, head(lines, keep_hidden)?))),
        httparse::Status::Partial => Ok(None),
    }
}

/// The response head of CGI header lines, as nginx's
/// `ngx_http_fastcgi_process_header` makes it.
fn head(headers: &[httparse::Header<'_>], keep_hidden: bool) -> Result<Head, Invalid> {
    let mut status: Option<(StatusCode, Option<Box<[u8]>>)> = None;
    let mut passed = Box::new(Passed::default());
    let mut location = false;
    let (mut content_type, mut length) = (None, None);
    for h in headers {
        let name = h.name.as_bytes();
        if name.eq_ignore_ascii_case(b"status") {
            let code = h
                .value
                .get(..3)
                .and_then(|d| std::str::from_utf8(d).ok())
                .and_then(|d| d.parse::<u16>().ok())
                .and_then(|c| StatusCode::from_u16(c).ok())
                .ok_or_else(|| {
                    Invalid(format!(
                        "upstream sent invalid status \"{}\"",
                        String::from_utf8_lossy(h.value)
                    ))
                })?;
            let reason = h.value[3..].trim_ascii_start();
            let standard = crate::http::response::status_text(code).as_bytes();
            status = Some((code, (reason != standard).then(|| reason.into())));
            if !keep_hidden {
                continue;
            }
        }
        match hidden(name) {
            Some(Class::Dropped) => continue,
            Some(Class::Hidden) if !keep_hidden => continue,
            _ => {}
        }
        if name.eq_ignore_ascii_case(b"content-length") {
            passed.length = crate::http::h1::parse::content_length(h.value);
            if passed.length.is_none() {
                return Err(Invalid("upstream sent invalid header".into()));
            }
        }
        location |= name.eq_ignore_ascii_case(b"location");
        passed.redirect |= location || name.eq_ignore_ascii_case(b"refresh");
        passed.server |= name.eq_ignore_ascii_case(b"server");
        passed.date |= name.eq_ignore_ascii_case(b"date");
        // nginx writes the type and the length itself, so spelled and
        // placed first (PHP sends `Content-type`).
        if name.eq_ignore_ascii_case(b"content-type") {
            content_type.get_or_insert(h.value);
            continue;
        }
        if name.eq_ignore_ascii_case(b"content-length") {
            length.get_or_insert(h.value);
            continue;
        }
        passed.lines.extend_from_slice(name);
        passed.lines.extend_from_slice(b": ");
        passed.lines.extend_from_slice(h.value);
        passed.lines.extend_from_slice(b"\r\n");
    }
    if content_type.is_some() || length.is_some() {
        let mut lines = Vec::with_capacity(passed.lines.len() + 64);
        for (name, value) in [
            (&b"Content-Type"[..], content_type),
            (b"Content-Length", length),
        ] {
            if let Some(value) = value {
                for part in [name, b": ", value, b"\r\n"] {
                    lines.extend_from_slice(part);
                }
            }
        }
        lines.extend_from_slice(&passed.lines);
        passed.set_lines(lines);
    }
    let (status, reason) = match status {
        Some(s) => s,
        None if location => (StatusCode::FOUND, None),
        None => (StatusCode::OK, None),
    };
    passed.reason = reason;
    let (mut parts, ()) = http::Response::new(()).into_parts();
    parts.status = status;
    parts.version = Version::HTTP_11;
    Ok(Head {
        parts,
        passed,
        len: 0,
        framing: Framing::Close,
        keep_alive: true,
        upgrade: false,
    })
}

/// What a header line is to the FastCGI proxy.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// The connection's own (hop-by-hop): never passed.
    Dropped,
    /// Hidden by default (`fastcgi_hide_header`'s defaults): `Status`
    /// and the X-Accel-* lines nginx acts on. Unlike `proxy_pass`,
    /// Date and Server pass.
    Hidden,
}

/// The class of a line that is not simply passed.
pub fn hidden(name: &[u8]) -> Option<Class> {
    let is = |n: &[u8]| name.eq_ignore_ascii_case(n);
    if is(b"status")
        || is(b"x-accel-expires")
        || is(b"x-accel-redirect")
        || is(b"x-accel-limit-rate")
        || is(b"x-accel-buffering")
        || is(b"x-accel-charset")
    {
        Some(Class::Hidden)
    } else if is(b"connection") || is(b"keep-alive") || is(b"transfer-encoding") {
        Some(Class::Dropped)
    } else {
        None
    }
}

/// The body: the rest of STDOUT, to END_REQUEST.
pub struct BodyReader {
    records: Deframer,
    /// STDOUT read with the head, past its lines.
    pending: Vec<u8>,
    at: usize,
    done: bool,
    /// The request's connection and nginx's context of its log lines
    /// (`, client: ...`), for the stderr the body brings.
    pub context: Option<Box<(u64, String)>>,
    /// Without `fastcgi_keep_conn`, nginx takes the application's close
    /// for the end of its answer (no END_REQUEST needed, nothing logged).
    pub ends_at_close: bool,
}

impl BodyReader {
    /// END_REQUEST came.
    pub fn is_done(&self) -> bool {
        self.done && self.at == self.pending.len()
    }

    /// The next piece of at most `max` bytes, given to `sink`; `None`
    /// when `buf` holds no more of it (more is to be read, or it ended).
    pub fn decode<P>(
        &mut self,
        buf: &mut ReadBuf,
        max: usize,
        sink: &mut dyn FnMut(&[u8]) -> P,
    ) -> Result<Option<P>, &'static str> {
        if self.at < self.pending.len() {
            let n = (self.pending.len() - self.at).min(max);
            let piece = sink(&self.pending[self.at..self.at + n]);
            self.at += n;
            if self.at == self.pending.len() {
                self.pending = Vec::new();
                self.at = 0;
            }
            return Ok(Some(piece));
        }
        while !self.done {
            match self.records.next(buf.data(), max) {
                Step::Partial => return Ok(None),
                Step::Skip(n) => buf.consume(n),
                Step::Content(STDOUT, n) => {
                    let piece = sink(&buf.data()[..n]);
                    buf.consume(n);
                    return Ok(Some(piece));
                }
                Step::Content(_, n) => {
                    log_stderr(&buf.data()[..n], self.context.as_deref());
                    buf.consume(n);
                }
                Step::End(n) => {
                    buf.consume(n);
                    self.done = true;
                }
                Step::Invalid(e) => {
                    // nginx's line, with the request's context; the
                    // client's answer is cut short.
                    log_line(&e, self.context.as_deref());
                    return Err("upstream sent invalid FastCGI record");
                }
            }
        }
        Ok(None)
    }
}

/// nginx's line for what the application wrote to stderr: trailing line
/// ends, dots and spaces dropped.
pub fn stderr_line(text: &[u8]) -> String {
    let end = text
        .iter()
        .rposition(|&c| !matches!(c, b'\r' | b'\n' | b'.' | b' '))
        .map_or(0, |i| i + 1);
    format!(
        "FastCGI sent in stderr: \"{}\"",
        String::from_utf8_lossy(&text[..end])
    )
}

/// A body's stderr, with the request's context where the proxy gave it.
#[cold]
fn log_stderr(text: &[u8], context: Option<&(u64, String)>) {
    log_line(&stderr_line(text), context);
}

/// `message` at `error`, as read amid the body, with the request's
/// context where the proxy gave it.
#[cold]
fn log_line(message: &str, context: Option<&(u64, String)>) {
    let (conn, context) = match context {
        Some((conn, context)) => (Some(*conn), context.as_str()),
        None => (None, ""),
    };
    log::write(
        Level::Error,
        conn,
        &format!("{message} while reading upstream{context}"),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::fastcgi::record::{header, END_REQUEST, STDERR};

    fn records(parts: &[(u8, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        for (kind, content) in parts {
            out.extend_from_slice(&header(*kind, content.len(), 0));
            out.extend_from_slice(content);
        }
        out
    }

    fn read(data: &[u8]) -> (Head, Vec<u8>, Vec<Vec<u8>>) {
        let mut buf = ReadBuf::new();
        buf.push(data);
        let mut reader = HeadReader::default();
        let head = reader.parse(&mut buf, false, 1 << 20).unwrap().unwrap();
        let mut body = reader.body.take().unwrap();
        let mut out = Vec::new();
        while let Some(()) = body
            .decode(&mut buf, 3, &mut |d| out.extend_from_slice(d))
            .unwrap()
        {}
        assert!(body.is_done());
        (head, out, reader.stderr)
    }

    #[test]
    fn status_lines_and_body() {
        let data = records(&[
            (STDERR, b"PHP Notice: x\n"),
            (
                STDOUT,
                b"Status: 404 Nope\r\nX-Powered-By: PHP\r\nContent-type: text/html\r\n\r\nmiss",
            ),
            (STDOUT, b"ing"),
            (STDOUT, b""),
            (END_REQUEST, &[0; 8]),
        ]);
        let (head, body, stderr) = read(&data);
        assert_eq!(head.parts.status, 404);
        assert_eq!(head.passed.reason.as_deref(), Some(&b"Nope"[..]));
        assert_eq!(
            head.passed.lines,
            b"Content-Type: text/html\r\nX-Powered-By: PHP\r\n"
        );
        assert_eq!(body, b"missing");
        assert_eq!(stderr, vec![b"PHP Notice: x\n".to_vec()]);
        assert_eq!(
            stderr_line(&stderr[0]),
            "FastCGI sent in stderr: \"PHP Notice: x\""
        );
    }

    #[test]
    fn a_location_alone_is_a_302() {
        let data = records(&[(STDOUT, b"Location: /x\n\n"), (END_REQUEST, &[0; 8])]);
        let (head, body, _) = read(&data);
        assert_eq!(head.parts.status, 302);
        assert!(head.passed.redirect);
        assert!(body.is_empty());
    }

    #[test]
    fn end_before_the_head() {
        let data = records(&[
            (STDOUT, b"Content-Type: text/html\r\n"),
            (END_REQUEST, &[0; 8]),
        ]);
        let mut buf = ReadBuf::new();
        buf.push(&data);
        let e = HeadReader::default()
            .parse(&mut buf, false, 1 << 20)
            .err()
            .unwrap();
        assert_eq!(e.0, "upstream sent unexpected FastCGI record: 3");
    }
}
