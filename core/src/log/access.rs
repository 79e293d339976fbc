//! The access log writer: one background thread owns the files, so writing
//! a line never blocks a request.
//!
//! A file without `buffer=` is written as lines come, and flushed whenever
//! the queue is empty. A file with `buffer=SIZE [flush=TIME]` keeps its
//! lines in memory as nginx's `ngx_http_log_write` does: a line that does
//! not fit in what is left of SIZE writes the pending lines out first (a
//! line longer than SIZE is then written alone); `flush=TIME` writes them
//! once TIME has passed since the oldest pending line; a reopen (SIGUSR1)
//! and the exit write them too.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// `access_log`'s `buffer=SIZE` and `flush=TIME`: one setting per file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Buffering {
    /// Bytes kept before they are written (more than 0).
    pub size: usize,
    /// The longest a line waits, from the oldest pending one.
    pub flush: Option<Duration>,
}

enum Msg {
    Line(Arc<PathBuf>, Option<Buffering>, Vec<u8>),
    Reopen,
    /// Write everything queued or buffered before it, then answer.
    Flush(std::sync::mpsc::SyncSender<()>),
}

static WRITER: OnceLock<Mutex<Sender<Msg>>> = OnceLock::new();

thread_local! {
    // Each worker keeps its own sender so sending takes no shared lock.
    static LOCAL: std::cell::RefCell<Option<Sender<Msg>>> = const { std::cell::RefCell::new(None) };
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
}

impl Out {
    /// Writes `bytes`, opening the file first if needed.
    fn write(&mut self, path: &PathBuf, bytes: &[u8]) {
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

/// The writer thread: lines in, files out, until the process exits.
fn run(rx: Receiver<Msg>) {
    let mut files: HashMap<Arc<PathBuf>, Out> = HashMap::new();
    loop {
        let deadline = files.values().filter_map(Out::deadline).min();
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
                Msg::Line(path, buffering, line) => {
                    let out = files.entry(path.clone()).or_default();
                    out.line(&path, buffering, &line);
                }
                Msg::Reopen => {
                    for (path, out) in files.iter_mut() {
                        out.write_pending(path);
                        out.flush();
                    }
                    files.clear();
                }
                Msg::Flush(done) => {
                    for (path, out) in files.iter_mut() {
                        out.write_pending(path);
                        out.flush();
                    }
                    let _ = done.send(());
                }
            }
            next = rx.try_recv().ok();
        }
        // Nothing queued: unbuffered lines appear now, buffered ones
        // whose flush time has come too.
        let now = Instant::now();
        for (path, out) in files.iter_mut() {
            if out.deadline().is_some_and(|d| d <= now) {
                out.write_pending(path);
            }
            out.flush();
        }
    }
    for (path, out) in files.iter_mut() {
        out.write_pending(path);
        out.flush();
    }
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

fn send(msg: Msg) {
    LOCAL.with(|local| {
        let mut local = local.borrow_mut();
        if local.is_none() {
            *local = Some(sender().lock().unwrap_or_else(|e| e.into_inner()).clone());
        }
        if let Some(tx) = local.as_ref() {
            let _ = tx.send(msg);
        }
    });
}

/// Queues one line (with its newline) for `path`, buffered as `buffering`
/// says (the same for every line of a file in one configuration).
pub fn write(path: Arc<PathBuf>, buffering: Option<Buffering>, line: Vec<u8>) {
    send(Msg::Line(path, buffering, line));
}

/// Writes the buffered lines and closes the files so the next lines
/// reopen them (SIGUSR1).
pub fn reopen() {
    send(Msg::Reopen);
}

/// Writes out every line queued or buffered so far, waiting at most
/// `timeout`: called before the process exits so the last requests are not
/// lost.
pub fn flush(timeout: Duration) {
    if WRITER.get().is_none() {
        return;
    }
    let (done, wait) = std::sync::mpsc::sync_channel(1);
    send(Msg::Flush(done));
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
