//! Body framing read from a buffer: a Content-Length run or a chunked
//! body (chunk sizes by httparse). Shared by the client connection loop
//! (request bodies) and the upstream client (response bodies), which say
//! in their own words what an [`Invalid`] body is.

use bytes::Bytes;

use crate::http::h1::io::ReadBuf;

/// A chunked body that cannot be read: a bad chunk size, a missing CRLF
/// after a chunk's data, bad trailers, or a line past [`LINE_MAX`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Invalid;

/// Where a chunked body is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chunk {
    Size,
    Data(u64),
    /// The CRLF after a chunk's data.
    DataEnd,
    Trailers,
}

/// The body's framing, consumed as it is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decoder {
    Length(u64),
    Chunked(Chunk),
    Done,
}

/// A chunk-size line or a trailer section longer than this is refused.
const LINE_MAX: usize = 4096;

/// Up to `n` bytes (and at most `max`) of what `buf` holds, given to
/// `emit` as a piece of the body, and how many of the `n` remain; `None`
/// when it holds nothing (or `max` is 0).
fn take<T>(
    buf: &mut ReadBuf,
    n: u64,
    max: usize,
    emit: &mut impl FnMut(&[u8]) -> T,
) -> Option<(T, u64)> {
    let data = buf.data();
    if data.is_empty() || max == 0 {
        return None;
    }
    let len = n.min(data.len().min(max) as u64) as usize;
    let piece = emit(&data[..len]);
    buf.consume(len);
    Some((piece, n - len as u64))
}

impl Decoder {
    /// A body of `n` bytes (done at once when `n` is 0).
    pub fn length(n: u64) -> Decoder {
        if n == 0 {
            Decoder::Done
        } else {
            Decoder::Length(n)
        }
    }

    pub fn chunked() -> Decoder {
        Decoder::Chunked(Chunk::Size)
    }

    /// The next piece of the body from `buf`: `Ok(None)` when more input
    /// is needed (or at the end: see `Decoder::Done`).
    pub fn decode(&mut self, buf: &mut ReadBuf) -> Result<Option<Bytes>, Invalid> {
        self.decode_with(buf, usize::MAX, &mut Bytes::copy_from_slice)
    }

    /// [`Decoder::decode`], the piece (at most `max` bytes) given to
    /// `emit` as a slice of `buf`: a caller that copies it somewhere makes
    /// no `Bytes` of it.
    pub fn decode_with<T>(
        &mut self,
        buf: &mut ReadBuf,
        max: usize,
        emit: &mut impl FnMut(&[u8]) -> T,
    ) -> Result<Option<T>, Invalid> {
        loop {
            let data = buf.data();
            match *self {
                Decoder::Done => return Ok(None),
                Decoder::Length(n) => {
                    let Some((piece, left)) = take(buf, n, max, emit) else {
                        return Ok(None);
                    };
                    *self = Decoder::length(left);
                    return Ok(Some(piece));
                }
                Decoder::Chunked(Chunk::Size) => match httparse::parse_chunk_size(data) {
                    Ok(httparse::Status::Complete((used, size))) => {
                        buf.consume(used);
                        *self = Decoder::Chunked(if size == 0 {
                            Chunk::Trailers
                        } else {
                            Chunk::Data(size)
                        });
                    }
                    Ok(httparse::Status::Partial) if data.len() < LINE_MAX => return Ok(None),
                    _ => return Err(Invalid),
                },
                Decoder::Chunked(Chunk::Data(n)) => {
                    let Some((piece, left)) = take(buf, n, max, emit) else {
                        return Ok(None);
                    };
                    *self = Decoder::Chunked(if left == 0 {
                        Chunk::DataEnd
                    } else {
                        Chunk::Data(left)
                    });
                    return Ok(Some(piece));
                }
                Decoder::Chunked(Chunk::DataEnd) => {
                    // CRLF, or a bare LF as nginx takes it.
                    if data.starts_with(b"\r\n") {
                        buf.consume(2);
                    } else if data.starts_with(b"\n") {
                        buf.consume(1);
                    } else if data.is_empty() || data == b"\r" {
                        return Ok(None);
                    } else {
                        return Err(Invalid);
                    }
                    *self = Decoder::Chunked(Chunk::Size);
                }
                Decoder::Chunked(Chunk::Trailers) => {
                    // Trailers are read and ignored, as nginx does.
                    let mut slots = [httparse::EMPTY_HEADER; 32];
                    match httparse::parse_headers(data, &mut slots) {
                        Ok(httparse::Status::Complete((used, _))) => {
                            buf.consume(used);
                            *self = Decoder::Done;
                        }
                        Ok(httparse::Status::Partial) if data.len() < LINE_MAX => return Ok(None),
                        _ => return Err(Invalid),
                    }
                }
            }
        }
    }

    pub fn is_done(&self) -> bool {
        *self == Decoder::Done
    }

    /// Bytes of data the decoder can take straight from the socket,
    /// without framing in between.
    pub fn raw_run(&self) -> u64 {
        match *self {
            Decoder::Length(n) | Decoder::Chunked(Chunk::Data(n)) => n,
            _ => 0,
        }
    }

    /// `n` bytes of a raw run (at most [`Decoder::raw_run`]) were read
    /// past the buffer.
    pub fn took_raw(&mut self, n: u64) {
        match self {
            Decoder::Length(left) => {
                *left -= n;
                if *left == 0 {
                    *self = Decoder::Done;
                }
            }
            Decoder::Chunked(Chunk::Data(left)) => {
                *left -= n;
                if *left == 0 {
                    *self = Decoder::Chunked(Chunk::DataEnd);
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_decoding_with_extensions_and_trailers() {
        let mut d = Decoder::chunked();
        let mut buf = ReadBuf::new();
        let mut out = Vec::new();
        for piece in [
            &b"3;x=y\r\nab"[..],
            b"c\r\n",
            b"2\r\nde\r\n0\r\nT: 1\r\n",
            b"\r\n",
        ] {
            buf.push(piece);
            while let Some(p) = d.decode(&mut buf).expect("valid") {
                out.extend_from_slice(&p);
            }
        }
        assert_eq!(out, b"abcde");
        assert_eq!(d, Decoder::Done);
        let mut bad = Decoder::chunked();
        let mut buf = ReadBuf::new();
        buf.push(b"zz\r\n");
        assert!(bad.decode(&mut buf).is_err());
        let mut bad = Decoder::chunked();
        let mut buf = ReadBuf::new();
        buf.push(b"1\r\nabc");
        assert!(matches!(bad.decode(&mut buf), Ok(Some(_))));
        assert!(bad.decode(&mut buf).is_err());
    }

    #[test]
    fn length_stops_at_its_end() {
        let mut d = Decoder::length(3);
        let mut buf = ReadBuf::new();
        buf.push(b"abcdef");
        assert_eq!(
            d.decode(&mut buf).expect("valid").as_deref(),
            Some(&b"abc"[..])
        );
        assert!(d.is_done());
        assert_eq!(d.decode(&mut buf), Ok(None));
        assert_eq!(buf.data(), b"def");
        assert!(Decoder::length(0).is_done());
    }

    #[test]
    fn pieces_given_to_a_sink_stay_within_max() {
        let mut d = Decoder::chunked();
        let mut buf = ReadBuf::new();
        buf.push(b"5\r\nabcde\r\n0\r\n\r\n");
        let mut out = Vec::new();
        let mut append = |data: &[u8]| {
            out.extend_from_slice(data);
            data.len()
        };
        assert_eq!(d.decode_with(&mut buf, 2, &mut append), Ok(Some(2)));
        assert_eq!(d.decode_with(&mut buf, 2, &mut append), Ok(Some(2)));
        // Nothing with no room.
        assert_eq!(d.decode_with(&mut buf, 0, &mut append), Ok(None));
        assert_eq!(d.decode_with(&mut buf, 9, &mut append), Ok(Some(1)));
        assert_eq!(d.decode_with(&mut buf, 9, &mut append), Ok(None));
        assert!(d.is_done());
        assert_eq!(out, b"abcde");
    }
}
