//! TLS to clients: the handshake (SNI picks the server's config, ALPN the
//! protocol) and, for HTTP/1.x, the connection as the h1 loop's [`Io`].
//!
//! The h1 loop reads and writes through `&self` with readiness waits, so
//! that a request body can be read while the response is written, and an
//! idle connection holds no buffer. [`TlsIo`] gives rustls that shape:
//! the TCP stream's readiness, and a per-connection rustls state behind a
//! mutex (the loop's reader and writer are futures of one task, so it is
//! never contended).

use std::future::Future;
use std::io::{self, IoSlice, Read, Write};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use bytes::BufMut;
use rustls::ServerConnection;
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::LazyConfigAcceptor;

use crate::conf::model::VerifyClient;
use crate::http::client_cert::{ClientAuth, ClientCert};
use crate::http::h1::Io;
use crate::runtime::ListenGroup;

/// A request that came over TLS (`$scheme`, `$https`, `$ssl_*`), as a
/// request extension: its connection's session.
#[derive(Clone, Debug)]
pub struct Https(pub Arc<Session>);

/// What a connection's handshake settled, as nginx's `$ssl_*` variables
/// show it.
#[derive(Debug)]
pub struct Session {
    /// `$ssl_protocol`: `TLSv1.3`, `TLSv1.2`.
    pub protocol: &'static str,
    /// `$ssl_cipher`: the suite's OpenSSL name.
    pub cipher: &'static str,
    /// `$ssl_server_name`: the ClientHello's SNI, if any.
    pub server_name: Option<Box<str>>,
    /// `$ssl_session_reused`: the handshake resumed a session.
    pub reused: bool,
    /// `ssl_verify_client` of the handshake's server.
    pub verify: VerifyClient,
    /// The client's certificate, checked (`$ssl_client_*`).
    pub client: Option<Box<ClientCert>>,
}

impl Session {
    /// The session of a finished handshake, with the client's
    /// certificate checked as `auth` says.
    pub fn of(conn: &ServerConnection, auth: Option<&ClientAuth>) -> Arc<Session> {
        use rustls::{HandshakeKind, ProtocolVersion};
        let protocol = match conn.protocol_version() {
            Some(ProtocolVersion::TLSv1_3) => "TLSv1.3",
            Some(ProtocolVersion::TLSv1_2) => "TLSv1.2",
            _ => "",
        };
        let cipher = conn
            .negotiated_cipher_suite()
            .map_or("", |s| crate::runtime::tls::suite_name(s.suite()));
        Arc::new(Session {
            protocol,
            cipher,
            server_name: conn.server_name().map(Box::from),
            reused: conn.handshake_kind() == Some(HandshakeKind::Resumed),
            verify: auth.map_or(VerifyClient::Off, |a| a.mode),
            client: auth.and_then(|a| a.examine(conn.peer_certificates())),
        })
    }

    /// What a request of this connection is refused with, as nginx's
    /// `ngx_http_process_request` checks (495, 496), and its line (at
    /// `info`); `None` where it goes on.
    pub fn refusal(&self) -> Option<(u16, String)> {
        match (&self.client, self.verify) {
            (_, VerifyClient::Off) => None,
            // nginx's `ngx_ssl_verify_error_optional`: the errors of an
            // unknown issuer are let through (not 2: a CA of the files
            // whose own issuer is missing).
            (Some(c), VerifyClient::OptionalNoCa)
                if c.failure
                    .is_none_or(|(code, _)| matches!(code, 18 | 19 | 20 | 21 | 27)) =>
            {
                None
            }
            (None, VerifyClient::On) => {
                Some((496, "client sent no required SSL certificate".to_owned()))
            }
            (None, _) => None,
            (Some(c), _) => c.failure.map(|(code, why)| {
                (
                    495,
                    format!("client SSL certificate verify error: ({code}:{why})"),
                )
            }),
        }
    }

    /// `$ssl_client_verify`: `NONE` without a certificate.
    pub fn client_verify(&self) -> &str {
        self.client.as_ref().map_or("NONE", |c| &c.verify)
    }
}

/// The handshake was rejected (`ssl_reject_handshake on`).
#[derive(Debug)]
pub struct Rejected;

impl std::fmt::Display for Rejected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("handshake rejected")
    }
}

impl std::error::Error for Rejected {}

/// What a handshake gave, and the session it settled.
pub enum Accepted {
    /// ALPN chose `h2` (boxed: the variants stay small).
    H2(Box<TlsStream<TcpStream>>, Arc<Session>),
    Http1(TlsIo, Arc<Session>),
}

/// The TLS handshake on a new connection: the ClientHello's SNI picks the
/// server, as the Host header would (default server without SNI or
/// match), and so its certificate, protocols and ALPN list.
pub async fn accept(stream: TcpStream, group: &ListenGroup) -> io::Result<Accepted> {
    let Some(tls) = &group.tls else {
        return Err(io::ErrorKind::InvalidInput.into());
    };
    let start = LazyConfigAcceptor::new(rustls::server::Acceptor::default(), stream).await?;
    let index = {
        let hello = start.client_hello();
        match hello.server_name() {
            Some(name) if name.bytes().any(|c| c.is_ascii_uppercase()) => {
                group.server_index(Some(&name.to_ascii_lowercase()))
            }
            name => group.server_index(name),
        }
    };
    // `ssl_reject_handshake on`: the connection closes (nginx sends an
    // `unrecognized_name` alert first; rustls offers no way to).
    let Some(config) = tls.configs[index].clone() else {
        return Err(io::Error::other(Rejected));
    };
    let stream = start.into_stream(config).await?;
    let auth = tls.client_auth.get(index).and_then(Option::as_deref);
    let session = Session::of(stream.get_ref().1, auth);
    if stream.get_ref().1.alpn_protocol() == Some(b"h2") {
        return Ok(Accepted::H2(Box::new(stream), session));
    }
    let (tcp, conn) = stream.into_inner();
    Ok(Accepted::Http1(
        TlsIo {
            tcp,
            tls: Box::new(Mutex::new(conn)),
        },
        session,
    ))
}

/// A TLS connection as the h1 loop's [`Io`].
pub struct TlsIo {
    tcp: TcpStream,
    /// Boxed: rustls's state is over a kilobyte, and the connection's
    /// task (whose future moves it about) is sized by its largest state.
    tls: Box<Mutex<ServerConnection>>,
}

/// The TCP stream as rustls's reader and writer: non-blocking calls.
struct Tcp<'a>(&'a TcpStream);

impl Read for Tcp<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.try_read(buf)
    }
}

impl Write for Tcp<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.try_write(buf)
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.0.try_write_vectored(bufs)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl TlsIo {
    fn lock(&self) -> MutexGuard<'_, ServerConnection> {
        // A poisoned lock still holds a consistent connection state.
        self.tls.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sends what rustls holds; `WouldBlock` when the socket is full.
    fn push(&self, tls: &mut ServerConnection) -> io::Result<()> {
        while tls.wants_write() {
            if tls.write_tls(&mut Tcp(&self.tcp))? == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
        }
        Ok(())
    }

    /// Whether a read would not wait for the socket: plaintext is
    /// buffered, the peer closed, or the connection failed.
    fn ready(&self) -> bool {
        let mut tls = self.lock();
        match tls.process_new_packets() {
            Ok(state) => state.plaintext_bytes_to_read() > 0 || state.peer_has_closed(),
            Err(_) => true,
        }
    }

    /// Reads plaintext into `dst` (at most `max` bytes through `read`),
    /// reading and decrypting records from the socket as needed.
    fn read_with(
        &self,
        mut read: impl FnMut(&mut ServerConnection, usize) -> io::Result<usize>,
    ) -> io::Result<usize> {
        let mut tls = self.lock();
        loop {
            let state = match tls.process_new_packets() {
                Ok(state) => state,
                Err(e) => {
                    // The alert rustls queued for the peer, best effort.
                    let _ = self.push(&mut tls);
                    return Err(io::Error::new(io::ErrorKind::InvalidData, e));
                }
            };
            // A KeyUpdate answer or an alert, best effort: what the
            // socket does not take now goes with the next write.
            if tls.wants_write() {
                match self.push(&mut tls) {
                    Err(e) if e.kind() != io::ErrorKind::WouldBlock => return Err(e),
                    _ => {}
                }
            }
            let available = state.plaintext_bytes_to_read();
            if available > 0 {
                return read(&mut tls, available);
            }
            if state.peer_has_closed() {
                return Ok(0);
            }
            match tls.read_tls(&mut Tcp(&self.tcp)) {
                // The end without close_notify: the end all the same.
                Ok(0) => return Ok(0),
                Ok(_) => {}
                Err(e) => return Err(e),
            }
        }
    }
}

impl Io for TlsIo {
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.ready() {
            return Poll::Ready(Ok(()));
        }
        self.tcp.poll_read_ready(cx)
    }

    async fn readable(&self) -> io::Result<()> {
        if self.ready() {
            return Ok(());
        }
        self.tcp.readable().await
    }

    fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.tcp.poll_write_ready(cx)
    }

    fn writable(&self) -> impl Future<Output = io::Result<()>> + Send + '_ {
        self.tcp.writable()
    }

    fn try_read(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.read_with(|tls, _| tls.reader().read(buf))
    }

    fn try_read_buf<B: BufMut>(&self, buf: &mut B) -> io::Result<usize> {
        self.read_with(|tls, available| {
            let chunk = buf.chunk_mut();
            let len = chunk.len().min(available);
            // SAFETY: the first `len` bytes of the chunk are initialised
            // (zeroed) before they are read into, and `advance_mut` covers
            // only what was written.
            unsafe {
                std::ptr::write_bytes(chunk.as_mut_ptr(), 0, len);
                let dst = std::slice::from_raw_parts_mut(chunk.as_mut_ptr(), len);
                let n = tls.reader().read(dst)?;
                buf.advance_mut(n);
                Ok(n)
            }
        })
    }

    fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
        self.try_write_vectored(&[IoSlice::new(buf)])
    }

    fn try_write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let mut tls = self.lock();
        // Records still waiting go first: rustls's buffer does not grow
        // past what the socket takes.
        self.push(&mut tls)?;
        let n = tls.writer().write_vectored(bufs)?;
        match self.push(&mut tls) {
            Err(e) if e.kind() != io::ErrorKind::WouldBlock => Err(e),
            // Taken: what the socket did not take goes out with the next
            // write or `try_flush`.
            _ => Ok(n),
        }
    }

    fn try_flush(&self) -> io::Result<()> {
        let mut tls = self.lock();
        self.push(&mut tls)
    }

    fn shutdown_write(&self) {
        {
            let mut tls = self.lock();
            tls.send_close_notify();
            let _ = self.push(&mut tls);
        }
        let _ = socket2::SockRef::from(&self.tcp).shutdown(std::net::Shutdown::Write);
    }

    /// The records that came, decrypted: a close_notify (or the socket's
    /// end, or a broken record) is the end; plaintext is a pipelined
    /// request, kept for the loop. Records are read rather than peeked:
    /// in TLS 1.3 an alert looks like data from outside.
    fn try_closed(&self) -> io::Result<bool> {
        let mut tls = self.lock();
        loop {
            match tls.process_new_packets() {
                Ok(state) if state.plaintext_bytes_to_read() > 0 => return Ok(false),
                Ok(state) if state.peer_has_closed() => return Ok(true),
                Ok(_) => {}
                Err(_) => return Ok(true),
            }
            match tls.read_tls(&mut Tcp(&self.tcp)) {
                Ok(0) => return Ok(true),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Err(e),
                Err(_) => return Ok(true),
            }
        }
    }
}

impl Drop for TlsIo {
    /// A closing connection tells the client so (close_notify), as nginx's
    /// `SSL_shutdown`, if the socket takes it now.
    fn drop(&mut self) {
        let tls = self.tls.get_mut().unwrap_or_else(|e| e.into_inner());
        tls.send_close_notify();
        while tls.wants_write() {
            match tls.write_tls(&mut Tcp(&self.tcp)) {
                Ok(n) if n > 0 => {}
                _ => break,
            }
        }
    }
}
