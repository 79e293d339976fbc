//! Accepting connections and routing requests: listen address and Host
//! choose the server, the path chooses the location, and the location
//! answers or proxies.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use http::header::{HeaderValue, CONNECTION};
use http::request::Parts;
use http::Response;
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::http::access::Unanswered;
use crate::http::allow;
use crate::http::body::RespBody;
use crate::http::h1::{self, ClientBody};
use crate::http::h2;
use crate::http::head::ParsedHead;
use crate::http::limit_conn;
use crate::http::proxy::{self, ClientCx};
use crate::http::proxy_protocol::{Addrs, ProxyProtocol};
use crate::http::refused::{self, HeadCx};
use crate::http::response::{
    error_page, finalized, metrics_page, reply, status_page, stub_status_page,
};
use crate::http::tls::{self, Https};
use crate::log::{self, Level};
use crate::runtime::{Action, Location, Runtime};
use crate::upstream::dynamic::Choice;
use crate::vars::{ProxyName, VarCtx};

/// The listening sockets the workers accept on. Replaced as a whole on
/// reload; a socket whose address stays keeps its `Arc`, so its accept
/// loops are left running.
#[derive(Default)]
pub struct ListenerSet {
    pub items: Vec<(SocketAddr, Arc<std::net::TcpListener>)>,
}

/// What every worker shares.
pub struct State {
    /// The running configuration; replaced only by [`State::set_runtime`],
    /// which counts the change in `generation`.
    pub runtime: ArcSwap<Runtime>,
    /// Configurations installed so far: a connection compares it with the
    /// one it saw (two loads) instead of loading both configurations'
    /// pointers before every request.
    generation: AtomicU64,
    pub listeners: watch::Sender<Arc<ListenerSet>>,
    /// Becomes true to stop accepting and drain (SIGQUIT): waited on.
    /// Private, so that only [`State::quit`] changes it, with `quitting`.
    quit_signal: watch::Sender<bool>,
    /// The same value for the connections, which look at it before every
    /// keep-alive wait: a load, where the channel takes a read lock.
    quitting: AtomicBool,
    conn_ids: AtomicU64,
    pub workers_running: AtomicUsize,
}

impl State {
    pub fn new(runtime: Arc<Runtime>, listeners: ListenerSet) -> Arc<State> {
        Arc::new(State {
            runtime: ArcSwap::new(runtime),
            generation: AtomicU64::new(0),
            listeners: watch::channel(Arc::new(listeners)).0,
            quit_signal: watch::channel(false).0,
            quitting: AtomicBool::new(false),
            conn_ids: AtomicU64::new(1),
            workers_running: AtomicUsize::new(0),
        })
    }

    /// Installs a new configuration (a reload).
    pub fn set_runtime(&self, runtime: Arc<Runtime>) {
        self.runtime.store(runtime);
        // After the store: a connection that sees the new count finds the
        // new configuration.
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// Stops accepting; idle connections close, requests in flight finish.
    pub fn quit(&self) {
        // Before the channel's change: a connection the workers wake for
        // it sees the flag.
        self.quitting.store(true, Ordering::SeqCst);
        let _ = self.quit_signal.send(true);
    }

    pub fn quitting(&self) -> bool {
        self.quitting.load(Ordering::SeqCst)
    }

    /// A receiver of the quit signal, to wait for it.
    fn quit_watch(&self) -> watch::Receiver<bool> {
        self.quit_signal.subscribe()
    }
}

/// Binds a listening socket as nginx does: SO_REUSEADDR, the configured
/// backlog, non-blocking for the event loops.
pub fn bind(group: &crate::runtime::ListenGroup) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Socket, Type};
    let (addr, opts) = (group.addr, &group.sockopts);
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    if opts.reuseport {
        socket.set_reuse_port(true)?;
    }
    if addr.is_ipv6() {
        socket.set_only_v6(opts.ipv6only.unwrap_or(true))?;
    }
    socket.bind(&addr.into())?;
    socket.listen(group.backlog)?;
    configure(&socket, group);
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// The options nginx's `ngx_configure_listening_sockets` sets on a
/// listening socket, a new one or one a reload keeps (accepted
/// connections inherit them); as nginx, an option the kernel refuses is
/// logged and left.
pub fn configure(socket: &socket2::Socket, group: &crate::runtime::ListenGroup) {
    use socket2::TcpKeepalive;
    let opts = &group.sockopts;
    let failed = |what: String, e: std::io::Error| {
        let line = format!(
            "setsockopt({what}) {} failed, ignored ({}: {})",
            group.addr,
            e.raw_os_error().unwrap_or(0),
            crate::http::proxy::strerror(&e)
        );
        log::write(Level::Alert, None, &line);
    };
    if let Some(n) = opts.rcvbuf {
        if let Err(e) = socket.set_recv_buffer_size(n as usize) {
            failed(format!("SO_RCVBUF, {n}"), e);
        }
    }
    if let Some(n) = opts.sndbuf {
        if let Err(e) = socket.set_send_buffer_size(n as usize) {
            failed(format!("SO_SNDBUF, {n}"), e);
        }
    }
    if let Some(k) = opts.keepalive {
        if let Err(e) = socket.set_keepalive(k.on) {
            failed(format!("SO_KEEPALIVE, {}", u8::from(k.on)), e);
        }
        let secs = |s: u32| std::time::Duration::from_secs(u64::from(s));
        let mut tune = TcpKeepalive::new();
        if k.idle != 0 {
            tune = tune.with_time(secs(k.idle));
        }
        if k.interval != 0 {
            tune = tune.with_interval(secs(k.interval));
        }
        if k.count != 0 {
            tune = tune.with_retries(k.count);
        }
        if k.idle != 0 || k.interval != 0 || k.count != 0 {
            if let Err(e) = socket.set_tcp_keepalive(&tune) {
                failed("TCP_KEEPIDLE".into(), e);
            }
        }
    }
    // nginx's 1 second: how long a connection waited in the queue cannot
    // be known, so the header timeout is not what to give. A socket kept
    // by a reload that dropped `deferred` has it taken off, as nginx's.
    let deferred = i32::from(opts.deferred);
    if opts.deferred || getsockopt_int(socket, libc::TCP_DEFER_ACCEPT).is_some_and(|v| v != 0) {
        if let Err(e) = setsockopt_int(socket, libc::TCP_DEFER_ACCEPT, deferred) {
            failed(format!("TCP_DEFER_ACCEPT, {deferred}"), e);
        }
    }
    // (A new socket has it already; one a reload keeps gets it, as
    // nginx's `add_reuseport`.)
    if opts.reuseport && !socket.reuse_port().unwrap_or(false) {
        if let Err(e) = socket.set_reuse_port(true) {
            failed("SO_REUSEPORT, 1".into(), e);
        }
    }
    if let Some(n) = opts.fastopen {
        if let Err(e) = setsockopt_int(socket, libc::TCP_FASTOPEN, n) {
            failed(format!("TCP_FASTOPEN, {n}"), e);
        }
    }
}

/// An IPPROTO_TCP option socket2 has no getter for.
fn getsockopt_int(socket: &socket2::Socket, name: libc::c_int) -> Option<i32> {
    use std::os::fd::AsRawFd;
    let mut value: i32 = 0;
    let mut len = std::mem::size_of::<i32>() as libc::socklen_t;
    // SAFETY: a valid socket, an int and its size, as getsockopt(2) takes
    // for these options.
    let done = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_TCP,
            name,
            (&mut value as *mut i32).cast(),
            &mut len,
        )
    };
    (done == 0).then_some(value)
}

/// An IPPROTO_TCP option socket2 has no setter for.
fn setsockopt_int(socket: &socket2::Socket, name: libc::c_int, value: i32) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: a valid socket and an int of the size given, as
    // setsockopt(2) takes for these options.
    let done = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_TCP,
            name,
            (&value as *const i32).cast(),
            std::mem::size_of::<i32>() as libc::socklen_t,
        )
    };
    if done == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Starts `n` worker threads, each with its own event loop.
pub fn spawn_workers(
    state: &Arc<State>,
    n: usize,
) -> std::io::Result<Vec<std::thread::JoinHandle<()>>> {
    (0..n)
        .map(|i| {
            let state = state.clone();
            std::thread::Builder::new()
                .name(format!("worker-{i}"))
                .spawn(move || {
                    crate::worker::set_index(i as u32);
                    let rt = match tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        // The access log lines of what ran since the last
                        // wait go to the writer thread in one batch.
                        .on_thread_park(crate::log::access::hand_over)
                        // The loop's time, read once per wake as nginx.
                        .on_thread_unpark(crate::clock::woke)
                        .build()
                    {
                        Ok(rt) => rt,
                        Err(e) => {
                            log::write(
                                Level::Emerg,
                                None,
                                &format!("worker {i} could not start its event loop: {e}"),
                            );
                            return;
                        }
                    };
                    state.workers_running.fetch_add(1, Ordering::SeqCst);
                    rt.block_on(worker_main(state.clone()));
                    drop(rt);
                    crate::log::access::hand_over();
                    state.workers_running.fetch_sub(1, Ordering::SeqCst);
                })
        })
        .collect()
}

async fn worker_main(state: Arc<State>) {
    let mut listeners = state.listeners.subscribe();
    let mut quit = state.quit_watch();
    let tracker = Arc::new(Tracker::default());
    let mut accepting: Vec<(Arc<std::net::TcpListener>, tokio::task::AbortHandle)> = Vec::new();
    loop {
        let set = listeners.borrow_and_update().clone();
        // Stop accepting on sockets that left the configuration; their
        // open connections carry on.
        accepting.retain(|(l, task)| {
            let keep = set.items.iter().any(|(_, s)| Arc::ptr_eq(s, l));
            if !keep {
                task.abort();
            }
            keep
        });
        for (addr, socket) in &set.items {
            if accepting.iter().any(|(l, _)| Arc::ptr_eq(l, socket)) {
                continue;
            }
            match socket
                .try_clone()
                .and_then(tokio::net::TcpListener::from_std)
            {
                Ok(listener) => {
                    let task =
                        tokio::spawn(accept_loop(listener, *addr, state.clone(), tracker.clone()));
                    accepting.push((socket.clone(), task.abort_handle()));
                }
                Err(e) => log::write(Level::Emerg, None, &format!("cannot accept on {addr}: {e}")),
            }
        }
        tokio::select! {
            changed = listeners.changed() => if changed.is_err() { break },
            _ = quit.wait_for(|q| *q) => break,
        }
        // Idle connections look at the reload (or stop) when woken.
        h1::idle::wake_all();
    }
    h1::idle::wake_all();
    for (_, task) in accepting {
        task.abort();
    }
    // Each connection saw `quit` too: idle ones close now, requests in
    // flight finish. Wait for the last one.
    while tracker.open.load(Ordering::SeqCst) > 0 {
        let closed = tracker.closed.notified();
        if tracker.open.load(Ordering::SeqCst) == 0 {
            break;
        }
        closed.await;
    }
}

/// The connections a worker has open, so a graceful stop can wait for them.
#[derive(Default)]
struct Tracker {
    open: AtomicUsize,
    closed: tokio::sync::Notify,
    /// When "reusing connections" was last logged, in seconds.
    reuse_logged: AtomicU64,
}

/// nginx's ngx_drain_connections: at most this many idle connections
/// closed at a time.
const REUSE_AT_ONCE: usize = 32;

impl Tracker {
    /// nginx's ngx_get_connection: with fewer than 1/16 of the
    /// connections free, idle ones are closed to make room (logged at most
    /// once a second); with none free and none idle, the new connection is
    /// refused. Whether `open` connections leave room for one more.
    fn room(&self, open: usize, max: usize) -> bool {
        if open < max - max / 16 {
            return true;
        }
        // This worker's idle connections (the accept loop runs on the
        // worker's thread, as its connections).
        let idle = h1::idle::count();
        if idle > 0 {
            h1::idle::ask_to_close(idle.min(REUSE_AT_ONCE));
            let now = crate::clock::unix_secs();
            if self.reuse_logged.swap(now, Ordering::Relaxed) != now {
                log::write(
                    Level::Warn,
                    None,
                    &format!("{max} worker_connections are not enough, reusing connections"),
                );
            }
        }
        // The closing idle connections free the room this one takes.
        open < max || idle > 0
    }
}

/// A connection counted open until dropped (by the worker, and for
/// `stub_status`).
struct Open(Arc<Tracker>, crate::http::stats::Active);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::SeqCst);
        self.0.closed.notify_waiters();
    }
}

async fn accept_loop(
    listener: tokio::net::TcpListener,
    addr: SocketAddr,
    state: Arc<State>,
    tracker: Arc<Tracker>,
) {
    let max = state.runtime.load().main.worker_connections;
    loop {
        let (stream, client) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                log::write(
                    Level::Alert,
                    None,
                    &format!("accept() failed ({})", proxy::strerror(&e)),
                );
                // EMFILE and friends: give the process a moment to close
                // something instead of spinning on the same error.
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        if !tracker.room(tracker.open.load(Ordering::Relaxed), max) {
            log::write(
                Level::Alert,
                None,
                &format!("{max} worker_connections are not enough"),
            );
            crate::http::stats::accepted(false);
            drop(stream);
            continue;
        }
        crate::http::stats::accepted(true);
        let id = state.conn_ids.fetch_add(1, Ordering::Relaxed);
        // The count before the configuration: a reload in between is seen
        // at the first repin.
        let generation = state.generation.load(Ordering::Acquire);
        let rt = state.runtime.load_full();
        let conn = Conn {
            state: state.clone(),
            listen: addr,
            client,
            id,
            requests: AtomicU64::new(0),
            start: crate::clock::now(),
            accepted_with: ArcSwap::new(rt.clone()),
            generation: AtomicU64::new(generation),
        };
        tracker.open.fetch_add(1, Ordering::SeqCst);
        let open = Open(tracker.clone(), crate::http::stats::Active::open());
        // The protocol is settled once per connection, here: TLS, or
        // cleartext with HTTP/2 on, each get a task of their own; a plain
        // HTTP/1 connection's task is the h1 loop as it always was.
        let group = rt.listens.iter().find(|g| g.addr == addr);
        match group {
            // The PROXY protocol header first (few addresses have it).
            Some(g) if g.proxy_protocol => {
                tokio::spawn(proxied_start(stream, conn, open, rt));
            }
            Some(g) if g.tls.is_some() => {
                tokio::spawn(serve_tls(stream, conn, open, rt, None));
            }
            Some(g) if g.http2(g.default) => {
                tokio::spawn(serve_h2c(stream, conn, open, None));
            }
            // Spawned as is: a wrapper future would hold the stream and
            // the connection twice in every idle task.
            _ => {
                let settings = h1_settings(group);
                tokio::spawn(serve(stream, conn, open, settings, None));
            }
        }
    }
}

/// A connection of a `listen ... proxy_protocol` address: its PROXY
/// header within `client_header_timeout`, then TLS, HTTP/2 or HTTP/1 as
/// on any connection. nginx's lines for a header that does not come or
/// is broken.
async fn proxied_start(stream: TcpStream, conn: Conn, open: Open, rt: Arc<Runtime>) {
    use crate::http::proxy_protocol::{read, Failed};
    let (_, limits) = defaults(&conn);
    let deadline = tokio::time::Instant::now() + limits.header_timeout;
    // A graceful stop does not wait for a header that does not come.
    let mut quit = conn.state.quit_watch();
    let read = tokio::select! {
        read = read(&stream, deadline) => read,
        _ = quit.wait_for(|q| *q) => return,
    };
    let (level, line) = match read {
        Ok(addrs) => {
            let proxy = addrs.map(Arc::new);
            let group = rt.listens.iter().find(|g| g.addr == conn.listen);
            // (Boxed: a plain connection's task is not a TLS one's size.)
            match group {
                Some(g) if g.tls.is_some() => {
                    Box::pin(serve_tls(stream, conn, open, rt, proxy)).await
                }
                Some(g) if g.http2(g.default) => {
                    drop(rt);
                    Box::pin(serve_h2c(stream, conn, open, proxy)).await
                }
                _ => {
                    // (Its own task, as on an h2c address.)
                    let settings = h1_settings(group);
                    tokio::spawn(serve(stream, conn, open, settings, proxy));
                }
            }
            return;
        }
        Err(Failed::Broken(line)) => (Level::Error, line),
        // On an HTTP/2 cleartext address nginx reads the header in its
        // HTTP/2 state machine: a timeout is the connection's, and a
        // close before any byte is not logged.
        Err(Failed::TimedOut | Failed::Closed | Failed::Io(_)) if h2c(&rt, &conn) => {
            let what = match read {
                Err(Failed::TimedOut) => "client timed out (110: Connection timed out)".to_owned(),
                Err(Failed::Io(e)) => format!(
                    "recv() failed ({}: {})",
                    e.raw_os_error().unwrap_or(0),
                    proxy::strerror(&e)
                ),
                _ => return,
            };
            conn.log(
                Level::Info,
                &format!("{what} while processing HTTP/2 connection"),
            );
            return;
        }
        Err(Failed::TimedOut) => (
            Level::Info,
            "client timed out (110: Connection timed out)".to_owned(),
        ),
        // nginx peeks on a TLS address, and reads nothing as a header.
        Err(Failed::Closed)
            if rt
                .listens
                .iter()
                .any(|g| g.addr == conn.listen && g.tls.is_some()) =>
        {
            (Level::Error, "broken header: \"\"".to_owned())
        }
        Err(Failed::Closed) => (Level::Info, "client closed connection".to_owned()),
        Err(Failed::Io(e)) => (
            Level::Info,
            format!(
                "recv() failed ({}: {})",
                e.raw_os_error().unwrap_or(0),
                proxy::strerror(&e)
            ),
        ),
        Err(Failed::Quiet) => return,
    };
    if log::enabled(level) {
        conn.log(level, &format!("{line} while reading PROXY protocol"));
    }
}

/// Whether the connection's address is HTTP/2 without TLS (h2c).
fn h2c(rt: &Runtime, conn: &Conn) -> bool {
    rt.listens
        .iter()
        .any(|g| g.addr == conn.listen && g.tls.is_none() && g.http2(g.default))
}

/// One client connection.
pub(crate) struct Conn {
    state: Arc<State>,
    listen: SocketAddr,
    pub(crate) client: SocketAddr,
    pub(crate) id: u64,
    requests: AtomicU64,
    /// When it was accepted, for `keepalive_time`.
    start: std::time::Instant,
    /// The latest configuration that has the connection's listening
    /// address, used if a reload removed it. Moved on at every reload that
    /// keeps the address (see [`Conn::repin`]), so a long keep-alive
    /// connection does not keep old configurations and their upstreams alive.
    accepted_with: ArcSwap<Runtime>,
    /// `State::generation` when `accepted_with` was last found current.
    generation: AtomicU64,
}

impl Conn {
    /// An error log line about the connection before any request: `what`,
    /// then nginx's client and server (the listening address).
    fn log(&self, level: Level, what: &str) {
        if log::enabled(level) {
            log::write(
                level,
                Some(self.id),
                &format!(
                    "{what}, client: {}, server: {}",
                    crate::vars::NgxIp(self.client.ip()),
                    self.listen
                ),
            );
        }
    }

    /// The connection as a subrequest that outlives its request sees it
    /// (`mirror`): the same client, id and count, with the configuration
    /// `server` belongs to (its index in it: listening group, server).
    pub(crate) fn detached(
        &self,
        server: &crate::runtime::Server,
    ) -> Option<(Conn, Arc<Runtime>, usize, usize)> {
        for rt in [
            self.state.runtime.load_full(),
            self.accepted_with.load_full(),
        ] {
            for (g, group) in rt.listens.iter().enumerate() {
                if let Some(s) = group
                    .servers
                    .iter()
                    .position(|s| std::ptr::eq(&**s, server))
                {
                    let conn = Conn {
                        state: self.state.clone(),
                        listen: self.listen,
                        client: self.client,
                        id: self.id,
                        requests: AtomicU64::new(self.requests.load(Ordering::Relaxed)),
                        start: self.start,
                        accepted_with: ArcSwap::new(rt.clone()),
                        generation: AtomicU64::new(self.generation.load(Ordering::Relaxed)),
                    };
                    return Some((conn, rt, g, s));
                }
            }
        }
        None
    }

    /// What is logged of a head that came on the connection at `local`.
    fn head_cx<'r>(&self, rt: &'r Runtime, local: SocketAddr) -> HeadCx<'r> {
        HeadCx {
            client: self.client,
            local,
            conn: self.id,
            requests: self.requests.load(Ordering::Relaxed),
            server: default_server(rt, self.listen),
            maps: &rt.maps,
        }
    }

    /// Between requests, and after a reload: if the running configuration
    /// still has the connection's listening address, hold that one
    /// (dropping an older one) and say so. Otherwise keep the old one for
    /// the requests still to come. Without a reload since the last call,
    /// two loads of a counter.
    fn repin(&self) -> bool {
        let generation = self.state.generation.load(Ordering::Acquire);
        if generation == self.generation.load(Ordering::Relaxed) {
            return true;
        }
        let current = self.state.runtime.load();
        if Arc::ptr_eq(&current, &self.accepted_with.load()) {
            self.generation.store(generation, Ordering::Relaxed);
            return true;
        }
        let kept = current.listens.iter().any(|g| g.addr == self.listen);
        if kept {
            self.accepted_with
                .store(arc_swap::Guard::into_inner(current));
            self.generation.store(generation, Ordering::Relaxed);
        }
        kept
    }
}

/// The connection as the HTTP/1 loop sees it; `HTTPS`: over TLS (a
/// parameter, not a field, so a plain connection's idle task is no larger).
struct Client<const HTTPS: bool> {
    conn: Conn,
    /// What few connections have: boxed, since every idle task holds this,
    /// and an idle future past 408 bytes puts the task in a larger
    /// allocation (640 bytes instead of 512: 1,110 bytes of memory per
    /// idle connection instead of 890, bench/README.md).
    rare: Option<Box<Rare>>,
    /// Counts the connection open until it ends.
    _open: Open,
}

// An idle HTTP/1 connection's task is `serve`'s future (on an h2c or
// PROXY protocol address too, once the first bytes chose it; on a TLS
// address, a future that holds it and more, in a larger cell): past 408
// bytes tokio's cell for it
// takes 640 bytes instead of 512, 128 more for every idle connection (a
// field more in `Conn`, as the PROXY protocol's addresses were, was
// enough). What is rare goes in `Rare`. The future is 400 bytes in
// release builds, 408 in debug ones; its parts are checked too, to say
// which grew.
const _: () = assert!(std::mem::size_of::<Client<false>>() <= 136);
const _: () = assert!(returned_size(&serve) <= 408);

// A TLS connection's task: the handshake, the HTTP/2 connection and
// rustls's state are boxed, so an idle HTTP/1 one holds the h1 loop and
// little more (880 bytes in debug builds; it was 6,392 with them inline).
const _: () = assert!(returned_tls_size(&serve_tls) <= 1024);

/// The size of what `f` returns, found without calling it (a future's).
const fn returned_size<F, R>(_: &F) -> usize
where
    F: FnOnce(TcpStream, Conn, Open, h1::Settings, Option<Arc<Addrs>>) -> R,
{
    std::mem::size_of::<R>()
}

/// [`returned_size`] for [`serve_tls`].
const fn returned_tls_size<F, R>(_: &F) -> usize
where
    F: FnOnce(TcpStream, Conn, Open, Arc<Runtime>, Option<Arc<Addrs>>) -> R,
{
    std::mem::size_of::<R>()
}
const _: () = assert!(std::mem::size_of::<h1::idle::Waiting>() <= 12);
const _: () = assert!(std::mem::size_of::<h1::Settings>() <= 24);

/// A connection's [`Client::rare`] part.
struct Rare {
    /// The connection's own address (where it is not the listening one:
    /// a wildcard `listen`).
    local: SocketAddr,
    /// The TLS session (`$ssl_protocol`, ...).
    tls: Option<Arc<tls::Session>>,
    /// What the PROXY protocol header said (`listen ... proxy_protocol`).
    proxy: Option<Arc<Addrs>>,
}

impl<const HTTPS: bool> Client<HTTPS> {
    fn new(
        conn: Conn,
        local: SocketAddr,
        open: Open,
        tls: Option<Arc<tls::Session>>,
        proxy: Option<Arc<Addrs>>,
    ) -> Self {
        let rare = (local != conn.listen || tls.is_some() || proxy.is_some())
            .then(|| Box::new(Rare { local, tls, proxy }));
        Client {
            conn,
            rare,
            _open: open,
        }
    }

    fn local(&self) -> SocketAddr {
        self.rare.as_deref().map_or(self.conn.listen, |r| r.local)
    }

    fn head_cx<'r>(&self, rt: &'r Runtime) -> HeadCx<'r> {
        self.conn.head_cx(rt, self.local())
    }
}

impl<const HTTPS: bool> h1::Service for Client<HTTPS> {
    fn call<'a>(
        &'a self,
        parts: &'a mut Parts,
        raw: &'a [u8],
        dropped: Option<crate::http::head::HeaderNames>,
        body: ClientBody,
        answer: &'a mut Option<h1::Answer>,
    ) -> impl std::future::Future<Output = ()> + Send + 'a {
        if HTTPS {
            if let Some(session) = self.rare.as_ref().and_then(|r| r.tls.clone()) {
                parts.extensions.insert(Https(session));
            }
        }
        if let Some(addrs) = self.rare.as_ref().and_then(|r| r.proxy.as_ref()) {
            parts.extensions.insert(ProxyProtocol(addrs.clone()));
        }
        if let Some(names) = dropped {
            let rt = self.conn.state.runtime.load();
            refused::ignored_lines(&self.head_cx(&rt), raw, names);
        }
        // Not boxed: it lives in the h1 loop's busy future, itself boxed
        // so that the request's state is held only while it is in flight,
        // not in every idle connection's task.
        handle(parts, raw, body, &self.conn, self.local(), answer)
    }

    fn refused(
        &self,
        head: &[u8],
        refusal: h1::Refusal,
        limits: h1::Limits,
    ) -> Option<Box<crate::http::access::Record>> {
        // Counted as nginx counts it (`$connection_requests`).
        self.conn.requests.fetch_add(1, Ordering::Relaxed);
        let rt = self.conn.state.runtime.load();
        refused::head(&self.head_cx(&rt), head, refusal, limits)
    }

    fn repin(&self) -> bool {
        self.conn.repin()
    }

    fn quitting(&self) -> bool {
        self.conn.state.quitting()
    }
}

/// A proxied answer (`proxy::run`) with what it carries attached: the
/// `limit_conn` counts of an answer not from the upstream, and what
/// `add_header` reads of the upstream's. A macro, not a function: on the
/// request path a call's own future costs ~100 instructions a request.
macro_rules! proxied {
    ($parts:expr, $body:expr, $p:expr, $chosen:expr, $location:expr, $cx:expr, $record:expr) => {{
        let location: &Location = $location;
        let mut carried = proxy::Carried {
            conn_hold: None,
            seen: location
                .upstream_vars
                .then(|| Box::new(crate::vars::UpstreamSeen::default())),
        };
        let mut resp = proxy::run(
            $parts,
            $body,
            $p,
            $chosen,
            location,
            $cx,
            $record,
            &mut carried,
        )
        .await;
        let held = carried.conn_hold;
        if let Some(seen) = carried.seen {
            resp.extensions_mut()
                .insert(crate::http::outbound::UpstreamSeenExt(seen));
        }
        // An answer not from the upstream: its counts stay with it.
        if held.is_some() {
            limit_conn::Kept::attach(&mut resp, held);
        }
        resp
    }};
}

/// What a `proxy_pass` with variables named for a request (the pass and
/// its choice), and `$proxy_host` and `$proxy_port`.
type DynamicChoice<'p> = (
    Option<(&'p crate::upstream::dynamic::DynamicPass, Box<Choice>)>,
    Option<(Box<str>, crate::upstream::dynamic::Port)>,
);

/// What a `proxy_pass` with variables names for a request, and its host.
#[cold]
#[inline(never)]
fn dynamic_choice<'p>(p: &'p crate::runtime::Proxy, vars: &VarCtx<'_>) -> DynamicChoice<'p> {
    let Some(d) = p.dynamic.as_deref() else {
        return (None, None);
    };
    let choice = Box::new(d.choose(vars));
    let name = choice.owned_name();
    (Some((d, choice)), Some(name))
}

/// The address's default server: the server of what nginx logs while
/// it reads a head.
fn default_server(rt: &Runtime, listen: SocketAddr) -> Option<&crate::runtime::Server> {
    rt.listens
        .iter()
        .find(|g| g.addr == listen)
        .map(|g| &*g.servers[g.default])
}

/// The default server's `keepalive_timeout` and client limits of a
/// connection's address: nginx's settings for a connection before it
/// knows the virtual server.
fn defaults_of(
    group: Option<&crate::runtime::ListenGroup>,
) -> (std::time::Duration, crate::conf::model::ClientLimits) {
    group
        .map(|g| {
            let s = &g.servers[g.default];
            (s.keepalive_timeout, s.client)
        })
        .unwrap_or_default()
}

fn defaults(conn: &Conn) -> (std::time::Duration, crate::conf::model::ClientLimits) {
    let rt = conn.state.runtime.load();
    defaults_of(rt.listens.iter().find(|g| g.addr == conn.listen))
}

fn h1_settings(group: Option<&crate::runtime::ListenGroup>) -> h1::Settings {
    let (keepalive, limits) = defaults_of(group);
    let buffers = limits.header_buffers;
    h1::Settings::new(
        keepalive,
        limits.header_timeout,
        limits.send_timeout,
        h1::Limits {
            line: buffers.size as usize,
            head: (buffers.number as usize).saturating_mul(buffers.size as usize),
            names: limits.names,
        },
    )
}

fn conn_settings(conn: &Conn) -> h1::Settings {
    let rt = conn.state.runtime.load();
    h1_settings(rt.listens.iter().find(|g| g.addr == conn.listen))
}

/// A client connection's task. Not an `async fn`: everything is set up
/// here and moved into the connection loop's future once, so the idle
/// task holds each piece a single time.
fn serve(
    stream: TcpStream,
    conn: Conn,
    open: Open,
    settings: h1::Settings,
    proxy: Option<Arc<Addrs>>,
) -> impl std::future::Future<Output = ()> + Send {
    let _ = stream.set_nodelay(true);
    let local = stream.local_addr().unwrap_or(conn.listen);
    let client = Client::<false>::new(conn, local, open, None, proxy);
    h1::serve(stream, client, settings)
}

/// A TLS connection: the handshake within `client_header_timeout` (as
/// nginx times it), then HTTP/2 if ALPN chose it, else the HTTP/1 loop
/// over TLS.
async fn serve_tls(
    stream: TcpStream,
    conn: Conn,
    open: Open,
    rt: Arc<Runtime>,
    proxy: Option<Arc<Addrs>>,
) {
    let _ = stream.set_nodelay(true);
    let local = stream.local_addr().unwrap_or(conn.listen);
    let Some(group) = rt.listens.iter().find(|g| g.addr == conn.listen) else {
        return;
    };
    let (_, limits) = defaults(&conn);
    // Boxed, as the HTTP/2 connection below: the handshake's state is
    // kilobytes, and without the box every idle HTTP/1 connection's task
    // would stay that size after it.
    let handshake = Box::pin(tls::accept(stream, group));
    let accepted = match tokio::time::timeout(limits.header_timeout, handshake).await {
        Ok(Ok(accepted)) => accepted,
        Ok(Err(e)) => {
            // nginx logs a failed handshake at `info`, a rejected one as
            // its `handshake rejected`.
            if log::enabled(Level::Info) {
                let what = if e.get_ref().is_some_and(|e| e.is::<tls::Rejected>()) {
                    "handshake rejected".to_owned()
                } else {
                    format!("TLS handshake failed ({e})")
                };
                conn.log(Level::Info, &format!("{what} while SSL handshaking"));
            }
            return;
        }
        Err(_) => {
            conn.log(
                Level::Info,
                "client timed out (110: Connection timed out) while SSL handshaking",
            );
            return;
        }
    };
    drop(rt);
    match accepted {
        tls::Accepted::H2(stream, session) => {
            Box::pin(serve_h2(
                hyper_util::rt::TokioIo::new(*stream),
                conn,
                local,
                open,
                Some(session),
                proxy,
            ))
            .await
        }
        tls::Accepted::Http1(io, session) => {
            let settings = conn_settings(&conn);
            let client = Client::<true>::new(conn, local, open, Some(session), proxy);
            h1::serve(io, client, settings).await
        }
    }
}

/// A cleartext connection where HTTP/2 is on: the client preface means
/// HTTP/2 by prior knowledge (h2c), anything else HTTP/1. The first bytes
/// are peeked, not read, so either protocol reads them itself.
async fn serve_h2c(stream: TcpStream, conn: Conn, open: Open, proxy: Option<Arc<Addrs>>) {
    let (_, limits) = defaults(&conn);
    let deadline = tokio::time::Instant::now() + limits.header_timeout;
    let mut first = [0u8; h2::PREFACE.len()];
    let h2c = loop {
        match tokio::time::timeout_at(deadline, stream.readable()).await {
            Ok(Ok(())) => {}
            _ => return,
        }
        let n = match stream.peek(&mut first).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if first[..n] != h2::PREFACE[..n] {
            break false;
        }
        if n == first.len() {
            break true;
        }
        // Part of the preface: wait for more. Peeking leaves the socket
        // readable, so its readiness is cleared by hand first.
        let _ = stream.try_io(tokio::io::Interest::READABLE, || {
            Err::<(), _>(std::io::ErrorKind::WouldBlock.into())
        });
    };
    if h2c {
        let _ = stream.set_nodelay(true);
        let local = stream.local_addr().unwrap_or(conn.listen);
        // (Boxed: an HTTP/1 connection's task is not the HTTP/2 one's size.)
        Box::pin(serve_h2(
            hyper_util::rt::TokioIo::new(stream),
            conn,
            local,
            open,
            None,
            proxy,
        ))
        .await
    } else {
        // A task of its own, as a plain address's connection: awaited
        // here, the h1 loop would sit beside this future's copies of the
        // stream and the connection (840 bytes, a 1 KB cell, where the
        // loop alone takes 512).
        let settings = conn_settings(&conn);
        tokio::spawn(serve(stream, conn, open, settings, proxy));
    }
}

/// An HTTP/2 connection (`io` after TLS or the h2c check): hyper serves
/// the streams, each through [`handle`]. The connection ends with GOAWAY
/// when idle past `keepalive_timeout` (`client_header_timeout` before the
/// first stream), at a graceful stop, after a reload that removed its
/// address, or once a response asked to close (`keepalive_requests`).
async fn serve_h2<T>(
    io: T,
    conn: Conn,
    local: SocketAddr,
    _open: Open,
    https: Option<Arc<tls::Session>>,
    proxy: Option<Arc<Addrs>>,
) where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (keepalive, limits) = defaults(&conn);
    let conn = Arc::new(conn);
    let streams = Arc::new(h2::Streams::default());
    let service = {
        let conn = conn.clone();
        let streams = streams.clone();
        hyper::service::service_fn(move |req| {
            let conn = conn.clone();
            let streams = streams.clone();
            let https = https.clone();
            let proxy = proxy.clone();
            async move {
                let active = streams.start();
                let (req, outcome, ignored) = h2::request(req, https, limits.names);
                if !ignored.is_empty() {
                    let rt = conn.state.runtime.load();
                    refused::ignored_names(&conn.head_cx(&rt, local), req.headers(), &ignored);
                }
                // Boxed: hyper spawns each stream's future as a task,
                // which tokio moves several times; the handler's state is
                // kilobytes.
                let (mut parts, body) = req.into_parts();
                if let Some(addrs) = proxy {
                    parts.extensions.insert(ProxyProtocol(addrs));
                }
                let mut answer = None;
                // `stub_status`: a stream is a request, writing while
                // handled.
                let phase = crate::http::stats::Phase::request();
                Box::pin(handle(&parts, &[], body, &conn, local, &mut answer)).await;
                drop(phase);
                let resp = match answer {
                    Some((resp, _)) => resp,
                    None => error_page(500),
                };
                h2::response(resp, parts, &outcome, active, &streams)
            }
        })
    };
    let connection = h2::builder().serve_connection(io, service);
    let mut connection = std::pin::pin!(connection);
    let mut quit = conn.state.quit_watch();
    loop {
        // Registered when first polled, in the same poll as the state is
        // read below: what changes it wakes from this worker's thread.
        let woken = h1::idle::Waiting::for_wake();
        if *quit.borrow_and_update() || !conn.repin() {
            break;
        }
        let started = streams.started();
        let idle = if started == 0 {
            limits.header_timeout
        } else {
            keepalive
        };
        tokio::select! {
            _ = connection.as_mut() => return,
            _ = woken => {}
            _ = quit.changed() => {}
            _ = streams.goaway.notified() => break,
            _ = tokio::time::sleep(idle) => {
                if streams.active() == 0 && streams.started() == started {
                    break;
                }
            }
        }
    }
    connection.as_mut().graceful_shutdown();
    // hyper ends the connection once the client acknowledged the GOAWAY
    // (a PING round trip) and the streams are done. A client that never
    // answers does not keep it: with no stream for two checks in a row
    // it is closed, as nginx closes an idle HTTP/2 connection at once.
    let mut idle_before = false;
    loop {
        tokio::select! {
            _ = connection.as_mut() => return,
            _ = tokio::time::sleep(std::time::Duration::from_millis(500)) => {
                let idle = streams.active() == 0;
                if idle && idle_before {
                    return;
                }
                idle_before = idle;
            }
        }
    }
}

/// A location's answer (a macro: expanded in `handle`'s own future, the
/// plain path pays for no nested future and no copy of its answer;
/// [`at_location`] wraps it for `error_page`'s internal redirects), from realip's second pass (`realip`: the
/// server's settings left the address alone) to the content handler,
/// with its access log record. `started`: when a request that an
/// internal redirect brought here started.
macro_rules! location_answer {
    ($req:expr, $body:expr, $location:expr, $action:expr, $client:expr, $realip:expr, $started:expr) => {{
        let req: &Req<'_> = $req;
        let location: &Location = $location;
        let action: &Action = $action;
        // `auth_request` (out of line: few locations have it) answers, or
        // comes back here with the variables it set.
        if (location.auth_request.is_some() || location.mirror.is_some())
            && !req.auth_done
            && !req.subrequest
            && !matches!(action, Action::Reply(_) | Action::Internal(_))
        {
            Box::pin(crate::http::auth_request::at(
                req, $body, location, action, $client, $realip, $started,
            ))
            .await
        } else {
            location_answer_plain!(req, $body, location, action, $client, $realip, $started)
        }
    }};
}

/// [`location_answer!`] once `auth_request` had its say.
macro_rules! location_answer_plain {
    ($req:expr, $body:expr, $location:expr, $action:expr, $client:expr, $realip:expr, $started:expr) => {{
        let req: &Req<'_> = $req;
        let body: ClientBody = $body;
        let location: &Location = $location;
        let action: &Action = $action;
        #[allow(unused_mut)]
        let mut client: SocketAddr = $client;
        let realip: bool = $realip;
        let started: Option<std::time::Instant> = $started;
        let parts = req.parts;
        // realip again in the pre-access phase, with the location's
        // settings, if the server's left the address alone. A
        // `return` answers before that phase.
        if realip && !matches!(action, Action::Reply(_)) {
            if let Some(real) = location
                .realip
                .as_ref()
                .and_then(|r| r.apply(req.conn.client, &parts.headers, &parts.extensions))
            {
                client = real;
            }
        }
        // A `proxy_pass` with variables: the upstream its value names (a
        // name is resolved below, once the request's log line is begun).
        // (Boxed and out of line: the plain proxy path only tests and
        // keeps `None`s.)
        let (choice, dynamic_host) = match action {
            Action::Proxy(p) if p.dynamic.is_some() => {
                dynamic_choice(p, &req.vars(client, 0, &ProxyName::NONE))
            }
            _ => (None, None),
        };
        let proxy_host = match (action, &dynamic_host) {
            (Action::Proxy(_), Some((host, port))) => ProxyName::new(host, port),
            (Action::Proxy(p), None) => p.name(),
            _ => ProxyName::NONE,
        };
        // (A subrequest is not logged.) A location `if` that held logs
        // with its own lines, where it has any.
        let record = location
            .access_log_for(parts)
            .filter(|_| !req.subrequest)
            .map(|logs| {
                let started = started.unwrap_or_else(crate::clock::now);
                logs.start(&req.vars(client, 0, &proxy_host), started)
            });
        // Written with 499 should the request be dropped before
        // it has its answer (the client went away).
        let mut record = Unanswered(record);
        // A name is resolved in nginx's content phase, once the
        // pre-access and access phases let the request in (below).
        let mut pending = None;
        let mut chosen = match choice {
            None => None,
            Some((d, choice)) => match *choice {
                Choice::Chosen(c) => Some(Box::new(Ok(c))),
                Choice::Failed(e) => Some(Box::new(Err(e))),
                Choice::Resolve(lookup) => {
                    pending = Some((d, lookup));
                    None
                }
            },
        };
        let cx = req.client_cx(client);
        let mut resp = match action {
            Action::Reply(r) => reply(r, &req.vars(client, r.status, &ProxyName::NONE)),
            // A proxied location checks `allow`/`deny` once its
            // filter modules ran (nginx's pre-access phase).
            // (A `proxy_pass` whose value named nothing answers below, in
            // nginx's content phase, after the pre-access and access ones.)
            Action::Proxy(p)
                if pending.is_none() && chosen.as_deref().is_none_or(Result::is_ok) =>
            {
                let chosen = chosen.as_deref().and_then(|c| c.as_ref().ok());
                if location.statics.has_try_files() {
                    let record = record.0.as_deref_mut();
                    let tried = TryFilesCx {
                        client,
                        started,
                        proxy_host: &proxy_host,
                    };
                    Box::pin(proxied_tried(
                        req, body, p, chosen, location, &cx, record, tried,
                    ))
                    .await
                } else {
                    proxied!(
                        parts,
                        body,
                        p,
                        chosen,
                        location,
                        &cx,
                        record.0.as_deref_mut()
                    )
                }
            }
            // nginx's find-config phase: a client's request for an
            // `internal` location.
            Action::Internal(_) => error_page(404),
            // The pre-access phase (filter modules such as `limit_req`,
            // then `limit_conn`, once per request), then access; the
            // counts are given back once the answer is made.
            action => 'answer: {
                if !location.filters.is_empty() && !cx.pre_access.met(proxy::PreAccess::REQ) {
                    let refused = Box::pin(proxy::location_filters(
                        &location.filters,
                        parts,
                        &cx,
                        req.vars(client, 0, &proxy_host),
                        record.0.as_deref_mut().map(|r| &mut r.module_values),
                    ))
                    .await;
                    if let Some(resp) = refused {
                        proxy::not_proxied(
                            record.0.as_deref_mut(),
                            &req.vars(client, 0, &ProxyName::NONE),
                        );
                        break 'answer resp;
                    }
                }
                let mut status = 0;
                let checked = match &location.limit_conn {
                    Some(limits) if !cx.pre_access.meet(proxy::PreAccess::CONN) => {
                        limit_conn::check(
                            limits,
                            &req.vars(client, 0, &proxy_host),
                            &cx,
                            parts,
                            &mut status,
                        )
                    }
                    _ => Ok(None),
                };
                if let Some(r) = record.0.as_deref_mut() {
                    r.limit_conn = status;
                }
                match checked {
                    Err(code) => {
                        proxy::not_proxied(
                            record.0.as_deref_mut(),
                            &req.vars(client, 0, &ProxyName::NONE),
                        );
                        finalized(code)
                    }
                    Ok(hold) => {
                        let refused = access(
                            location.access_for(&parts.method),
                            location.auth_basic_for(&parts.method).map(|a| &**a),
                            location.satisfy_any,
                            parts,
                            &req.vars(client, 0, &proxy_host),
                            &cx,
                        )
                        .await;
                        let mut resp = match (refused, action) {
                            (Some(resp), _) => {
                                proxy::not_proxied(
                                    record.0.as_deref_mut(),
                                    &req.vars(client, 0, &ProxyName::NONE),
                                );
                                resp
                            }
                            (None, Action::Metrics) => metrics_page(&req.conn.state.runtime.load()),
                            (None, Action::Status) => status_page(&req.conn.state.runtime.load()),
                            (None, Action::StubStatus) => stub_status_page(req.parts),
                            (None, Action::EmptyGif) => {
                                crate::http::static_files::empty_gif(req, &location.statics)
                            }
                            (None, Action::Static) => {
                                // (A location `if` that held with a `root`
                                // serves from it.)
                                let st = match location.script.as_ref().and_then(|_| {
                                    parts.extensions.get::<crate::http::rewrite::IfStatics>()
                                }) {
                                    Some(own) => &*own.0,
                                    None => location.statics_for(&parts.method),
                                };
                                crate::http::static_files::serve(req, body, st, client, started)
                                    .await
                            }
                            (None, Action::Proxy(p)) => {
                                if let Some((d, lookup)) = pending.take() {
                                    chosen = Some(Box::new(Box::pin(d.resolve(lookup)).await));
                                }
                                match chosen.as_deref() {
                                    Some(Err(e)) => proxy::not_chosen(&cx, parts, e),
                                    Some(Ok(c)) => {
                                        let record = record.0.as_deref_mut();
                                        Box::pin(async {
                                            proxied!(parts, body, p, Some(c), location, &cx, record)
                                        })
                                        .await
                                    }
                                    None => error_page(500),
                                }
                            }
                            (None, _) => error_page(404),
                        };
                        limit_conn::Kept::attach(&mut resp, hold);
                        resp
                    }
                }
            }
        };
        let mut record = record.0.take();
        // An internal redirect's target (`index`, `try_files`) logged the
        // request at its own level, with the limits' variables of this
        // one when it met them here (nginx keeps them for the request).
        if resp.body().record().is_some() {
            if let Some(r) = record {
                if let Some(target) = resp.body_mut().record_mut() {
                    if target.module_values.is_empty() {
                        target.module_values.clone_from(&r.module_values);
                    }
                    if target.limit_conn == 0 {
                        target.limit_conn = r.limit_conn;
                    }
                }
                r.recycle();
            }
        } else {
            if let Some(r) = record.as_deref_mut() {
                r.status = resp.status().as_u16();
                let tried = resp
                    .extensions()
                    .get::<crate::http::static_files::TriedUri>();
                if let Some(tried) = tried {
                    tried_uri(&tried.0, r.status, r, req, client, &proxy_host);
                }
            }
            resp.body_mut().set_record(record);
        }
        resp
    }};
}

/// What [`proxied_tried`] needs besides the proxy's arguments.
struct TryFilesCx<'a> {
    client: SocketAddr,
    started: Option<std::time::Instant>,
    proxy_host: &'a ProxyName<'a>,
}

/// A proxied location with `try_files`: nginx's pre-content phase runs it
/// before the proxy answers. A path found is the request's `$uri` from
/// then on (a FastCGI application's `SCRIPT_NAME`, `DOCUMENT_URI`); the
/// last argument redirects or answers. Out of line: rare.
#[allow(clippy::too_many_arguments)]
#[inline(never)]
async fn proxied_tried(
    req: &Req<'_>,
    body: ClientBody,
    p: &crate::runtime::Proxy,
    chosen: Option<&crate::upstream::dynamic::Chosen>,
    location: &Location,
    cx: &proxy::ClientCx<'_>,
    mut record: Option<&mut crate::http::access::Record>,
    tried: TryFilesCx<'_>,
) -> Response<RespBody> {
    use crate::http::static_files::{redirect, try_before_proxy, BeforeProxy};
    match try_before_proxy(req, &location.statics, tried.client).await {
        BeforeProxy::Stay(None) => proxied!(req.parts, body, p, chosen, location, cx, record),
        BeforeProxy::Stay(Some(uri)) => {
            let head = ParsedHead::redirected(req.head, req.parts, &uri);
            let cx = proxy::ClientCx { head: &head, ..*cx };
            if let Some(r) = record.as_deref_mut() {
                tried_uri(&uri, r.status, r, req, tried.client, tried.proxy_host);
            }
            proxied!(req.parts, body, p, chosen, location, &cx, record)
        }
        BeforeProxy::Answer(resp) => *resp,
        BeforeProxy::Redirect(target) => {
            redirect(req, body, target, tried.client, tried.started).await
        }
    }
}

/// A `try_files` that found another path changed `$uri` (nginx's
/// `r->uri`): the record's variables are captured again with it. Out of
/// line: rare.
#[cold]
#[inline(never)]
fn tried_uri(
    uri: &[u8],
    status: u16,
    record: &mut crate::http::access::Record,
    req: &Req<'_>,
    client: SocketAddr,
    proxy: &ProxyName<'_>,
) {
    let head = ParsedHead::redirected(req.head, req.parts, uri);
    let vars = crate::vars::VarCtx {
        head: &head,
        ..req.vars(client, status, proxy)
    };
    record.recapture(&vars);
}

/// One request: its head, the head's bytes from an HTTP/1 client
/// (`raw`, `parse::Head::raw`: empty over HTTP/2), its body.
///
/// The answer goes into `answer`, the connection's slot for it, rather
/// than out as the future's output (it is a few hundred bytes, copied
/// with each move).
async fn handle(
    parts: &Parts,
    raw: &[u8],
    mut body: ClientBody,
    conn: &Conn,
    local: SocketAddr,
    answer: &mut Option<h1::Answer>,
) {
    let current = conn.state.runtime.load_full();
    let rt = if current.listens.iter().any(|g| g.addr == conn.listen) {
        current
    } else {
        conn.accepted_with.load_full()
    };
    let Some(group) = rt.listens.iter().find(|g| g.addr == conn.listen) else {
        *answer = Some((error_page(500), None));
        return;
    };
    let requests = conn.requests.fetch_add(1, Ordering::Relaxed) + 1;
    // What nginx checks while reading the head: a bad request line, URI
    // or Host is a 400, and the connection closes.
    let merge = group.servers[group.default].merge_slashes;
    let head = match ParsedHead::parse_merging(parts, merge) {
        Ok(head) => head,
        Err(bad) => {
            let mut resp = error_page(400);
            resp.headers_mut()
                .insert(CONNECTION, HeaderValue::from_static("close"));
            let cx = HeadCx {
                client: conn.client,
                local,
                conn: conn.id,
                requests,
                server: Some(&group.servers[group.default]),
                maps: &rt.maps,
            };
            if let Some(mut record) = refused::parsed(&cx, parts, raw, bad) {
                record.status = 400;
                resp.body_mut().set_record(Some(record));
            }
            *answer = Some((resp, None));
            return;
        }
    };
    // Most listening addresses have one server: no Host to look at then.
    let (server, server_groups) = if group.by_host() {
        let (index, groups) = group.server_match(head.host(&parts.uri, &parts.headers));
        (&group.servers[index], groups)
    } else {
        (&group.servers[0], None)
    };
    // nginx's keep-alive limits: requests, and the connection's age
    // (`keepalive_time`, against the loop's clock as nginx's
    // `ngx_current_msec`).
    // (An `Instant` sum and comparison: a difference of two costs ~50
    // instructions more.)
    let close = requests >= server.keepalive_requests
        || conn
            .start
            .checked_add(server.keepalive_time)
            .is_some_and(|end| crate::clock::now() > end);
    // realip in nginx's post-read phase, with the server's settings.
    let mut client = conn.client;
    let server_realip = server
        .realip
        .as_ref()
        .and_then(|r| r.apply(conn.client, &parts.headers, &parts.extensions));
    if let Some(real) = server_realip {
        client = real;
    }
    // A regex location's groups are `$1`..`$9` for the request.
    // A regex location's groups, else a regex server name's.
    let (location, groups) = match server.ret {
        Some(_) => (None, None),
        None => match server.locations.find(head.uri(&parts.uri)) {
            Some((location, groups)) => (Some(location), groups),
            None => (None, None),
        },
    };
    // `limit_rate` paces from the request's start (nginx's `r->start_sec`),
    // read only where the level has one.
    let rate_start = location
        .map_or(&server.outbound, |l| &l.outbound)
        .limit_rate
        .map(|_| crate::clock::unix_secs());
    // The limits the request met, for its internal redirects too.
    let pre_access = proxy::PreAccess::default();
    // The matches whose named groups are variables (most requests have
    // none).
    let (outer, named_store);
    let named = match (&groups, &server_groups) {
        (None, None) => None,
        _ => {
            outer = match (location, &groups) {
                (Some(l), Some(_)) if !l.outer_named.is_empty() => {
                    server.locations.outer_groups(l, head.uri(&parts.uri))
                }
                _ => Vec::new(),
            };
            named_store = crate::vars::NamedGroups {
                location: groups.as_ref().zip(location.map(|l| &l.named[..])),
                outer: &outer,
                server: server_groups.as_ref().map(|(c, named)| (c, *named)),
            };
            Some(&named_store)
        }
    };
    let req = Req {
        parts,
        original: None,
        head: &head,
        raw,
        conn,
        local,
        requests,
        server,
        maps: &rt.maps,
        captures: groups.as_ref().or(server_groups.as_ref().map(|(c, _)| c)),
        named,
        err_status: 0,
        changes: crate::http::error_page::MAX_URI_CHANGES + 1,
        pre_access: &pre_access,
        // `$document_root` and kin: the level's.
        statics: Some(location.map_or(&server.statics, |l| &l.statics)),
        subrequest: false,
        auth_done: false,
        granted: false,
        mirror_after_try: None,
    };

    // What no location answers is logged with the server's access logs.
    // `conn`: `$limit_conn_status`.
    let server_logged = |resp: Response<RespBody>, conn: u8| {
        let mut resp = resp;
        if let Some(logs) = &server.access_log {
            let status = resp.status().as_u16();
            let mut record = logs.start(
                &req.vars(client, status, &ProxyName::NONE),
                crate::clock::now(),
            );
            record.status = status;
            record.limit_conn = conn;
            resp.body_mut().set_record(Some(record));
        }
        resp
    };
    // nginx's find-config phase: the location's `client_max_body_size`
    // against the announced length (the server level's where no location
    // matches), after a server-level `return` and before the location's.
    let limits = location.map_or(&server.client, |l| &l.client);
    let send = limits.send_timeout;
    body.set_limits(limits.max_body, limits.body_timeout);
    // The announced length is the body's exact size (the connection
    // framed it by its Content-Length): no header lookup.
    let rewritten =
        server.script.is_some() || location.is_some_and(|l| l.script_for(&parts.method).is_some());
    // (With rewrite lines, the location the request ends in checks it.)
    let too_large = server.ret.is_none()
        && !rewritten
        && limits.max_body != 0
        && http_body::Body::size_hint(&body)
            .exact()
            .is_some_and(|n| n > limits.max_body)
        // nginx refuses a client's request for an `internal` location first.
        && !location.is_some_and(|l| matches!(l.action, Action::Internal(_)));
    // `ssl_verify_client`: a connection without the certificate it needs
    // has its requests refused (nginx's 495 and 496, 400 pages).
    // (Looked for only where a server of the address asks for one.)
    let refused = group
        .tls
        .as_ref()
        .filter(|tls| tls.verifies)
        .and_then(|_| parts.extensions.get::<Https>())
        .and_then(|https| https.0.refusal());
    let resp = if let Some((status, mut line)) = refused {
        line.push_str(" while reading client request headers");
        proxy::request_context(&req.client_cx(client), parts, &mut line);
        log::write(Level::Info, Some(conn.id), &line);
        server_logged(error_page(status), 0)
    } else if let Some(r) = &server.ret {
        server_logged(reply(r, &req.vars(client, r.status, &ProxyName::NONE)), 0)
    } else if too_large {
        let mut resp = error_page(413);
        resp.headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("close"));
        match location.and_then(|l| l.logs_for(&parts.method)) {
            Some(logs) => {
                let mut record = logs.start(
                    &req.vars(client, 413, &ProxyName::NONE),
                    crate::clock::now(),
                );
                record.status = 413;
                resp.body_mut().set_record(Some(record));
                resp
            }
            None if location.is_some() => resp,
            None => server_logged(resp, 0),
        }
    } else if rewritten {
        // nginx's rewrite phases (out of line: most servers and locations
        // have no `rewrite`).
        let realip = server_realip.is_none();
        crate::http::rewrite::serve(&req, body, location, client, realip, None, false).await
    } else {
        match location {
            // nginx's pre-access and access phases run with the server
            // level's settings.
            None => server_level(&req, body, client, None).await,
            Some(location) => {
                let realip = server_realip.is_none();
                let action = location.action_for(&parts.method);
                location_answer!(&req, body, location, action, client, realip, None)
            }
        }
    };
    // An internal redirect (`index`, `try_files`) answered at another
    // level: its header filters and `error_page`s apply.
    // Its variables are the request's as the redirect or the rewrite
    // lines left it (`set`'s, a new `$uri`).
    // (`auth_request` may mark a proxied answer with the variables it set.)
    let answered = match location {
        Some(l)
            if matches!(l.action_for(&parts.method), Action::Proxy(_))
                && !rewritten
                && l.auth_request.is_none() =>
        {
            None
        }
        _ => resp
            .extensions()
            .get::<crate::http::static_files::AnsweredAt>()
            .cloned(),
    };
    let location = match &answered {
        Some(at) => at.0.map(|i| &server.locations.list[i]),
        None => location,
    };
    // (With the internal redirects left, for `error_page`; a copy only
    // where a redirect or rewrite answered.)
    let counted;
    let req = match &answered {
        Some(a) if a.2 != req.changes => {
            counted = Req {
                changes: a.2,
                ..req
            };
            &counted
        }
        _ => &req,
    };
    let last = answered.as_ref().and_then(|a| a.1.as_deref());
    let last = last.map(|f| req.redirected(&f.parts, &f.head, None, req.err_status, req.changes));
    let (parts, req) = match &last {
        Some(last) => (last.parts, last),
        None => (parts, req),
    };
    // nginx's special response handler: the level in effect may have an
    // `error_page` for the status (out of line, boxed: most answers are
    // not errors, and most levels have none).
    let outbound = location.map_or(&server.outbound, |l| &l.outbound);
    // A location `if` that held answers with its own header filters.
    let if_outbound = last
        .as_ref()
        .and_then(|l| l.parts.extensions.get::<crate::http::rewrite::IfOutbound>());
    let outbound = if_outbound.map_or(outbound, |o| &*o.0);
    let proxy_host = match location.map(|l| l.action_for(&parts.method)) {
        Some(Action::Proxy(p)) => p.name(),
        _ => ProxyName::NONE,
    };
    // The header filters of the location that made the answer, and the
    // keep-alive decision (in place: an answer is a few hundred bytes).
    let filters = |resp: &mut Response<RespBody>, outbound: &crate::http::outbound::Outbound| {
        outbound.apply(resp, parts, |status| req.vars(client, status, &proxy_host));
        if let Some(start) = rate_start {
            if let Some(limit) = resp
                .extensions_mut()
                .get_mut::<crate::http::h1::LimitRate>()
            {
                limit.start_secs = start;
            }
        }
        if close {
            resp.headers_mut()
                .insert(CONNECTION, HeaderValue::from_static("close"));
        }
    };
    if let Some(pages) = location.map_or(&server.error_pages, |l| &l.error_pages) {
        // Only a status the level lists goes out of line. `resp` is moved
        // in and not used after the wait, so a plain answer is never kept
        // in this future's state (a copy of it each way).
        if crate::http::error_page::special(&resp).is_some_and(|code| pages.find(code).is_some()) {
            let (mut redirected, last) =
                crate::http::error_page::apply(req, pages, client, resp).await;
            filters(&mut redirected, last.map_or(outbound, |l| &l.outbound));
            *answer = Some((redirected, Some(send)));
            return;
        }
    }
    let mut resp = resp;
    filters(&mut resp, outbound);
    *answer = Some((resp, Some(send)));
}

/// What a request's answer is made from once its server is known. An
/// internal redirect (`error_page`) makes another one for the new target.
#[derive(Clone, Copy)]
pub(crate) struct Req<'a> {
    pub(crate) parts: &'a Parts,
    /// The client's request, where an internal redirect made `parts`.
    pub(crate) original: Option<&'a Parts>,
    pub(crate) head: &'a ParsedHead,
    pub(crate) raw: &'a [u8],
    pub(crate) conn: &'a Conn,
    pub(crate) local: SocketAddr,
    pub(crate) requests: u64,
    pub(crate) server: &'a crate::runtime::Server,
    pub(crate) maps: &'a [crate::map::Map],
    pub(crate) captures: Option<&'a crate::pattern::Captures<'a>>,
    /// The groups whose named ones are variables: the regex location's,
    /// then the regex server name's ([`VarCtx::named`]).
    pub(crate) named: crate::vars::NamedRef<'a>,
    /// nginx's `err_status` while an `error_page` target answers: what
    /// `$status` shows there (0: none).
    pub(crate) err_status: u16,
    /// Internal redirects left before nginx's cycle error (its
    /// `uri_changes`).
    pub(crate) changes: u8,
    /// The limits of the pre-access phase (`limit_conn`, filter modules)
    /// the request met, at this level or before an internal redirect.
    pub(crate) pre_access: &'a proxy::PreAccess,
    /// The static settings of the level the request is at
    /// (`$document_root`, `$request_filename`).
    pub(crate) statics: Option<&'a crate::http::static_files::Static>,
    /// An `auth_request` subrequest: no access phase, not logged.
    pub(crate) subrequest: bool,
    /// The level's `auth_request` ran for the request (its answer, with
    /// the variables it set, is this).
    pub(crate) auth_done: bool,
    /// `satisfy any` and the subrequest let the request in: the level's
    /// other access checks do not refuse it.
    pub(crate) granted: bool,
    /// The level's `mirror`, where `try_files` comes first (nginx's
    /// pre-content phase runs it before the mirrors): started once it
    /// found a file, not before an internal redirect or its `=code`.
    pub(crate) mirror_after_try: Option<&'a crate::http::mirror::Mirror>,
}

impl<'a> Req<'a> {
    #[inline]
    pub(crate) fn vars<'b>(
        &'b self,
        client: SocketAddr,
        status: u16,
        proxy: &'b ProxyName<'b>,
    ) -> VarCtx<'b> {
        VarCtx {
            req: self.parts,
            head: self.head,
            client,
            peer: self.conn.client,
            local: self.local,
            server_name: &self.server.name,
            proxy,
            conn: self.conn.id,
            requests: self.requests,
            status: if self.err_status != 0 {
                self.err_status
            } else {
                status
            },
            request_line: b"",
            original: self.original,
            maps: self.maps,
            captures: self.captures,
            named: self.named,
            statics: self.statics,
            upstream: None,
            answer: None,
        }
    }

    /// The request an internal redirect makes of this one: `parts` and
    /// `head` the new target's, `captures` its location's groups (else
    /// these), the client's request kept as the original.
    pub(crate) fn redirected<'b>(
        &'b self,
        parts: &'b Parts,
        head: &'b ParsedHead,
        captures: Option<&'b crate::pattern::Captures<'b>>,
        err_status: u16,
        changes: u8,
    ) -> Req<'b>
    where
        'a: 'b,
    {
        Req {
            parts,
            original: Some(self.original.unwrap_or(self.parts)),
            head,
            raw: self.raw,
            conn: self.conn,
            local: self.local,
            requests: self.requests,
            server: self.server,
            maps: self.maps,
            captures: captures.or(self.captures),
            // (A redirect's new location sets its groups' variables.)
            named: self.named,
            err_status,
            changes,
            pre_access: self.pre_access,
            statics: self.statics,
            // A redirect's target has its own access phase, but in a
            // subrequest, which has none.
            subrequest: self.subrequest,
            auth_done: false,
            granted: self.subrequest,
            mirror_after_try: None,
        }
    }

    /// Writes `line` to the error log at `level` as the request's line
    /// (nginx's `, client: ..., request: "..."` after it).
    pub(crate) fn log_line(&self, client: SocketAddr, level: crate::log::Level, mut line: String) {
        if crate::log::enabled(level) {
            proxy::request_context(&self.client_cx(client), self.parts, &mut line);
            crate::log::write(level, Some(self.conn.id), &line);
        }
    }

    #[inline]
    pub(crate) fn client_cx(&self, client: SocketAddr) -> ClientCx<'a> {
        ClientCx {
            client,
            peer: self.conn.client,
            local: self.local,
            conn: self.conn.id,
            requests: self.requests,
            head: self.head,
            raw: self.raw,
            server: self.server,
            maps: self.maps,
            captures: self.captures,
            named: self.named,
            original: self.original,
            pre_access: self.pre_access,
            err_status: self.err_status,
            statics: self.statics,
            granted: self.granted || self.subrequest,
        }
    }
}

/// What no location takes: nginx's pre-access and access phases with the
/// server level's settings (`limit_conn` once per request), then its
/// files, logged with the server's access logs.
pub(crate) async fn server_level(
    req: &Req<'_>,
    body: ClientBody,
    client: SocketAddr,
    started: Option<std::time::Instant>,
) -> Response<RespBody> {
    let server = req.server;
    if (server.auth_request.is_some() || server.mirror.is_some())
        && !req.auth_done
        && !req.subrequest
    {
        return Box::pin(crate::http::auth_request::at_server(
            req, body, client, started,
        ))
        .await;
    }
    let req = &Req {
        statics: Some(&server.statics),
        ..*req
    };
    // (`$request_time` counts from here, before any delay.)
    let started = Some(started.unwrap_or_else(crate::clock::now));
    let parts = req.parts;
    // The pre-access phase with the server's settings: filter modules
    // (`limit_req`), then `limit_conn`.
    let mut module_values = Vec::new();
    if !server.filters.is_empty() && !req.pre_access.met(proxy::PreAccess::REQ) {
        let cx = req.client_cx(client);
        let refused = Box::pin(proxy::location_filters(
            &server.filters,
            parts,
            &cx,
            req.vars(client, 0, &ProxyName::NONE),
            Some(&mut module_values),
        ))
        .await;
        if let Some(resp) = refused {
            return server_logged(req, resp, client, started, 0, module_values);
        }
    }
    let mut conn = 0;
    let checked = match &server.limit_conn {
        Some(limits) if !req.pre_access.meet(proxy::PreAccess::CONN) => {
            let cx = req.client_cx(client);
            limit_conn::check(
                limits,
                &req.vars(client, 0, &ProxyName::NONE),
                &cx,
                parts,
                &mut conn,
            )
        }
        _ => Ok(None),
    };
    let resp = match checked {
        Err(code) => finalized(code),
        Ok(hold) => {
            let cx = req.client_cx(client);
            let refused = access(
                &server.access,
                server.auth_basic.as_deref(),
                server.satisfy_any,
                parts,
                &req.vars(client, 0, &ProxyName::NONE),
                &cx,
            )
            .await;
            let mut resp = match refused {
                Some(resp) => resp,
                None => {
                    crate::http::static_files::serve(req, body, &server.statics, client, started)
                        .await
                }
            };
            limit_conn::Kept::attach(&mut resp, hold);
            resp
        }
    };
    server_logged(req, resp, client, started, conn, module_values)
}

/// `resp` of a request no location took, with its record for the
/// server's access logs (unless an internal redirect's target logged the
/// request at its own level).
fn server_logged(
    req: &Req<'_>,
    mut resp: Response<RespBody>,
    client: SocketAddr,
    started: Option<std::time::Instant>,
    conn: u8,
    module_values: Vec<(usize, &'static str)>,
) -> Response<RespBody> {
    if let (Some(logs), None) = (&req.server.access_log, resp.body().record()) {
        let status = resp.status().as_u16();
        let started = started.unwrap_or_else(crate::clock::now);
        let mut record = logs.start(&req.vars(client, status, &ProxyName::NONE), started);
        record.status = status;
        record.limit_conn = conn;
        record.module_values = module_values;
        resp.body_mut().set_record(Some(record));
    }
    resp
}

/// [`location_answer!`] as a function, for an internal redirect's target.
pub(crate) async fn at_location(
    req: &Req<'_>,
    body: ClientBody,
    location: &Location,
    action: &Action,
    client: SocketAddr,
    realip: bool,
    started: Option<std::time::Instant>,
) -> Response<RespBody> {
    // `$document_root` and kin are the new location's.
    let req = &Req {
        statics: Some(&location.statics),
        ..*req
    };
    location_answer!(req, body, location, action, client, realip, started)
}

/// nginx's access phase for an answer the server makes itself: the rules
/// alone at once, or with `auth_basic` (boxed: it reads a file).
pub(crate) async fn access(
    rules: &allow::Rules,
    auth: Option<&crate::http::auth_basic::AuthBasic>,
    satisfy_any: bool,
    parts: &Parts,
    vars: &crate::vars::VarCtx<'_>,
    cx: &ClientCx<'_>,
) -> Option<Response<RespBody>> {
    if cx.granted {
        return None;
    }
    match auth {
        None => (!rules.allows(cx.client.ip())).then(|| allow::forbidden(cx, parts)),
        Some(auth) => {
            Box::pin(allow::access_phase(
                rules,
                Some(auth),
                satisfy_any,
                parts,
                vars,
                cx,
            ))
            .await
        }
    }
}
