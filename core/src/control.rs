//! Process control, nginx's master role: start, `-t`/`-T`, `-s`, signals,
//! and reload (build a whole new configuration off the request path, then
//! swap it in; on any error the running one stays).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::signal::unix::{signal, SignalKind};

use crate::cli::Cli;
use crate::conf::interp::{self, Env};
use crate::conf::model::Config;
use crate::conf::ConfError;
use crate::http::server::{self, ListenerSet, State};
use crate::log::{self, Level};
use crate::modules::loader::Loader;
use crate::runtime::{build::build, Runtime};

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

    let runtime = match load(&paths, &loader).and_then(build) {
        Ok(rt) => rt,
        Err(e) => {
            emerg(&e);
            return 1;
        }
    };
    let (target, level) = runtime.main.error_log.clone();
    if let Err(e) = log::set_target(&target, level) {
        emerg(&format!(
            "open() \"{target:?}\" failed ({})",
            crate::http::proxy::strerror(&e)
        ));
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
        let msg = format!(
            "open() \"{}\" failed ({})",
            pid_path.display(),
            crate::http::proxy::strerror(&e)
        );
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
    let code = master_loop(&paths, &loader, &state);
    if code == 0 {
        // Graceful: workers drain their connections first.
        for h in handles {
            let _ = h.join();
        }
    }
    let pid_now = state.runtime.load().main.pid.clone();
    let _ = std::fs::remove_file(pid_now);
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
        let rt = build(checked.into_config())?;
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
    for group in &rt.listens {
        if let Some((addr, socket)) = old.items.iter().find(|(a, _)| *a == group.addr) {
            set.items.push((*addr, socket.clone()));
            continue;
        }
        let socket = server::bind(group.addr, group.backlog).map_err(|e| {
            format!(
                "bind() to {} failed ({}: {})",
                group.addr,
                e.raw_os_error().unwrap_or(0),
                crate::http::proxy::strerror(&e)
            )
        })?;
        set.items.push((group.addr, Arc::new(socket)));
    }
    Ok(set)
}

/// Waits for signals on the main thread. Returns 0 for a graceful exit
/// (workers joined) and 1 for a fast one.
fn master_loop(paths: &Paths, loader: &Loader, state: &Arc<State>) -> i32 {
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
            return 1;
        }
    };
    rt.block_on(async {
        let (Ok(mut hup), Ok(mut term), Ok(mut int), Ok(mut quit), Ok(mut usr1)) = (
            signal(SignalKind::hangup()),
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
            signal(SignalKind::quit()),
            signal(SignalKind::user_defined1()),
        ) else {
            log::write(Level::Emerg, None, "cannot install signal handlers");
            return 1;
        };
        loop {
            tokio::select! {
                _ = hup.recv() => {
                    log::write(Level::Notice, None, "signal 1 (SIGHUP) received, reconfiguring");
                    reload(paths, loader, state);
                }
                _ = term.recv() => {
                    log::write(Level::Notice, None, "signal 15 (SIGTERM) received, exiting");
                    return 1;
                }
                _ = int.recv() => {
                    log::write(Level::Notice, None, "signal 2 (SIGINT) received, exiting");
                    return 1;
                }
                _ = quit.recv() => {
                    log::write(Level::Notice, None, "signal 3 (SIGQUIT) received, shutting down");
                    log::write(Level::Notice, None, "gracefully shutting down");
                    let _ = state.quit.send(true);
                    return 0;
                }
                _ = usr1.recv() => {
                    log::write(Level::Notice, None, "signal 10 (SIGUSR1) received, reopening logs");
                    if let Err(e) = log::reopen() {
                        log::write(Level::Alert, None, &format!("reopening the error log failed: {e}"));
                    }
                    crate::log::access::reopen();
                }
            }
        }
    })
}

/// Builds the whole new configuration; only a complete success replaces
/// the running one.
fn reload(paths: &Paths, loader: &Loader, state: &Arc<State>) {
    let runtime = match load(paths, loader).and_then(build) {
        Ok(rt) => rt,
        Err(e) => {
            log::write(Level::Emerg, None, &e.to_string());
            return;
        }
    };
    if runtime.main.worker_processes != state.runtime.load().main.worker_processes {
        log::write(
            Level::Warn,
            None,
            "changing worker_processes needs a restart; keeping the current number of workers",
        );
    }
    let old = state.listeners.borrow().clone();
    let listeners = match bind_all(&runtime, &old) {
        Ok(l) => l,
        Err(e) => {
            log::write(Level::Emerg, None, &e);
            return;
        }
    };
    let (target, level) = runtime.main.error_log.clone();
    if let Err(e) = log::set_target(&target, level) {
        log::write(
            Level::Emerg,
            None,
            &format!("open() {target:?} failed: {e}"),
        );
        return;
    }
    state.runtime.store(Arc::new(runtime));
    state.listeners.send_replace(Arc::new(listeners));
    log::write(Level::Notice, None, "configuration reloaded");
}
