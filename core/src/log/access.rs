//! The access log writer: one background thread owns the files, so writing
//! a line never blocks a request (nginx's `buffer=` without the knob).

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::sync::mpsc::{channel, Sender};
use std::sync::{Arc, Mutex, OnceLock};

enum Msg {
    Line(Arc<PathBuf>, Vec<u8>),
    Reopen,
    /// Flush everything queued before it, then answer.
    Flush(std::sync::mpsc::SyncSender<()>),
}

static WRITER: OnceLock<Mutex<Sender<Msg>>> = OnceLock::new();

thread_local! {
    // Each worker keeps its own sender so sending takes no shared lock.
    static LOCAL: std::cell::RefCell<Option<Sender<Msg>>> = const { std::cell::RefCell::new(None) };
}

fn sender() -> &'static Mutex<Sender<Msg>> {
    WRITER.get_or_init(|| {
        let (tx, rx) = channel::<Msg>();
        let spawned = std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || {
                let mut files: HashMap<Arc<PathBuf>, BufWriter<File>> = HashMap::new();
                while let Ok(mut msg) = rx.recv() {
                    loop {
                        match msg {
                            Msg::Line(path, line) => {
                                if !files.contains_key(&path) {
                                    match OpenOptions::new().create(true).append(true).open(&*path)
                                    {
                                        Ok(f) => {
                                            files.insert(path.clone(), BufWriter::new(f));
                                        }
                                        Err(e) => {
                                            crate::log::write(
                                                crate::log::Level::Crit,
                                                None,
                                                &format!(
                                                    "open() \"{}\" failed ({})",
                                                    path.display(),
                                                    e
                                                ),
                                            );
                                        }
                                    }
                                }
                                if let Some(w) = files.get_mut(&path) {
                                    let _ = w.write_all(&line);
                                }
                            }
                            Msg::Reopen => {
                                for w in files.values_mut() {
                                    let _ = w.flush();
                                }
                                files.clear();
                            }
                            Msg::Flush(done) => {
                                for w in files.values_mut() {
                                    let _ = w.flush();
                                }
                                let _ = done.send(());
                            }
                        }
                        match rx.try_recv() {
                            Ok(next) => msg = next,
                            Err(_) => break,
                        }
                    }
                    // Nothing queued: flush so lines appear promptly.
                    for w in files.values_mut() {
                        let _ = w.flush();
                    }
                }
            });
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

/// Queues one line (with its newline) for `path`.
pub fn write(path: Arc<PathBuf>, line: Vec<u8>) {
    send(Msg::Line(path, line));
}

/// Closes the files so the next lines reopen them (SIGUSR1).
pub fn reopen() {
    send(Msg::Reopen);
}

/// Writes out every line queued so far, waiting at most `timeout`: called
/// before the process exits so the last requests are not lost.
pub fn flush(timeout: std::time::Duration) {
    if WRITER.get().is_none() {
        return;
    }
    let (done, wait) = std::sync::mpsc::sync_channel(1);
    send(Msg::Flush(done));
    let _ = wait.recv_timeout(timeout);
}
