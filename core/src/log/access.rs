//! The access log writer: one background thread owns the files, so writing
//! a line never blocks a request.
//!
//! Each worker renders its lines into a batch of its own and hands the
//! batch over when the worker goes idle (its event loop parks), when the
//! batch reaches [`BATCH_BYTES`], or when the worker stops: one channel
//! message and one wake of the writer per batch rather than per line, and
//! no allocation per line. Under load a line reaches its file within
//! [`BATCH_BYTES`] of traffic; otherwise when its worker next waits. A
//! batch sits behind a lock of its own (only its worker takes it, but for
//! the exit and a reopen, which collect every worker's lines first).
//!
//! A file without `buffer=` is written as batches come, and flushed
//! whenever the queue is empty. A file with `buffer=SIZE [flush=TIME]`
//! keeps its lines in memory as nginx's `ngx_http_log_write` does: a line
//! that does not fit in what is left of SIZE writes the pending lines out
//! first (a line longer than SIZE is then written alone); `flush=TIME`
//! writes them once TIME has passed since the oldest pending line; a
//! reopen (SIGUSR1) and the exit write them too.

use std::cell::RefCell;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// A worker hands its batch over once it holds this much.
pub const BATCH_BYTES: usize = 32 * 1024;

/// `access_log`'s `buffer=SIZE` and `flush=TIME`: one setting per file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Buffering {
    /// Bytes kept before they are written (more than 0).
    pub size: usize,
    /// The longest a line waits, from the oldest pending one.
    pub flush: Option<Duration>,
}

/// Lines of one worker, in order: their bytes end to end, and for each its
/// file (an index into `files`), buffering and end offset. A file's `Arc`
/// is cloned once per batch, not per line: its count is shared by every
/// worker.
#[derive(Default)]
struct Batch {
    bytes: Vec<u8>,
    files: Vec<Arc<PathBuf>>,
    lines: Vec<(usize, Option<Buffering>, usize)>,
}

enum Msg {
    Batch(Batch),
    Reopen,
    /// Write everything queued or buffered before it, then answer.
    Flush(std::sync::mpsc::SyncSender<()>),
}

static WRITER: OnceLock<Mutex<Sender<Msg>>> = OnceLock::new();

/// Every thread's batch, for the exit and a reopen.
static BATCHES: Mutex<Vec<Arc<Mutex<Batch>>>> = Mutex::new(Vec::new());

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A thread's sender (so sending takes no shared lock) and its batch.
struct Local {
    tx: Option<Sender<Msg>>,
    batch: Arc<Mutex<Batch>>,
}

impl Default for Local {
    fn default() -> Local {
        let batch = Arc::new(Mutex::new(Batch::default()));
        lock(&BATCHES).push(batch.clone());
        Local { tx: None, batch }
    }
}

impl Drop for Local {
    fn drop(&mut self) {
        if let Some(taken) = take_lines(&self.batch) {
            self.send(Msg::Batch(taken));
        }
        lock(&BATCHES).retain(|b| !Arc::ptr_eq(b, &self.batch));
    }
}

thread_local! {
    static LOCAL: RefCell<Local> = RefCell::new(Local::default());
}

/// One file as the writer thread keeps it.
#[derive(Default)]
struct Out {
    /// Opened at the first write, closed on reopen.
    file: Option<BufWriter<File>>,
    /// The file's buffering, as the last line for it said.
    buffering: Option<Buffering>,
    /// Buffered lines not written yet.
    pending: Vec<u8>,
    /// When the oldest pending line came.
    since: Option<Instant>,
    /// A `syslog:` destination's socket, made at the first line (`Err`:
    /// its address is no longer found; its lines are dropped).
    syslog: Option<Result<crate::log::syslog::Sender, ()>>,
}

impl Out {
    /// Writes `bytes`, opening the file first if needed; to a `syslog:`
    /// destination, sends them (one line: such a log is never buffered).
    fn write(&mut self, path: &PathBuf, bytes: &[u8]) {
        if let Some(args) = path.to_str().and_then(|p| p.strip_prefix("syslog:")) {
            // Read once (checked when the configuration was read).
            let sender = self.syslog.get_or_insert_with(|| {
                crate::log::syslog::Target::parse(args)
                    .map(crate::log::syslog::Sender::new)
                    .map_err(|_| ())
            });
            if let Ok(sender) = sender {
                // Into the error log, as nginx logs its syslog failures.
                if let Err(failed) = sender.send(bytes) {
                    crate::log::write(failed.level, None, &failed.message);
                }
            }
            return;
        }
        if self.file.is_none() {
            match OpenOptions::new().create(true).append(true).open(path) {
                Ok(f) => self.file = Some(BufWriter::new(f)),
                Err(e) => {
                    crate::log::write(
                        crate::log::Level::Crit,
                        None,
                        &format!("open() \"{}\" failed ({})", path.display(), e),
                    );
                    return;
                }
            }
        }
        if let Some(w) = self.file.as_mut() {
            let _ = w.write_all(bytes);
        }
    }

    /// Writes the pending lines out (to the OS, not only to `file`'s
    /// buffer).
    fn write_pending(&mut self, path: &PathBuf) {
        self.since = None;
        if self.pending.is_empty() {
            return;
        }
        let pending = std::mem::take(&mut self.pending);
        self.write(path, &pending);
        self.flush();
        // Keep the allocation for the next lines.
        self.pending = pending;
        self.pending.clear();
    }

    fn flush(&mut self) {
        if let Some(w) = self.file.as_mut() {
            let _ = w.flush();
        }
    }

    /// One line, as `ngx_http_log_write` handles it.
    fn line(&mut self, path: &PathBuf, buffering: Option<Buffering>, line: &[u8]) {
        self.buffering = buffering;
        let Some(b) = buffering else {
            // Lines buffered under the previous configuration go first.
            self.write_pending(path);
            self.write(path, line);
            return;
        };
        if line.len() > b.size.saturating_sub(self.pending.len()) {
            self.write_pending(path);
        }
        if line.len() <= b.size.saturating_sub(self.pending.len()) {
            if self.pending.is_empty() {
                self.since = Some(Instant::now());
            }
            self.pending.extend_from_slice(line);
        } else {
            self.write(path, line);
        }
    }

    /// When the pending lines must be written, if `flush=` is set.
    fn deadline(&self) -> Option<Instant> {
        Some(self.since? + self.buffering?.flush?)
    }
}

/// The writer's files: a few, looked up by pointer first (the same
/// configuration's lines share their path's `Arc`).
#[derive(Default)]
struct Files(Vec<(Arc<PathBuf>, Out)>);

impl Files {
    fn get(&mut self, path: &Arc<PathBuf>) -> &mut Out {
        let i = match self.0.iter().position(|(p, _)| Arc::ptr_eq(p, path)) {
            Some(i) => i,
            None => match self.0.iter().position(|(p, _)| **p == **path) {
                Some(i) => i,
                None => {
                    self.0.push((path.clone(), Out::default()));
                    self.0.len() - 1
                }
            },
        };
        &mut self.0[i].1
    }

    /// Writes every file's pending lines out.
    fn write_all(&mut self) {
        for (path, out) in self.0.iter_mut() {
            out.write_pending(path);
            out.flush();
        }
    }
}

/// The writer thread: batches in, files out, until the process exits.
fn run(rx: Receiver<Msg>) {
    let mut files = Files::default();
    loop {
        let deadline = files.0.iter().filter_map(|(_, o)| o.deadline()).min();
        let first = match deadline {
            None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
            Some(d) => rx.recv_timeout(d.saturating_duration_since(Instant::now())),
        };
        let mut next = match first {
            Ok(msg) => Some(msg),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => break,
        };
        while let Some(msg) = next {
            match msg {
                Msg::Batch(batch) => {
                    let mut start = 0;
                    for &(file, buffering, end) in &batch.lines {
                        let line = batch.bytes.get(start..end).unwrap_or_default();
                        if let Some(path) = batch.files.get(file) {
                            files.get(path).line(path, buffering, line);
                        }
                        start = end;
                    }
                }
                Msg::Reopen => {
                    files.write_all();
                    files.0.clear();
                }
                Msg::Flush(done) => {
                    files.write_all();
                    let _ = done.send(());
                }
            }
            next = rx.try_recv().ok();
        }
        // Nothing queued: unbuffered lines appear now, buffered ones
        // whose flush time has come too.
        let now = Instant::now();
        for (path, out) in files.0.iter_mut() {
            if out.deadline().is_some_and(|d| d <= now) {
                out.write_pending(path);
            }
            out.flush();
        }
    }
    files.write_all();
}

fn sender() -> &'static Mutex<Sender<Msg>> {
    WRITER.get_or_init(|| {
        let (tx, rx) = channel::<Msg>();
        let spawned = std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || run(rx));
        if let Err(e) = spawned {
            crate::log::write(
                crate::log::Level::Alert,
                None,
                &format!("access log thread failed to start: {e}"),
            );
        }
        Mutex::new(tx)
    })
}

impl Local {
    fn send(&mut self, msg: Msg) {
        if self.tx.is_none() {
            self.tx = Some(lock(sender()).clone());
        }
        if let Some(tx) = &self.tx {
            let _ = tx.send(msg);
        }
    }
}

/// Takes `batch`'s lines, if it has any, leaving room for the next ones
/// (the lock is held only for that).
fn take_lines(batch: &Mutex<Batch>) -> Option<Batch> {
    let mut batch = lock(batch);
    if batch.lines.is_empty() {
        return None;
    }
    let next = Batch {
        bytes: Vec::with_capacity(batch.bytes.capacity().min(BATCH_BYTES * 2)),
        files: Vec::new(),
        lines: Vec::with_capacity(batch.lines.capacity()),
    };
    Some(std::mem::replace(&mut *batch, next))
}

/// Sends `msg` after every thread's lines rendered so far.
fn send_after_all(msg: Msg) {
    let batches: Vec<Arc<Mutex<Batch>>> = lock(&BATCHES).clone();
    LOCAL.with(|local| {
        let mut local = local.borrow_mut();
        for b in &batches {
            if let Some(taken) = take_lines(b) {
                local.send(Msg::Batch(taken));
            }
        }
        local.send(msg);
    });
}

/// Adds one line for `path` to this thread's batch: `render` writes it
/// (without its newline) at the end of the buffer it is given, buffered
/// as `buffering` says (the same for every line of a file in one
/// configuration).
pub fn write_with(
    path: &Arc<PathBuf>,
    buffering: Option<Buffering>,
    render: impl FnOnce(&mut Vec<u8>),
) {
    LOCAL.with(|local| {
        let mut local = local.borrow_mut();
        let mut batch = lock(&local.batch);
        render(&mut batch.bytes);
        batch.bytes.push(b'\n');
        let end = batch.bytes.len();
        let file = match batch.files.iter().position(|p| Arc::ptr_eq(p, path)) {
            Some(i) => i,
            None => {
                batch.files.push(path.clone());
                batch.files.len() - 1
            }
        };
        batch.lines.push((file, buffering, end));
        drop(batch);
        if end >= BATCH_BYTES {
            if let Some(taken) = take_lines(&local.batch) {
                local.send(Msg::Batch(taken));
            }
        }
    });
}

/// Hands this thread's lines to the writer: called when a worker's event
/// loop goes idle and when the worker stops.
pub fn hand_over() {
    // `try_with`: a thread being torn down has nothing to hand over.
    let _ = LOCAL.try_with(|local| {
        if let Ok(mut local) = local.try_borrow_mut() {
            if let Some(taken) = take_lines(&local.batch) {
                local.send(Msg::Batch(taken));
            }
        }
    });
}

/// Writes the buffered lines and closes the files so the next lines
/// reopen them (SIGUSR1).
pub fn reopen() {
    send_after_all(Msg::Reopen);
}

/// Writes out every line queued or buffered so far, waiting at most
/// `timeout`: called before the process exits so the last requests are not
/// lost.
pub fn flush(timeout: Duration) {
    let pending = || lock(&BATCHES).iter().any(|b| !lock(b).lines.is_empty());
    if WRITER.get().is_none() && !pending() {
        return;
    }
    let (done, wait) = std::sync::mpsc::sync_channel(1);
    send_after_all(Msg::Flush(done));
    let _ = wait.recv_timeout(timeout);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "waypost-access-writer-{}-{name}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        dir.join("a.log")
    }

    fn size(path: &PathBuf) -> usize {
        std::fs::read(path).map_or(0, |b| b.len())
    }

    #[test]
    fn buffered_lines_wait_until_the_buffer_is_full() {
        let path = temp("full");
        let mut out = Out::default();
        let b = Some(Buffering {
            size: 10,
            flush: None,
        });
        out.line(&path, b, b"1234\n");
        out.line(&path, b, b"5678\n");
        assert_eq!(size(&path), 0, "10 bytes fit in 10");
        out.line(&path, b, b"abc\n");
        assert_eq!(
            size(&path),
            10,
            "a line that does not fit writes the others"
        );
        out.line(&path, b, b"a line longer than ten\n");
        out.flush();
        assert_eq!(
            size(&path),
            14 + 23,
            "too long for the buffer: written alone"
        );
        assert!(out.pending.is_empty());
        out.line(&path, None, b"x\n");
        out.flush();
        assert_eq!(size(&path), 14 + 23 + 2);
        let _ = std::fs::remove_dir_all(path.parent().expect("dir"));
    }

    /// A thread's lines not handed over yet (its worker busy, never idle)
    /// are written by the exit's flush.
    #[test]
    fn flush_collects_every_threads_lines() {
        let path = Arc::new(temp("collect"));
        let (lines_in, go) = std::sync::mpsc::channel::<()>();
        let (written, wait) = std::sync::mpsc::channel::<()>();
        let busy = {
            let path = path.clone();
            std::thread::spawn(move || {
                for line in ["one", "two"] {
                    write_with(&path, None, |out| out.extend_from_slice(line.as_bytes()));
                }
                let _ = written.send(());
                // Alive, and never handing over, until the test ends.
                let _ = go.recv();
                write_with(&path, None, |out| out.extend_from_slice(b"three"));
            })
        };
        wait.recv().expect("lines rendered");
        flush(Duration::from_secs(5));
        assert_eq!(
            std::fs::read_to_string(&*path).unwrap_or_default(),
            "one\ntwo\n"
        );
        drop(lines_in);
        busy.join().expect("thread");
        // The thread's exit hands its last line over.
        flush(Duration::from_secs(5));
        assert_eq!(
            std::fs::read_to_string(&*path).unwrap_or_default(),
            "one\ntwo\nthree\n"
        );
        let _ = std::fs::remove_dir_all(path.parent().expect("dir"));
    }

    #[test]
    fn flush_time_counts_from_the_oldest_line() {
        let path = temp("flush");
        let mut out = Out::default();
        let b = Some(Buffering {
            size: 100,
            flush: Some(Duration::from_secs(5)),
        });
        assert_eq!(out.deadline(), None);
        out.line(&path, b, b"1\n");
        let first = out.deadline().expect("a deadline");
        out.line(&path, b, b"2\n");
        assert_eq!(out.deadline(), Some(first));
        out.write_pending(&path);
        assert_eq!(out.deadline(), None);
        assert_eq!(size(&path), 4);
        let _ = std::fs::remove_dir_all(path.parent().expect("dir"));
    }
}
