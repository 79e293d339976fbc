//! Writing a request: the head, then the body as it comes, framed as the
//! head says (as is for a Content-Length, re-encoded for chunked). The
//! head and a body piece that is ready go out in one vectored write.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf as _, Bytes};
use http_body::Body as _;
use tokio::io::AsyncWrite;

use crate::http::fastcgi::record;
use crate::http::upstream_h1::request::{Framing, ReqBody, RequestHead};

/// Why a request could not be written.
pub enum SendError {
    Io(io::Error),
    /// The client's body failed (it closed, or sent a bad chunk).
    Body,
}

/// The longest chunk-size line: 16 hex digits and CRLF.
const LINE: usize = 18;

/// What is to be written, in order: the rest of the head, a chunk-size
/// line, a body piece, then the CRLF after a chunk or the last chunk.
struct Queue<'a> {
    head: &'a [u8],
    line: [u8; LINE],
    line_at: usize,
    line_end: usize,
    data: Bytes,
    tail: &'static [u8],
}

impl<'a> Queue<'a> {
    fn is_empty(&self) -> bool {
        self.head.is_empty() && self.body_is_empty()
    }

    fn body_is_empty(&self) -> bool {
        self.line_at == self.line_end && self.data.is_empty() && self.tail.is_empty()
    }

    fn slices<'s>(&'s self, out: &mut [IoSlice<'s>; 4]) -> usize {
        let parts: [&'s [u8]; 4] = [
            self.head,
            &self.line[self.line_at..self.line_end],
            &self.data,
            self.tail,
        ];
        let mut n = 0;
        for p in parts {
            if !p.is_empty() {
                out[n] = IoSlice::new(p);
                n += 1;
            }
        }
        n
    }

    fn first(&self) -> &[u8] {
        if !self.head.is_empty() {
            self.head
        } else if self.line_at < self.line_end {
            &self.line[self.line_at..self.line_end]
        } else if !self.data.is_empty() {
            &self.data
        } else {
            self.tail
        }
    }

    fn advance(&mut self, mut n: usize) {
        let k = n.min(self.head.len());
        self.head = &self.head[k..];
        n -= k;
        let k = n.min(self.line_end - self.line_at);
        self.line_at += k;
        n -= k;
        let k = n.min(self.data.len());
        self.data.advance(k);
        n -= k;
        let k = n.min(self.tail.len());
        self.tail = &self.tail[k..];
    }

    /// Queues `data` as a chunk: its size line, the data and its CRLF.
    fn chunk(&mut self, data: Bytes) {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut len = data.len();
        let mut digits = [0u8; 16];
        let mut i = digits.len();
        loop {
            i -= 1;
            digits[i] = HEX[len & 0xf];
            len >>= 4;
            if len == 0 {
                break;
            }
        }
        let n = digits.len() - i;
        self.line[..n].copy_from_slice(&digits[i..]);
        self.line[n..n + 2].copy_from_slice(b"\r\n");
        self.line_at = 0;
        self.line_end = n + 2;
        self.data = data;
        self.tail = b"\r\n";
    }

    /// Queues `data` as a FastCGI STDIN record: its header, the data, its
    /// padding.
    fn record(&mut self, data: Bytes) {
        let pad = record::padding(data.len());
        self.line[..8].copy_from_slice(&record::header(record::STDIN, data.len(), pad));
        self.line_at = 0;
        self.line_end = 8;
        self.data = data;
        self.tail = &record::PADDING[..pad];
    }
}

/// nginx's largest STDIN record.
const STDIN_MAX: usize = 32 * 1024;

/// The empty STDIN record that ends a FastCGI request's body.
static STDIN_END: [u8; 8] = [record::VERSION, record::STDIN, 0, 1, 0, 0, 0, 0];

/// One request being written.
pub struct Sender<'a> {
    queue: Queue<'a>,
    framing: Framing,
    /// Body bytes still to send under a Content-Length.
    left: u64,
    body_done: bool,
    /// The piece being written came from the client's body (it goes back
    /// to the body if nothing was written).
    from_client: bool,
    /// Bytes written so far; 0 means the request never left.
    pub written: u64,
    /// What is left of a piece too long for one FastCGI record.
    rest: Bytes,
    /// A buffered body was queued (FastCGI's end record follows it).
    buffered_taken: bool,
}

impl<'a> Sender<'a> {
    pub fn new(head: &'a RequestHead) -> Sender<'a> {
        let (left, body_done) = match head.framing {
            Framing::None => (0, true),
            Framing::Length(n) => (n, n == 0),
            Framing::Chunked | Framing::FastCgi => (0, false),
        };
        Sender {
            queue: Queue {
                head: head.bytes(),
                line: [0; LINE],
                line_at: 0,
                line_end: 0,
                data: Bytes::new(),
                tail: b"",
            },
            framing: head.framing,
            left,
            body_done,
            from_client: false,
            written: 0,
            rest: Bytes::new(),
            buffered_taken: false,
        }
    }

    /// Whether the whole request, body included, was written.
    pub fn done(&self) -> bool {
        self.body_done && self.queue.is_empty()
    }

    /// Writes what can be written, taking body pieces as they come:
    /// ready when the whole request is out.
    pub fn poll<W: AsyncWrite + Unpin>(
        &mut self,
        cx: &mut Context<'_>,
        io: &mut W,
        body: &mut ReqBody,
    ) -> Poll<Result<(), SendError>> {
        loop {
            if !self.body_done && self.queue.body_is_empty() {
                if let Poll::Ready(Err(e)) = self.poll_piece(cx, body) {
                    return Poll::Ready(Err(e));
                }
            }
            if self.queue.is_empty() {
                return if self.body_done {
                    Poll::Ready(Ok(()))
                } else {
                    // Waiting for the client's body, which wakes us.
                    Poll::Pending
                };
            }
            let written = if io.is_write_vectored() {
                let mut slices = [IoSlice::new(&[]); 4];
                let n = self.queue.slices(&mut slices);
                Pin::new(&mut *io).poll_write_vectored(cx, &slices[..n])
            } else {
                Pin::new(&mut *io).poll_write(cx, self.queue.first())
            };
            match written {
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Err(SendError::Io(io::ErrorKind::WriteZero.into())))
                }
                Poll::Ready(Ok(n)) => {
                    self.queue.advance(n);
                    self.written += n as u64;
                    if self.queue.body_is_empty() {
                        self.from_client = false;
                    }
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(SendError::Io(e))),
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    /// Queues the body's next piece, or its end, if it is there.
    fn poll_piece(
        &mut self,
        cx: &mut Context<'_>,
        body: &mut ReqBody,
    ) -> Poll<Result<(), SendError>> {
        loop {
            let piece = match body {
                _ if !self.rest.is_empty() => Some(std::mem::take(&mut self.rest)),
                ReqBody::Empty => None,
                ReqBody::Buffered(_) if self.buffered_taken => None,
                ReqBody::Buffered(b) => {
                    // Sent whole: the Content-Length is its length.
                    self.left = b.len() as u64;
                    self.buffered_taken = true;
                    Some(b.clone())
                }
                ReqBody::Client { body, unsent } => match unsent.take() {
                    Some(p) => Some(p),
                    None => match Pin::new(body).poll_frame(cx) {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(None) => None,
                        Poll::Ready(Some(Err(_))) => return Poll::Ready(Err(SendError::Body)),
                        Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                            Ok(data) if !data.is_empty() => Some(data),
                            _ => continue,
                        },
                    },
                },
            };
            self.from_client = matches!(body, ReqBody::Client { .. }) && piece.is_some();
            match (piece, self.framing) {
                (Some(mut data), Framing::Length(_)) => {
                    // Never more than announced.
                    data.truncate(usize::try_from(self.left).unwrap_or(usize::MAX));
                    self.left -= data.len() as u64;
                    self.body_done = self.left == 0;
                    self.queue.data = data;
                }
                (Some(data), Framing::Chunked) => self.queue.chunk(data),
                (Some(mut data), Framing::FastCgi) => {
                    if data.len() > STDIN_MAX {
                        self.rest = data.split_off(STDIN_MAX);
                    }
                    self.queue.record(data);
                }
                (None, Framing::FastCgi) => {
                    self.queue.tail = &STDIN_END;
                    self.body_done = true;
                }
                (Some(_), Framing::None) => self.body_done = true,
                (None, Framing::Chunked) => {
                    self.queue.tail = b"0\r\n\r\n";
                    self.body_done = true;
                }
                // A body shorter than its Content-Length: the client's
                // connection failed, and the upstream must not take the
                // request as complete.
                (None, Framing::Length(_)) if self.left > 0 => {
                    return Poll::Ready(Err(SendError::Body))
                }
                (None, _) => self.body_done = true,
            }
            return Poll::Ready(Ok(()));
        }
    }

    /// The request never left (nothing written): a piece taken from the
    /// client's body goes back to it for the next try.
    pub fn give_back(self, body: &mut ReqBody) {
        if self.written != 0 || !self.from_client {
            return;
        }
        if let ReqBody::Client { unsent, .. } = body {
            let data = if self.rest.is_empty() {
                self.queue.data
            } else {
                // (A long piece split for FastCGI goes back whole.)
                let mut whole = Vec::with_capacity(self.queue.data.len() + self.rest.len());
                whole.extend_from_slice(&self.queue.data);
                whole.extend_from_slice(&self.rest);
                Bytes::from(whole)
            };
            if !data.is_empty() {
                *unsent = Some(data);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::upstream_h1::request::HeadWriter;

    /// Collects writes, `limit` bytes at most each.
    struct Collect {
        out: Vec<u8>,
        limit: usize,
    }

    impl AsyncWrite for Collect {
        fn poll_write(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            let this = self.get_mut();
            let n = buf.len().min(this.limit);
            this.out.extend_from_slice(&buf[..n]);
            Poll::Ready(Ok(n))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    fn send(head: &RequestHead, body: &mut ReqBody, limit: usize) -> Vec<u8> {
        let mut io = Collect {
            out: Vec::new(),
            limit,
        };
        let mut sender = Sender::new(head);
        let waker = noop_waker();
        let mut cx = Context::from_waker(&waker);
        match sender.poll(&mut cx, &mut io, body) {
            Poll::Ready(Ok(())) => {}
            _ => panic!("not sent whole"),
        }
        io.out
    }

    fn noop_waker() -> std::task::Waker {
        struct Noop;
        impl std::task::Wake for Noop {
            fn wake(self: std::sync::Arc<Self>) {}
        }
        std::task::Waker::from(std::sync::Arc::new(Noop))
    }

    #[test]
    fn buffered_bodies_go_with_their_length_in_pieces() {
        let head = HeadWriter::new(&http::Method::POST, "/", false, Framing::Length(5)).finish();
        let mut body = ReqBody::Buffered(Bytes::from_static(b"hello"));
        let out = send(&head, &mut body, 3);
        assert_eq!(out, b"POST / HTTP/1.0\r\nContent-Length: 5\r\n\r\nhello");
    }

    #[test]
    fn chunk_lines() {
        let mut q = Queue {
            head: b"",
            line: [0; LINE],
            line_at: 0,
            line_end: 0,
            data: Bytes::new(),
            tail: b"",
        };
        q.chunk(Bytes::from(vec![b'x'; 0x1a2]));
        assert_eq!(&q.line[..q.line_end], b"1a2\r\n");
        q.chunk(Bytes::from_static(b"a"));
        assert_eq!(&q.line[..q.line_end], b"1\r\n");
        assert_eq!(q.tail, b"\r\n");
    }
}
