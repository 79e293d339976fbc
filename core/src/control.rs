//! Process control, nginx's master role: start, `-t`/`-T`, `-s`, signals,
//! and reload (build a whole new configuration off the request path, then
//! swap it in; on any error the running one stays).

use crate::upstream::health::Checks;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::cli::Cli;
use crate::conf::interp::{self, Env};
use crate::conf::model::{Config, LogTarget, MainConf};
use crate::conf::ConfError;
use crate::http::server::{self, ListenerSet, State};
use crate::log::{self, Level};
use crate::modules::loader::Loader;
use crate::runtime::{build::build, carry::carry_over, Runtime};

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Paths fixed for the life of the process.
struct Paths {
    prefix: PathBuf,
    conf: PathBuf,
    modules_dir: PathBuf,
    globals: Option<String>,
}

impl Paths {
    fn new(cli: &Cli) -> Paths {
        let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
        let prefix = match &cli.prefix {
            Some(p) if p.is_absolute() => p.clone(),
            Some(p) => cwd.join(p),
            None => cwd,
        };
        let conf = match &cli.conf {
            Some(c) if c.is_absolute() => c.clone(),
            Some(c) => prefix.join(c),
            None => prefix.join("conf/waypost.conf"),
        };
        let modules_dir = cli.modules_dir.clone().unwrap_or_else(|| {
            std::env::current_exe()
                .ok()
                .and_then(|exe| exe.parent().map(Path::to_path_buf))
                .unwrap_or_else(|| PathBuf::from("."))
        });
        Paths {
            prefix,
            conf: normalize(&conf),
            modules_dir,
            globals: cli.globals.clone(),
        }
    }
}

/// `a/./b/../c` -> `a/c`, without touching the file system, so messages
/// name the file as nginx would.
fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

fn private_module_dir() -> PathBuf {
    // SAFETY: getuid has no failure mode.
    let uid = unsafe { libc::getuid() };
    std::env::temp_dir().join(format!("waypost-modules-{uid}"))
}

fn load(paths: &Paths, loader: &Loader) -> Result<Config, ConfError> {
    let env = Env {
        prefix: &paths.prefix,
        modules_dir: &paths.modules_dir,
        loader,
        globals: paths.globals.as_deref(),
    };
    interp::load(&paths.conf, &env)
}

fn emerg(e: &dyn std::fmt::Display) {
    eprintln!("waypost: [emerg] {e}");
}

/// The whole program; returns the exit code.
pub fn main(cli: Cli) -> i32 {
    log::init();
    if cli.version || cli.version_details {
        eprintln!("waypost version: waypost/{VERSION}");
        if cli.version_details {
            eprintln!("module ABI: {}", waypost_module_api::ABI_VERSION);
        }
        return 0;
    }
    let paths = Paths::new(&cli);
    let loader = Loader::new(private_module_dir());

    if let Some(sig) = &cli.signal {
        return send_signal(&paths, &loader, sig);
    }
    if cli.test || cli.dump {
        return test_config(&paths, &loader, cli.quiet, cli.dump);
    }

    // Before the pid file exists, so that a `-s` reaching this process
    // early finds the handlers rather than the default actions.
    let signals = match signals::install() {
        Ok(s) => s,
        Err(e) => {
            emerg(&format!("cannot install signal handlers: {e}"));
            return 1;
        }
    };
    let runtime = match load(&paths, &loader).and_then(|c| build(c, None)) {
        Ok(rt) => rt,
        Err(e) => {
            emerg(&e);
            return 1;
        }
    };
    let (target, level) = runtime.main.error_log.clone();
    if let Err(e) = log::set_target(&target, level) {
        let msg = match &target {
            LogTarget::File(p) => open_failed(p, &e),
            LogTarget::Stderr | LogTarget::Syslog(_) => e.to_string(),
        };
        emerg(&msg);
        return 1;
    }
    let listeners = match bind_all(&runtime, &ListenerSet::default()) {
        Ok(l) => l,
        Err(e) => {
            emerg(&e);
            log::write(Level::Emerg, None, &e);
            return 1;
        }
    };
    let pid_path = runtime.main.pid.clone();
    if let Err(e) = write_pid(&pid_path) {
        let msg = open_failed(&pid_path, &e);
        emerg(&msg);
        log::write(Level::Emerg, None, &msg);
        return 1;
    }
    let workers = runtime.main.worker_processes;
    let state = State::new(Arc::new(runtime), listeners);
    let handles = match server::spawn_workers(&state, workers) {
        Ok(h) => h,
        Err(e) => {
            emerg(&format!("cannot start worker threads: {e}"));
            let _ = std::fs::remove_file(&pid_path);
            return 1;
        }
    };
    log::write(
        Level::Notice,
        None,
        &format!("waypost/{VERSION} started, {workers} worker thread(s)"),
    );
    master_loop(&paths, &loader, &state, signals, handles);
    let pid_now = state.runtime.load().main.pid.clone();
    let _ = std::fs::remove_file(pid_now);
    crate::log::access::flush(Duration::from_secs(2));
    log::write(Level::Notice, None, "exit");
    0
}

fn write_pid(path: &Path) -> std::io::Result<()> {
    let mut f = std::fs::File::create(path)?;
    writeln!(f, "{}", std::process::id())
}

/// `-t` and `-T`, nginx's wording on stderr.
fn test_config(paths: &Paths, loader: &Loader, quiet: bool, dump: bool) -> i32 {
    let file = paths.conf.display();
    let env = Env {
        prefix: &paths.prefix,
        modules_dir: &paths.modules_dir,
        loader,
        globals: paths.globals.as_deref(),
    };
    // As nginx: "syntax is ok" once everything nginx checks while parsing
    // has passed (the runtime build here: modules' upstream hooks, variables),
    // then the checks nginx makes after parsing (events section, connections,
    // shared memory).
    let result = interp::parse(&paths.conf, &env).and_then(|checked| {
        let post = checked.post_check();
        let rt = build(checked.into_config(), None)?;
        if !quiet {
            eprintln!("waypost: the configuration file {file} syntax is ok");
        }
        post.map(|()| rt)
    });
    match result {
        Ok(rt) => {
            if !quiet {
                eprintln!("waypost: configuration file {file} test is successful");
            }
            if dump {
                let mut out = std::io::stdout().lock();
                for (path, text) in &rt.files {
                    let _ = writeln!(out, "# configuration file {}:", path.display());
                    let _ = out.write_all(text.as_bytes());
                    if !text.ends_with('\n') {
                        let _ = writeln!(out);
                    }
                    let _ = writeln!(out);
                }
            }
            0
        }
        Err(e) => {
            emerg(&e);
            eprintln!("waypost: configuration file {file} test failed");
            1
        }
    }
}

/// `-s SIGNAL`: like nginx, parse the configuration first (a bad one sends
/// nothing), then signal the pid in its `pid` file.
fn send_signal(paths: &Paths, loader: &Loader, name: &str) -> i32 {
    let config = match load(paths, loader) {
        Ok(c) => c,
        Err(e) => {
            emerg(&e);
            return 1;
        }
    };
    let pid_path = &config.main.pid;
    let text = match std::fs::read_to_string(pid_path) {
        Ok(t) => t,
        Err(e) => {
            eprintln!(
                "waypost: [error] open() \"{}\" failed ({}: {})",
                pid_path.display(),
                e.raw_os_error().unwrap_or(0),
                crate::http::proxy::strerror(&e)
            );
            return 1;
        }
    };
    let Ok(pid) = text.trim().parse::<libc::pid_t>() else {
        eprintln!(
            "waypost: [error] invalid PID number \"{}\" in \"{}\"",
            text.trim(),
            pid_path.display()
        );
        return 1;
    };
    let sig = match name {
        "stop" => libc::SIGTERM,
        "quit" => libc::SIGQUIT,
        "reopen" => libc::SIGUSR1,
        _ => libc::SIGHUP,
    };
    // SAFETY: kill has no memory effects.
    if unsafe { libc::kill(pid, sig) } != 0 {
        let e = std::io::Error::last_os_error();
        eprintln!(
            "waypost: [alert] kill({pid}, {sig}) failed ({}: {})",
            e.raw_os_error().unwrap_or(0),
            crate::http::proxy::strerror(&e)
        );
        return 1;
    }
    0
}

/// Binds every listening address of `rt`, reusing the sockets of `old` for
/// addresses that stay, so a reload never closes a listening socket that
/// is still configured.
fn bind_all(rt: &Runtime, old: &ListenerSet) -> Result<ListenerSet, String> {
    let mut set = ListenerSet::default();
    let mut kept = Vec::new();
    for group in &rt.listens {
        if let Some((addr, socket)) = old.items.iter().find(|(a, _)| *a == group.addr) {
            kept.push((group, socket.clone()));
            set.items.push((*addr, socket.clone()));
            continue;
        }
        let socket = server::bind(group).map_err(|e| {
            format!(
                "bind() to {} failed ({}: {})",
                group.addr,
                e.raw_os_error().unwrap_or(0),
                crate::http::proxy::strerror(&e)
            )
        })?;
        set.items.push((group.addr, Arc::new(socket)));
    }
    // As nginx, once every new socket is open (a reload that fails leaves
    // the old ones as they were), the new `listen` options and backlog
    // apply to the sockets kept.
    for (group, socket) in kept {
        let socket = socket2::SockRef::from(&*socket);
        if let Err(e) = socket.listen(group.backlog) {
            let line = format!(
                "listen() to {}, backlog {} failed, ignored ({e})",
                group.addr, group.backlog
            );
            crate::log::write(crate::log::Level::Alert, None, &line);
        }
        server::configure(&socket, group);
    }
    Ok(set)
}

/// `open() "PATH" failed (ERRNO: TEXT)`, nginx's message for a file it
/// cannot open.
fn open_failed(path: &Path, e: &std::io::Error) -> String {
    format!(
        "open() \"{}\" failed ({}: {})",
        path.display(),
        e.raw_os_error().unwrap_or(0),
        crate::http::proxy::strerror(e)
    )
}

/// `worker_shutdown_timeout`: how long a graceful shutdown lets requests
/// run before the remaining connections are closed; without it a graceful
/// shutdown waits for every request, as nginx.
fn shutdown_timeout(main: &MainConf) -> Option<Duration> {
    main.worker_shutdown_timeout
}

/// Waits for signals on the main thread, and does what each asks, as
/// nginx's master: HUP reloads, USR1 reopens the logs, TERM and INT return
/// at once (the caller exits, closing every connection), QUIT stops
/// accepting and returns once the workers have drained their connections,
/// or when `worker_shutdown_timeout` runs out.
fn master_loop(
    paths: &Paths,
    loader: &Loader,
    state: &Arc<State>,
    signals: std::os::unix::net::UnixDatagram,
    workers: Vec<JoinHandle<()>>,
) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            log::write(
                Level::Emerg,
                None,
                &format!("cannot start the signal loop: {e}"),
            );
            return;
        }
    };
    rt.block_on(async {
        let signals = match tokio::net::UnixDatagram::from_std(signals) {
            Ok(s) => s,
            Err(e) => {
                log::write(
                    Level::Emerg,
                    None,
                    &format!("cannot watch for signals: {e}"),
                );
                return;
            }
        };
        // Health checks run as tasks of this runtime, off the workers.
        let mut _checks = Checks::start(&state.runtime.load());
        loop {
            match signals::next(&signals).await {
                libc::SIGHUP => {
                    let before = state.runtime.load_full();
                    reload(paths, loader, state);
                    if !Arc::ptr_eq(&before, &state.runtime.load()) {
                        // The new set starts before the old one stops.
                        _checks = Checks::start(&state.runtime.load());
                    }
                }
                libc::SIGUSR1 => reopen(state),
                libc::SIGTERM | libc::SIGINT => return,
                libc::SIGQUIT => break,
                _ => {}
            }
        }

        // Graceful shutdown: workers stop accepting and close idle
        // connections; requests in flight finish.
        log::write(Level::Notice, None, "gracefully shutting down");
        state.quit();
        // The last references to the listening sockets: new connections are
        // refused from now on instead of waiting in a backlog nobody reads.
        state
            .listeners
            .send_replace(Arc::new(ListenerSet::default()));
        let (done, mut drained) = tokio::sync::oneshot::channel();
        let joiner = std::thread::Builder::new()
            .name("shutdown".into())
            .spawn(move || {
                for w in workers {
                    let _ = w.join();
                }
                let _ = done.send(());
            });
        if let Err(e) = joiner {
            log::write(
                Level::Alert,
                None,
                &format!("cannot wait for the workers: {e}"),
            );
            return;
        }
        let timeout = shutdown_timeout(&state.runtime.load().main);
        let timer = tokio::time::sleep(timeout.unwrap_or(Duration::MAX / 4));
        tokio::pin!(timer);
        loop {
            tokio::select! {
                _ = &mut drained => return,
                // The caller exits, which closes what is still open.
                _ = &mut timer, if timeout.is_some() => return,
                signo = signals::next(&signals) => match signo {
                    libc::SIGTERM | libc::SIGINT => return,
                    libc::SIGUSR1 => reopen(state),
                    // As nginx's master while it quits: HUP is ignored.
                    _ => {}
                },
            }
        }
    })
}

/// SIGUSR1: reopen the error log and the access logs (logrotate).
fn reopen(state: &State) {
    log::write(Level::Notice, None, "reopening logs");
    if let Err(e) = log::reopen() {
        let msg = match &state.runtime.load().main.error_log.0 {
            LogTarget::File(p) => open_failed(p, &e),
            LogTarget::Stderr | LogTarget::Syslog(_) => {
                format!("reopening the error log failed: {e}")
            }
        };
        log::write(Level::Alert, None, &msg);
    }
    crate::log::access::reopen();
}

/// SIGHUP: builds the whole new configuration (parse, modules,
/// `init_upstream`, log file, listening sockets, pid file); only a
/// complete success replaces the running one. Any error is logged, once,
/// to the current error log, and nothing else changes.
fn reload(paths: &Paths, loader: &Loader, state: &Arc<State>) {
    log::write(Level::Notice, None, "reconfiguring");
    // Counted as failed unless it gets to the end (`waypost_reloads_total`).
    let outcome = crate::metrics::Reload::start();
    // The running configuration hands its filter modules' state (limit_req
    // counters) to the new one.
    let current = state.runtime.load_full();
    let runtime = match load(paths, loader).and_then(|c| build(c, Some(&current))) {
        Ok(rt) => rt,
        Err(e) => {
            log::write(Level::Emerg, None, &e.to_string());
            return;
        }
    };
    let old = state.runtime.load_full();
    if runtime.main.worker_processes != old.main.worker_processes {
        log::write(
            Level::Warn,
            None,
            "changing worker_processes needs a restart; keeping the current number of workers",
        );
    }
    // nginx opens the log files before the listening sockets. The new file
    // is only checked here; the error log switches over with the rest.
    let (target, level) = runtime.main.error_log.clone();
    if let LogTarget::File(path) = &target {
        if let Err(e) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            log::write(Level::Emerg, None, &open_failed(path, &e));
            return;
        }
    }
    let listeners = match bind_all(&runtime, &state.listeners.borrow()) {
        Ok(l) => l,
        Err(e) => {
            log::write(Level::Emerg, None, &e);
            return;
        }
    };
    let pid_moved = runtime.main.pid != old.main.pid;
    if pid_moved {
        if let Err(e) = write_pid(&runtime.main.pid) {
            log::write(Level::Emerg, None, &open_failed(&runtime.main.pid, &e));
            return;
        }
    }
    if let Err(e) = log::set_target(&target, level) {
        let msg = match &target {
            LogTarget::File(p) => open_failed(p, &e),
            LogTarget::Stderr | LogTarget::Syslog(_) => e.to_string(),
        };
        log::write(Level::Emerg, None, &msg);
        if pid_moved {
            let _ = std::fs::remove_file(&runtime.main.pid);
        }
        return;
    }

    carry_over(&old, &runtime);
    let listens = runtime.listens.len();
    state.set_runtime(Arc::new(runtime));
    // After the configuration: a connection woken by the new listener set
    // finds the configuration that goes with it.
    state.listeners.send_replace(Arc::new(listeners));
    if pid_moved {
        let _ = std::fs::remove_file(&old.main.pid);
    }
    log::write(
        Level::Notice,
        None,
        &format!("configuration reloaded, {listens} listen address(es)"),
    );
    outcome.succeeded();
    // `old` is the last reference unless requests or connections still use
    // it; its upstreams (and the modules' objects) are dropped with it.
}

/// Signals as nginx's master receives them: with the sender's pid, which
/// tokio's signal streams do not give. The handlers (SA_SIGINFO) do only
/// async-signal-safe things: one `send` of the signal number and the
/// sender's pid on a datagram socket pair, whose other end the master loop
/// reads.
mod signals {
    use std::io;
    use std::os::fd::IntoRawFd;
    use std::os::unix::net::UnixDatagram;
    use std::sync::atomic::{AtomicI32, Ordering};

    use crate::log::{self, Level};

    /// The signals the master handles, with nginx's names and the action
    /// its log line names.
    const HANDLED: [(libc::c_int, &str, &str); 5] = [
        (libc::SIGHUP, "SIGHUP", ", reconfiguring"),
        (libc::SIGINT, "SIGINT", ", exiting"),
        (libc::SIGQUIT, "SIGQUIT", ", shutting down"),
        (libc::SIGUSR1, "SIGUSR1", ", reopening"),
        (libc::SIGTERM, "SIGTERM", ", exiting"),
    ];

    /// The write end of the pair, for the handlers.
    static WRITE_FD: AtomicI32 = AtomicI32::new(-1);

    extern "C" fn handler(
        signo: libc::c_int,
        info: *mut libc::siginfo_t,
        _context: *mut libc::c_void,
    ) {
        // SAFETY: only async-signal-safe calls (send), and errno is kept
        // for the code the signal interrupted.
        unsafe {
            let errno = *libc::__errno_location();
            let pid = if info.is_null() { 0 } else { (*info).si_pid() };
            let fd = WRITE_FD.load(Ordering::Relaxed);
            if fd >= 0 {
                let mut msg = [0u8; 8];
                msg[..4].copy_from_slice(&signo.to_ne_bytes());
                msg[4..].copy_from_slice(&pid.to_ne_bytes());
                // A full socket drops the datagram: the signals before it
                // are still queued, and nginx's signals coalesce too.
                libc::send(
                    fd,
                    msg.as_ptr().cast(),
                    msg.len(),
                    libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
                );
            }
            *libc::__errno_location() = errno;
        }
    }

    /// Installs the handlers and returns the end to read them from
    /// (non-blocking, for the master's event loop).
    pub fn install() -> io::Result<UnixDatagram> {
        let (read, write) = UnixDatagram::pair()?;
        read.set_nonblocking(true)?;
        write.set_nonblocking(true)?;
        // The write end lives as long as the process: a handler may run
        // at any moment.
        let old = WRITE_FD.swap(write.into_raw_fd(), Ordering::SeqCst);
        if old >= 0 {
            // SAFETY: `old` came from into_raw_fd and nothing else owns it.
            unsafe { libc::close(old) };
        }
        for (signo, _, _) in HANDLED {
            // SAFETY: a zeroed sigaction is valid; the handler has the
            // SA_SIGINFO signature.
            unsafe {
                let mut action: libc::sigaction = std::mem::zeroed();
                action.sa_sigaction = handler
                    as extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void)
                    as libc::sighandler_t;
                action.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
                libc::sigemptyset(&mut action.sa_mask);
                if libc::sigaction(signo, &action, std::ptr::null_mut()) != 0 {
                    return Err(io::Error::last_os_error());
                }
            }
        }
        Ok(read)
    }

    /// The next signal, logged as nginx does:
    /// `signal 1 (SIGHUP) received from 4242, reconfiguring`.
    pub async fn next(socket: &tokio::net::UnixDatagram) -> libc::c_int {
        let mut msg = [0u8; 8];
        loop {
            match socket.recv(&mut msg).await {
                Ok(8) => break,
                Ok(_) => continue,
                Err(e) => {
                    log::write(
                        Level::Alert,
                        None,
                        &format!("reading the signal socket failed: {e}"),
                    );
                    // Nothing else can fail here; do not spin if it does.
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            }
        }
        let signo = libc::c_int::from_ne_bytes([msg[0], msg[1], msg[2], msg[3]]);
        let pid = libc::pid_t::from_ne_bytes([msg[4], msg[5], msg[6], msg[7]]);
        let (name, action) = HANDLED
            .iter()
            .find(|(s, _, _)| *s == signo)
            .map_or(("", ""), |&(_, name, action)| (name, action));
        let line = if pid != 0 {
            format!("signal {signo} ({name}) received from {pid}{action}")
        } else {
            format!("signal {signo} ({name}) received{action}")
        };
        log::write(Level::Notice, None, &line);
        signo
    }
}
