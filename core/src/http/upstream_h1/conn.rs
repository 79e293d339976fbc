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
use crate::upstream::addr::PeerAddr;
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

/// How the socket of a new connection is made (`proxy_bind`,
/// `proxy_socket_keepalive`).
pub struct Local {
    /// The address to bind to, and its text for the log.
    pub bind: Option<(SocketAddr, Box<str>)>,
    pub transparent: bool,
    pub keepalive: bool,
}

pub enum ConnectError {
    Timeout,
    Io(std::io::Error),
    /// A Unix socket's `connect()` failed (nginx names the path).
    Unix(std::io::Error, std::sync::Arc<std::path::Path>),
    /// `proxy_bind`'s socket could not be made: the call that failed, as
    /// nginx logs it (`bind(ADDR)`, `setsockopt(IP_TRANSPARENT)`), and
    /// whether nginx logs it at `alert` (else `crit`).
    Bind(std::io::Error, Box<str>, bool),
    /// The TLS handshake took longer than `proxy_connect_timeout`.
    TlsTimeout,
    /// The TLS handshake failed (certificate refused included).
    Tls(std::io::Error),
}

impl Conn {
    /// Bytes read in the current exchange, and of them the response
    /// body's (`$upstream_bytes_received`, `$upstream_response_length`).
    pub fn exchange_read(&self) -> (u64, u64) {
        self.io.exchange_read()
    }

    /// Opens a connection to `addr` within `timeout`
    /// (`proxy_connect_timeout`), then, for TLS, shakes hands within
    /// `timeout` again (nginx arms `proxy_connect_timeout` anew for the
    /// handshake).
    pub async fn connect(
        addr: &PeerAddr,
        timeout: Duration,
        tls: Option<TlsTarget<'_>>,
        local: Option<&Local>,
    ) -> Result<Conn, ConnectError> {
        let addr = match addr {
            PeerAddr::Inet(addr) => *addr,
            PeerAddr::Unix(path) => return Conn::connect_unix(path, timeout).await,
        };
        let connecting = async {
            match local {
                None => TcpStream::connect(addr).await,
                Some(local) => local_socket(addr, local)?.connect(addr).await,
            }
        };
        let stream = match tokio::time::timeout(timeout, connecting).await {
            Err(_) => return Err(ConnectError::Timeout),
            Ok(Err(e)) => {
                return Err(
                    match e.get_ref().and_then(|i| i.downcast_ref::<BindFailed>()) {
                        Some(failed) => ConnectError::Bind(
                            std::io::Error::from_raw_os_error(failed.errno),
                            failed.name.clone(),
                            failed.alert,
                        ),
                        None => ConnectError::Io(e),
                    },
                )
            }
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

    /// A connection to a Unix socket (no TLS over it, no local address:
    /// nginx's `proxy_bind` names IP addresses).
    async fn connect_unix(
        path: &std::sync::Arc<std::path::Path>,
        timeout: Duration,
    ) -> Result<Conn, ConnectError> {
        let connecting = tokio::net::UnixStream::connect(&**path);
        let stream = match tokio::time::timeout(timeout, connecting).await {
            Err(_) => return Err(ConnectError::Timeout),
            Ok(Err(e)) => return Err(ConnectError::Unix(e, path.clone())),
            Ok(Ok(s)) => s,
        };
        Ok(Conn {
            io: Box::new(TimedIo::new(Stream::Unix(stream))),
            requests: 0,
            reused: false,
            tls: None,
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

/// A bind (or the socket option before it) that failed, carried through
/// the connect's `io::Error`: the call as nginx's log names it.
#[derive(Debug)]
struct BindFailed {
    errno: i32,
    name: Box<str>,
    /// nginx logs a socket option's failure at `alert`, a bind's at `crit`.
    alert: bool,
}

impl std::fmt::Display for BindFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} failed", self.name)
    }
}

/// IP_BIND_ADDRESS_NO_PORT, as nginx sets it for a bind without a port:
/// the local port is chosen at connect, per destination, so bound sockets
/// do not use up the ephemeral ports. Its failure is ignored, as nginx's.
fn no_port_until_connect(socket: &socket2::Socket) {
    use std::os::fd::AsRawFd as _;
    let on: libc::c_int = 1;
    // SAFETY: a valid socket and an int option value that outlives the
    // call.
    unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

impl std::error::Error for BindFailed {}

/// A socket for `addr`'s family with `local`'s options, bound to its
/// address if it has one (nginx's `ngx_event_connect_peer`:
/// SO_KEEPALIVE, IP_TRANSPARENT, then bind).
fn local_socket(addr: SocketAddr, local: &Local) -> std::io::Result<tokio::net::TcpSocket> {
    let domain = socket2::Domain::for_address(addr);
    let socket = socket2::Socket::new(domain, socket2::Type::STREAM, Some(socket2::Protocol::TCP))?;
    socket.set_nonblocking(true)?;
    if local.keepalive {
        // As nginx: "setsockopt(SO_KEEPALIVE) failed, ignored".
        if let Err(e) = socket.set_keepalive(true) {
            crate::log::write(
                crate::log::Level::Alert,
                None,
                &format!(
                    "setsockopt(SO_KEEPALIVE) failed, ignored ({}: {})",
                    e.raw_os_error().unwrap_or(0),
                    crate::http::proxy::strerror(&e)
                ),
            );
        }
    }
    if let Some((bind, name)) = &local.bind {
        let failed = |what: String, e: std::io::Error, alert: bool| {
            std::io::Error::other(BindFailed {
                errno: e.raw_os_error().unwrap_or(0),
                name: what.into(),
                alert,
            })
        };
        if local.transparent {
            // As nginx, a socket that cannot be made transparent fails the
            // request (500).
            if let Err(e) = socket.set_ip_transparent(true) {
                return Err(failed("setsockopt(IP_TRANSPARENT)".into(), e, true));
            }
        }
        if bind.port() == 0 {
            no_port_until_connect(&socket);
        }
        if let Err(e) = socket.bind(&(*bind).into()) {
            return Err(failed(format!("bind({name})"), e, false));
        }
    }
    Ok(tokio::net::TcpSocket::from_std_stream(socket.into()))
}
