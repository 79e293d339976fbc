//! FastCGI records (FastCGI 1.0, section 3.3): an 8-byte header (version,
//! type, request id, content length, padding length), the content, the
//! padding. nginx asks one request per connection at a time, with id 1.

pub const VERSION: u8 = 1;
pub const BEGIN_REQUEST: u8 = 1;
pub const END_REQUEST: u8 = 3;
pub const PARAMS: u8 = 4;
pub const STDIN: u8 = 5;
pub const STDOUT: u8 = 6;
pub const STDERR: u8 = 7;

/// The longest content one record carries.
pub const MAX_CONTENT: usize = 0xffff;

/// The role nginx asks for: the application answers the request.
const RESPONDER: u8 = 1;
/// BEGIN_REQUEST's flag: keep the connection after the request.
const KEEP_CONN: u8 = 1;

/// Zeros to pad a record's content to a multiple of 8 bytes, as nginx
/// writes them.
pub static PADDING: [u8; 7] = [0; 7];

/// The padding after `len` bytes of content.
pub fn padding(len: usize) -> usize {
    (8 - len % 8) % 8
}

/// A record's header.
pub fn header(kind: u8, len: usize, padding: usize) -> [u8; 8] {
    let len = len as u16;
    [
        VERSION,
        kind,
        0,
        1,
        (len >> 8) as u8,
        len as u8,
        padding as u8,
        0,
    ]
}

/// The BEGIN_REQUEST record.
pub fn begin_request(out: &mut Vec<u8>, keep_conn: bool) {
    out.extend_from_slice(&header(BEGIN_REQUEST, 8, 0));
    let flags = if keep_conn { KEEP_CONN } else { 0 };
    out.extend_from_slice(&[0, RESPONDER, flags, 0, 0, 0, 0, 0]);
}

/// A name-value pair's two lengths, each one byte below 128, else four
/// with the high bit set, written into `out`: how many bytes they took.
pub fn lengths(out: &mut [u8; 8], name: usize, value: usize) -> usize {
    let mut n = 0;
    for len in [name, value] {
        if len < 128 {
            out[n] = len as u8;
            n += 1;
        } else {
            out[n..n + 4].copy_from_slice(&(len as u32 | 0x8000_0000).to_be_bytes());
            n += 4;
        }
    }
    n
}

/// What [`Deframer::next`] found at the start of the bytes it was given.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// More bytes are needed.
    Partial,
    /// This many bytes were a header or padding, consumed.
    Skip(usize),
    /// This many bytes of a record's content, of this type.
    Content(u8, usize),
    /// The END_REQUEST record ended, after this many bytes.
    End(usize),
    /// Not FastCGI: the log line's text.
    Invalid(String),
}

/// Reads the upstream's records one piece at a time; what it has not
/// consumed stays in the caller's buffer.
#[derive(Debug, Default)]
pub struct Deframer {
    /// The record being read: its type, content and padding left.
    kind: u8,
    content: usize,
    padding: usize,
    /// Inside a record (its header read).
    open: bool,
}

impl Deframer {
    /// The next step over `data`, which starts where the last step ended;
    /// a step of content takes at most `max` bytes.
    pub fn next(&mut self, data: &[u8], max: usize) -> Step {
        if !self.open {
            let Some(h) = data.get(..8) else {
                return Step::Partial;
            };
            if h[0] != VERSION {
                return Step::Invalid(format!(
                    "upstream sent unsupported FastCGI protocol version: {}",
                    h[0]
                ));
            }
            if !matches!(h[1], STDOUT | STDERR | END_REQUEST) {
                return Step::Invalid(format!("upstream sent unexpected FastCGI record: {}", h[1]));
            }
            self.kind = h[1];
            self.content = usize::from(u16::from_be_bytes([h[4], h[5]]));
            self.padding = usize::from(h[6]);
            self.open = true;
            return Step::Skip(8);
        }
        if self.content > 0 {
            if self.kind == END_REQUEST {
                // Its body (the application's status) is read whole.
                if data.len() < self.content + self.padding {
                    return Step::Partial;
                }
                self.open = false;
                return Step::End(self.content + self.padding);
            }
            let n = data.len().min(self.content).min(max);
            if n == 0 {
                return Step::Partial;
            }
            self.content -= n;
            return Step::Content(self.kind, n);
        }
        if self.kind == END_REQUEST {
            if data.len() < self.padding {
                return Step::Partial;
            }
            self.open = false;
            return Step::End(self.padding);
        }
        if self.padding > 0 {
            let n = data.len().min(self.padding);
            if n == 0 {
                return Step::Partial;
            }
            self.padding -= n;
            if self.padding == 0 {
                self.open = false;
            }
            return Step::Skip(n);
        }
        self.open = false;
        Step::Skip(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every content byte of `data`, by type, and whether it ended.
    fn read(data: &[u8], piece: usize) -> (Vec<u8>, Vec<u8>, bool) {
        let mut d = Deframer::default();
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let mut at = 0;
        let mut limit = piece;
        loop {
            let end = limit.min(data.len());
            match d.next(&data[at..end], usize::MAX) {
                Step::Partial if end == data.len() => return (out, err, false),
                Step::Partial => limit += piece,
                Step::Skip(n) => at += n,
                Step::Content(STDOUT, n) => {
                    out.extend_from_slice(&data[at..at + n]);
                    at += n;
                }
                Step::Content(_, n) => {
                    err.extend_from_slice(&data[at..at + n]);
                    at += n;
                }
                Step::End(_) => return (out, err, true),
                Step::Invalid(e) => panic!("{e}"),
            }
        }
    }

    #[test]
    fn records_in_any_pieces() {
        let mut data = Vec::new();
        for (kind, content) in [
            (STDERR, &b"oops"[..]),
            (STDOUT, b"Status: 200\r\n\r\nhello"),
        ] {
            data.extend_from_slice(&header(kind, content.len(), padding(content.len())));
            data.extend_from_slice(content);
            data.extend_from_slice(&PADDING[..padding(content.len())]);
        }
        data.extend_from_slice(&header(STDOUT, 0, 0));
        data.extend_from_slice(&header(END_REQUEST, 8, 0));
        data.extend_from_slice(&[0; 8]);
        for piece in [1, 3, 8, 1000] {
            let (out, err, ended) = read(&data, piece);
            assert_eq!(out, b"Status: 200\r\n\r\nhello", "piece {piece}");
            assert_eq!(err, b"oops");
            assert!(ended);
        }
    }

    #[test]
    fn lengths_past_127_take_four_bytes() {
        let mut out = [0u8; 8];
        let n = lengths(&mut out, 127, 300);
        assert_eq!(out[..n], [127, 0x80, 0, 1, 44]);
    }

    #[test]
    fn not_fastcgi() {
        let mut d = Deframer::default();
        assert!(matches!(
            d.next(b"HTTP/1.1 200 OK\r\n", 9),
            Step::Invalid(_)
        ));
    }
}
