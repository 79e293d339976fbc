//! The error log in nginx's format, on top of `tracing`:
//! `YYYY/MM/DD HH:MM:SS [level] PID#TID: *CONN message`.
//!
//! nginx has eight levels and tracing five, so events may carry a `lvl`
//! field (`notice`, `crit`, `alert`, `emerg`); without it the tracing level
//! maps to the nginx level of the same name (INFO is `info`).

pub mod access;
pub mod syslog;

use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::Mutex;

use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

use crate::conf::model::LogTarget;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Debug,
    Info,
    Notice,
    Warn,
    Error,
    Crit,
    Alert,
    Emerg,
}

impl Level {
    pub fn parse(s: &str) -> Option<Level> {
        Some(match s {
            "debug" => Level::Debug,
            "info" => Level::Info,
            "notice" => Level::Notice,
            "warn" => Level::Warn,
            "error" => Level::Error,
            "crit" => Level::Crit,
            "alert" => Level::Alert,
            "emerg" => Level::Emerg,
            _ => return None,
        })
    }

    /// The syslog severity of a line at this level.
    pub fn severity(self) -> u8 {
        match self {
            Level::Emerg => 0,
            Level::Alert => 1,
            Level::Crit => 2,
            Level::Error => 3,
            Level::Warn => 4,
            Level::Notice => 5,
            Level::Info => 6,
            Level::Debug => 7,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Notice => "notice",
            Level::Warn => "warn",
            Level::Error => "error",
            Level::Crit => "crit",
            Level::Alert => "alert",
            Level::Emerg => "emerg",
        }
    }
}

impl From<waypost_module_api::LogLevel> for Level {
    fn from(level: waypost_module_api::LogLevel) -> Level {
        use waypost_module_api::LogLevel as L;
        match level {
            L::Debug => Level::Debug,
            L::Info => Level::Info,
            L::Notice => Level::Notice,
            L::Warn => Level::Warn,
            L::Error => Level::Error,
            L::Crit => Level::Crit,
        }
    }
}

/// Where error lines go, swapped by reload and reopen.
struct Sink {
    target: LogTarget,
    file: Option<File>,
    syslog: Option<syslog::Sender>,
}

static SINK: Mutex<Sink> = Mutex::new(Sink {
    target: LogTarget::Stderr,
    file: None,
    syslog: None,
});
static MIN_LEVEL: AtomicU8 = AtomicU8::new(Level::Notice as u8);
/// Whether a configuration's `error_log` is in place. Before (the first
/// load, `-t`), nginx prints what is `warn` or worse on stderr as
/// `nginx: [warn] message`; so does waypost.
static CONFIGURED: AtomicBool = AtomicBool::new(false);

/// Installs the error log; lines go to stderr until [`set_target`].
pub fn init() {
    let _ = tracing_subscriber::registry().with(NginxLayer).try_init();
}

fn open(path: &PathBuf) -> std::io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

/// Points the error log at `target`, keeping lines at `level` and above.
/// On error the previous target stays.
pub fn set_target(target: &LogTarget, level: Level) -> std::io::Result<()> {
    let file = match target {
        LogTarget::Stderr | LogTarget::Syslog(_) => None,
        LogTarget::File(p) => Some(open(p)?),
    };
    let mut sink = SINK.lock().unwrap_or_else(|e| e.into_inner());
    sink.target = target.clone();
    sink.file = file;
    sink.syslog = match target {
        LogTarget::Syslog(t) => Some(syslog::Sender::new(t.clone())),
        _ => None,
    };
    MIN_LEVEL.store(level as u8, Ordering::Relaxed);
    CONFIGURED.store(true, Ordering::Relaxed);
    Ok(())
}

/// Reopens the error log file (SIGUSR1 after a log rotation).
pub fn reopen() -> std::io::Result<()> {
    let mut sink = SINK.lock().unwrap_or_else(|e| e.into_inner());
    if let LogTarget::File(p) = &sink.target {
        let file = open(p)?;
        sink.file = Some(file);
    }
    Ok(())
}

/// Whether lines at `level` are written; lets callers skip formatting.
pub fn enabled(level: Level) -> bool {
    level as u8 >= MIN_LEVEL.load(Ordering::Relaxed)
}

/// The longest error log line, its line feed included (nginx's
/// `NGX_MAX_ERROR_STR`).
const MAX_LINE: usize = 2048;

/// Writes one line at an nginx level.
pub fn write(level: Level, conn: Option<u64>, message: &str) {
    if !CONFIGURED.load(Ordering::Relaxed) && level as u8 >= Level::Warn as u8 {
        let _ = writeln!(std::io::stderr(), "waypost: [{}] {message}", level.as_str());
        return;
    }
    if !enabled(level) {
        return;
    }
    let mut line = String::with_capacity(64 + message.len());
    let _ = write!(
        line,
        "{} [{}] {}#{}: ",
        timestamp(),
        level.as_str(),
        std::process::id(),
        crate::worker::index()
    );
    if let Some(c) = conn {
        let _ = write!(line, "*{c} ");
    }
    line.push_str(message);
    // nginx's NGX_MAX_ERROR_STR: a line is cut at 2048 bytes with its
    // line feed (a 9,000-byte URI in a message does not make one line of
    // 9 KB).
    if line.len() > MAX_LINE - 1 {
        let mut cut = MAX_LINE - 1;
        while !line.is_char_boundary(cut) {
            cut -= 1;
        }
        line.truncate(cut);
    }
    line.push('\n');
    let mut sink = SINK.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(syslog) = sink.syslog.as_mut() {
        // (The non-blocking socket's send: no wait under the lock.)
        if let Err(failed) = syslog.send_at(level.severity(), line.as_bytes()) {
            // Not through the error log: this is it, under its lock.
            let _ = writeln!(
                std::io::stderr(),
                "waypost: [{}] {} while sending to syslog",
                failed.level.as_str(),
                failed.message
            );
        }
        return;
    }
    match sink.file.as_mut() {
        Some(f) => {
            let _ = f.write_all(line.as_bytes());
        }
        None => {
            let _ = std::io::stderr().write_all(line.as_bytes());
        }
    }
}

/// Local time as nginx prints it in the error log.
pub fn timestamp() -> String {
    let (tm, _) = local_now();
    format!(
        "{:04}/{:02}/{:02} {:02}:{:02}:{:02}",
        tm.tm_year + 1900,
        tm.tm_mon + 1,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec
    )
}

/// The local broken-down time and the Unix time it was taken from (the
/// second `crate::clock::unix_secs` says, which the caches of time strings
/// compare with).
pub fn local_now() -> (libc::tm, i64) {
    let now = crate::clock::unix_secs() as i64;
    let t = now as libc::time_t;
    // SAFETY: localtime_r writes only into the tm we own.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    unsafe { libc::localtime_r(&t, &mut tm) };
    (tm, now)
}

struct NginxLayer;

#[derive(Default)]
struct Fields {
    message: String,
    lvl: Option<Level>,
    conn: Option<u64>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "lvl" => self.lvl = Level::parse(value),
            "message" => self.message.push_str(value),
            _ => {}
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        if field.name() == "conn" {
            self.conn = Some(value);
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        }
    }
}

/// Only our own crates' events are wanted. Said per callsite, once: a
/// callsite never enabled costs one cached load. Without it every span and
/// event of every dependency (hyper's and h2's per-stream trace spans,
/// rustls's log lines through tracing-log) was built and handed to the
/// registry: about 30k instructions per HTTP/2 request, a third of it.
fn wanted(meta: &tracing::Metadata<'_>) -> bool {
    meta.is_event() && meta.target().starts_with("waypost")
}

impl<S: tracing::Subscriber> Layer<S> for NginxLayer {
    fn register_callsite(
        &self,
        meta: &'static tracing::Metadata<'static>,
    ) -> tracing::subscriber::Interest {
        if wanted(meta) {
            tracing::subscriber::Interest::always()
        } else {
            tracing::subscriber::Interest::never()
        }
    }

    fn enabled(&self, meta: &tracing::Metadata<'_>, _: Context<'_, S>) -> bool {
        wanted(meta)
    }

    /// Our crates log at debug at the most; dependencies' trace-level
    /// `log` calls then stop at the `log` crate's own level check.
    fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
        Some(tracing::level_filters::LevelFilter::DEBUG)
    }

    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        let meta = event.metadata();
        let mut fields = Fields::default();
        event.record(&mut fields);
        let level = fields.lvl.unwrap_or(match *meta.level() {
            tracing::Level::ERROR => Level::Error,
            tracing::Level::WARN => Level::Warn,
            tracing::Level::INFO => Level::Info,
            _ => Level::Debug,
        });
        write(level, fields.conn, &fields.message);
    }
}
