//! One upstream connection: its timed transport and what the keep-alive
//! rules need to know about it. A connection belongs to one request at a
//! time (its future writes and reads it directly, no task in between);
//! between requests it sits in the per-worker idle pool (`http::pool`)
//! holding no buffer.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpStream;

use crate::http::pool::{TlsKey, TlsTarget};
use crate::http::upstream_h1::stream::{Stream, TimedIo};
use crate::upstream::tls;

pub struct Conn {
    /// Boxed: a connection moves with every response (into the body, the
    /// pool), and this is most of it.
    pub(super) io: Box<TimedIo<Stream>>,
    /// Requests the connection carried before the one in flight
    /// (`u32`: a connection moves with every response, so it is kept
    /// small; the count saturates).
    pub requests: u32,
    /// Taken from the idle pool rather than opened for this request.
    pub reused: bool,
    /// What a TLS connection was made with; the pool gives it only to a
    /// request that would have made the same one.
    pub(crate) tls: Option<TlsKey>,
}

pub enum ConnectError {
    Timeout,
    Io(std::io::Error),
    /// The TLS handshake took longer than `proxy_connect_timeout`.
    TlsTimeout,
    /// The TLS handshake failed (certificate refused included).
    Tls(std::io::Error),
}

impl Conn {
    /// Opens a connection to `addr` within `timeout`
    /// (`proxy_connect_timeout`), then, for TLS, shakes hands within
    /// `timeout` again (nginx arms `proxy_connect_timeout` anew for the
    /// handshake).
    pub async fn connect(
        addr: SocketAddr,
        timeout: Duration,
        tls: Option<TlsTarget<'_>>,
    ) -> Result<Conn, ConnectError> {
        let stream = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
            Err(_) => return Err(ConnectError::Timeout),
            Ok(Err(e)) => return Err(ConnectError::Io(e)),
            Ok(Ok(s)) => s,
        };
        let _ = stream.set_nodelay(true);
        let (stream, key) = match tls {
            None => (Stream::Plain(stream), None),
            Some(t) => {
                let name = tls::server_name(t.name, addr.ip());
                let s =
                    match tokio::time::timeout(timeout, t.client.connector.connect(name, stream))
                        .await
                    {
                        Err(_) => return Err(ConnectError::TlsTimeout),
                        Ok(Err(e)) => return Err(ConnectError::Tls(e)),
                        Ok(Ok(s)) => s,
                    };
                (Stream::Tls(Box::new(s)), Some(t.key()))
            }
        };
        Ok(Conn {
            io: Box::new(TimedIo::new(stream)),
            requests: 0,
            reused: false,
            tls: key,
        })
    }

    /// Sets the timeouts of the request about to be sent.
    pub fn sending(&mut self, send: Duration, read: Duration) {
        self.io.sending(send, read);
    }

    /// Whether an idle connection can no longer carry a request (see
    /// [`Stream::unusable`]).
    pub fn unusable(&mut self) -> bool {
        self.io.get_mut().unusable()
    }

    /// The request in flight is over and the connection goes idle.
    pub fn idle(&mut self) {
        self.io.idle();
        self.requests = self.requests.saturating_add(1);
    }
}
