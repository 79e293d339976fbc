//! A cache zone (`proxy_cache_path ... keys_zone=NAME:SIZE`): the index of
//! its entries in memory, as nginx's keys zone, and the thread that does
//! its disk work: it writes the answers being stored, loads the entries a
//! previous run left on disk, and removes those `inactive` or past
//! `max_size`, as nginx's cache loader and manager processes do.
//!
//! Requests touch only the index (one lock of sixteen, by the key's
//! md5) and read their entry's file on the blocking pool; every write,
//! rename and removal happens on the zone's thread, so no request waits
//! on the disk but for the file it reads.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::Write as _;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use bytes::Bytes;

use super::file::{self, Header, HEADER};
use crate::log::{self, Level};

const SHARDS: usize = 16;

/// One of the index's locks and the entries under it.
type Shard = Mutex<HashMap<[u8; 16], Node>>;

/// How often the zone's thread looks for entries to remove (nginx's
/// manager wakes at most every `manager_sleep`, 50 ms, and at least every
/// 10 s).
const MANAGE_EVERY: Duration = Duration::from_secs(1);

/// What `proxy_cache_path` sets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub root: PathBuf,
    pub levels: Box<[u8]>,
    /// Seconds an entry nobody asked for stays (`inactive`, 10 minutes).
    pub inactive: u64,
    /// `max_size` in bytes; 0: no limit.
    pub max_size: u64,
    /// The keys the zone's size holds (nginx: about 8,000 a megabyte).
    pub max_keys: u64,
    /// `keys_zone`'s size: a reload keeps the zone of the same name and
    /// size (nginx's shared memory zone).
    pub keys_size: u64,
}

/// A shard's entries, locked (a panic while one was held left them
/// whole: every change to a node is one assignment).
fn lock(shard: &Shard) -> std::sync::MutexGuard<'_, HashMap<[u8; 16], Node>> {
    shard
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A file's size as the disk holds it, in whole blocks, as nginx counts
/// `max_size` (`bsize`, 4 KB on common file systems).
fn blocks(len: u64) -> u64 {
    const BSIZE: u64 = 4096;
    len.div_ceil(BSIZE) * BSIZE
}

/// One entry of the index.
#[derive(Debug, Clone, Copy)]
struct Node {
    /// Requests that asked for it (`proxy_cache_min_uses`).
    uses: u32,
    /// Its file is on disk.
    exists: bool,
    /// A request is storing it now (for `proxy_cache_use_stale updating`
    /// and `proxy_cache_lock`), until this Unix time (`proxy_cache_lock_age`).
    updating: bool,
    lock_until: u64,
    valid_until: i64,
    /// Unix seconds of its last use (`inactive`), and the order of its
    /// last use among the zone's (the order in which `max_size` removes).
    last: u64,
    used: u64,
    /// Bytes its file takes on disk (whole blocks).
    size: u64,
}

/// What the index says of a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    /// A stored answer, fresh.
    Fresh,
    /// A stored answer past its validity, which this request is to
    /// renew (`owner`: no other request is at it, and this one now is).
    Stale { owner: bool },
    /// A stored answer past its validity that another request renews.
    Updating,
    /// Nothing stored. `store`: this request's answer may be (it is
    /// asked for the `proxy_cache_min_uses`th time); `owner`: it holds
    /// the `proxy_cache_lock`.
    Missing { store: bool, owner: bool },
    /// Nothing stored, and another request holds the lock to store it.
    Locked,
}

pub struct Zone {
    pub name: String,
    pub root: PathBuf,
    pub levels: Box<[u8]>,
    pub keys_size: u64,
    inactive: AtomicU64,
    max_size: AtomicU64,
    max_keys: AtomicU64,
    shards: Box<[Shard]>,
    /// Bytes of the entries' files.
    size: AtomicU64,
    jobs: mpsc::Sender<Job>,
    next_fill: AtomicU64,
    /// Uses counted, for the order of the entries' last uses.
    uses: AtomicU64,
    /// The entries on disk are still being read into the index: a key it
    /// does not have may have a file (nginx's cold zone).
    cold: std::sync::atomic::AtomicBool,
    /// Woken when an entry is stored or its storing given up, for the
    /// requests `proxy_cache_lock` holds.
    changed: tokio::sync::Notify,
}

enum Job {
    Begin {
        id: u64,
        md5: [u8; 16],
        entry: Box<Entry>,
    },
    Data {
        id: u64,
        bytes: Bytes,
    },
    Commit {
        id: u64,
        done: tokio::sync::oneshot::Sender<()>,
    },
    Abort {
        id: u64,
    },
    /// An entry whose file turned out unreadable: out of the index and
    /// off the disk.
    Remove {
        md5: [u8; 16],
    },
}

impl Zone {
    /// A zone and its thread, which first reads the entries on disk (a
    /// zone new to the process, as nginx's cache loader).
    pub fn start(name: &str, settings: &Settings) -> std::io::Result<Arc<Zone>> {
        let (jobs, rx) = mpsc::channel();
        let zone = Arc::new(Zone {
            name: name.to_owned(),
            root: settings.root.clone(),
            levels: settings.levels.clone(),
            keys_size: settings.keys_size,
            inactive: AtomicU64::new(settings.inactive),
            max_size: AtomicU64::new(settings.max_size),
            max_keys: AtomicU64::new(settings.max_keys),
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            size: AtomicU64::new(0),
            jobs,
            next_fill: AtomicU64::new(0),
            uses: AtomicU64::new(0),
            cold: std::sync::atomic::AtomicBool::new(true),
            changed: tokio::sync::Notify::new(),
        });
        let weak = Arc::downgrade(&zone);
        std::thread::Builder::new()
            .name(format!("cache {name}"))
            .spawn(move || run(weak, rx))?;
        Ok(zone)
    }

    /// The settings of a reloaded configuration, for a zone it keeps
    /// (same name and path).
    pub fn update(&self, settings: &Settings) {
        self.inactive.store(settings.inactive, Relaxed);
        self.max_size.store(settings.max_size, Relaxed);
        self.max_keys.store(settings.max_keys, Relaxed);
    }

    fn shard(&self, md5: &[u8; 16]) -> std::sync::MutexGuard<'_, HashMap<[u8; 16], Node>> {
        lock(&self.shards[usize::from(md5[0]) % SHARDS])
    }

    /// Looks `md5` up for a request, counting the use, as
    /// `ngx_http_file_cache_exists`: a key asked for the first time gets
    /// a node, which holds its count until `inactive` removes it. With
    /// `lock_age`, a request that may store a missing entry takes the
    /// lock for that long.
    pub fn lookup(&self, md5: &[u8; 16], min_uses: u32, lock_age: Option<u64>, now: u64) -> Found {
        let mut shard = self.shard(md5);
        let node = shard.entry(*md5).or_insert(Node {
            uses: 0,
            exists: false,
            updating: false,
            lock_until: 0,
            valid_until: 0,
            last: now,
            used: self.uses.fetch_add(1, Relaxed),
            size: 0,
        });
        node.uses = node.uses.saturating_add(1);
        node.last = now;
        node.used = self.uses.fetch_add(1, Relaxed);
        if !node.exists {
            let store = node.uses >= min_uses;
            return match lock_age {
                Some(_) if node.updating && now < node.lock_until => Found::Locked,
                Some(age) if store => {
                    node.updating = true;
                    node.lock_until = now + age;
                    Found::Missing { store, owner: true }
                }
                _ => Found::Missing {
                    store,
                    owner: false,
                },
            };
        }
        if node.valid_until >= now as i64 {
            return Found::Fresh;
        }
        if node.updating {
            return Found::Updating;
        }
        node.updating = true;
        Found::Stale { owner: true }
    }

    /// The zone's index may not know every file yet.
    pub fn is_cold(&self) -> bool {
        self.cold.load(Relaxed)
    }

    /// An entry read from its file while the zone was cold.
    pub fn found_on_disk(&self, md5: [u8; 16], valid_until: i64, size: u64) {
        self.stored(md5, valid_until, size, crate::clock::unix_secs());
    }

    /// Wakes when an entry is stored or its storing given up.
    pub fn changes(&self) -> tokio::sync::futures::Notified<'_> {
        self.changed.notified()
    }

    /// The request that marked the entry as being stored gives it up.
    pub fn stop_updating(&self, md5: &[u8; 16]) {
        if let Some(node) = self.shard(md5).get_mut(md5) {
            node.updating = false;
        }
        self.changed.notify_waiters();
    }

    /// An entry whose file could not be read: it goes.
    pub fn remove(&self, md5: &[u8; 16]) {
        let _ = self.jobs.send(Job::Remove { md5: *md5 });
    }

    /// Starts storing an answer: its head now, its body with
    /// [`Fill::data`], kept with [`Fill::commit`].
    pub fn fill(self: &Arc<Zone>, md5: [u8; 16], entry: Entry) -> Fill {
        let id = self.next_fill.fetch_add(1, Relaxed);
        let _ = self.jobs.send(Job::Begin {
            id,
            md5,
            entry: Box::new(entry),
        });
        Fill {
            zone: self.clone(),
            id,
            ended: false,
        }
    }

    /// Bytes of the entries' files (`max_size` is checked against it).
    pub fn size(&self) -> u64 {
        self.size.load(Relaxed)
    }

    fn stored(&self, md5: [u8; 16], valid_until: i64, size: u64, now: u64) {
        let size = blocks(size);
        let mut shard = self.shard(&md5);
        let node = shard.entry(md5).or_insert(Node {
            uses: 1,
            exists: false,
            updating: false,
            lock_until: 0,
            valid_until,
            last: now,
            used: self.uses.fetch_add(1, Relaxed),
            size: 0,
        });
        let old = if node.exists { node.size } else { 0 };
        node.exists = true;
        node.updating = false;
        node.valid_until = valid_until;
        node.size = size;
        drop(shard);
        self.size.fetch_add(size, Relaxed);
        self.size
            .fetch_sub(old.min(self.size.load(Relaxed)), Relaxed);
        self.changed.notify_waiters();
    }

    /// Takes `md5`'s node out; its file's bytes, if it had one.
    fn take(&self, md5: &[u8; 16]) -> Option<u64> {
        let node = self.shard(md5).remove(md5)?;
        if !node.exists {
            return None;
        }
        self.size
            .fetch_sub(node.size.min(self.size.load(Relaxed)), Relaxed);
        Some(node.size)
    }
}

/// What an entry's file holds besides its body.
pub struct Entry {
    pub key: Box<[u8]>,
    /// The answer's `Vary` (empty: none) and the request's variant.
    pub vary: Box<[u8]>,
    pub variant: [u8; 16],
    /// The upstream's status line and header lines.
    pub head: Vec<u8>,
    pub valid_until: i64,
}

/// An answer being stored. Dropped without [`Fill::commit`], what was
/// written is thrown away.
pub struct Fill {
    zone: Arc<Zone>,
    id: u64,
    ended: bool,
}

impl Fill {
    pub fn data(&self, bytes: Bytes) {
        let _ = self.zone.jobs.send(Job::Data { id: self.id, bytes });
    }

    /// The body is whole: the file takes its place, and the returned
    /// receiver hears once the entry is in the index (the answer's last
    /// bytes wait for it, so the next request finds it).
    pub fn commit(mut self) -> tokio::sync::oneshot::Receiver<()> {
        self.ended = true;
        let (done, heard) = tokio::sync::oneshot::channel();
        let _ = self.zone.jobs.send(Job::Commit { id: self.id, done });
        heard
    }
}

impl Drop for Fill {
    fn drop(&mut self) {
        if !self.ended {
            let _ = self.zone.jobs.send(Job::Abort { id: self.id });
        }
    }
}

/// A file being written by the zone's thread.
struct Open {
    file: Option<File>,
    tmp: PathBuf,
    md5: [u8; 16],
    header: Header,
}

/// The zone's thread: loads what is on disk, then takes jobs, and
/// between them removes what `inactive` and `max_size` say must go. It
/// ends when the zone is dropped (a reload without it).
fn run(zone: Weak<Zone>, rx: mpsc::Receiver<Job>) {
    let Some(z) = zone.upgrade() else { return };
    let (root, levels) = (z.root.clone(), z.levels.clone());
    if let Err(e) = fs::create_dir_all(&root) {
        log::write(Level::Emerg, None, &failed("mkdir()", &root, &e));
    }
    load(&z, &root, &levels);
    z.cold.store(false, Relaxed);
    drop(z);
    let mut open: HashMap<u64, Open> = HashMap::new();
    let mut managed = std::time::Instant::now();
    loop {
        let job = rx.recv_timeout(MANAGE_EVERY);
        let Some(z) = zone.upgrade() else { break };
        match job {
            Ok(job) => work(&z, &mut open, job),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        if managed.elapsed() >= MANAGE_EVERY {
            manage(&z);
            managed = std::time::Instant::now();
        }
    }
    for (_, o) in open {
        let _ = fs::remove_file(o.tmp);
    }
}

/// nginx's line for a failed system call on a file.
pub(crate) fn failed(call: &str, path: &Path, e: &std::io::Error) -> String {
    format!(
        "{call} \"{}\" failed ({})",
        path.display(),
        crate::conf::syntax::os_error_text(e)
    )
}

fn io_failed(call: &str, path: &Path, e: &std::io::Error) {
    log::write(Level::Crit, None, &failed(call, path, e));
}

fn work(z: &Zone, open: &mut HashMap<u64, Open>, job: Job) {
    match job {
        Job::Begin { id, md5, entry } => {
            let name = file::hex(&md5);
            let tmp = z.root.join(format!(
                ".{}.{id}.tmp",
                std::str::from_utf8(&name).unwrap_or_default()
            ));
            let header = Header {
                valid_until: entry.valid_until,
                date: crate::clock::unix_secs() as i64,
                key_len: entry.key.len() as u32,
                head_len: entry.head.len() as u32,
                body_len: 0,
                vary_len: entry.vary.len() as u32,
                variant: entry.variant,
            };
            let file = File::create(&tmp).and_then(|mut f| {
                f.write_all(&header.encode())?;
                f.write_all(&entry.key)?;
                f.write_all(&entry.vary)?;
                f.write_all(&entry.head)?;
                Ok(f)
            });
            let file = match file {
                Ok(f) => Some(f),
                Err(e) => {
                    io_failed("open()", &tmp, &e);
                    let _ = fs::remove_file(&tmp);
                    None
                }
            };
            open.insert(
                id,
                Open {
                    file,
                    tmp,
                    md5,
                    header,
                },
            );
        }
        Job::Data { id, bytes } => {
            if let Some(o) = open.get_mut(&id) {
                if let Some(f) = &mut o.file {
                    match f.write_all(&bytes) {
                        Ok(()) => o.header.body_len += bytes.len() as u64,
                        Err(e) => {
                            io_failed("write()", &o.tmp, &e);
                            o.file = None;
                            let _ = fs::remove_file(&o.tmp);
                        }
                    }
                }
            }
        }
        Job::Commit { id, done } => {
            if let Some(o) = open.remove(&id) {
                match &o.file {
                    Some(f) => match place(z, f, &o) {
                        Ok(()) => z.stored(
                            o.md5,
                            o.header.valid_until,
                            o.header.file_len(),
                            crate::clock::unix_secs(),
                        ),
                        Err(()) => {
                            let _ = fs::remove_file(&o.tmp);
                            z.stop_updating(&o.md5);
                        }
                    },
                    None => z.stop_updating(&o.md5),
                }
            }
            let _ = done.send(());
        }
        Job::Abort { id } => {
            if let Some(o) = open.remove(&id) {
                let _ = fs::remove_file(&o.tmp);
                z.stop_updating(&o.md5);
            }
        }
        Job::Remove { md5 } => {
            z.take(&md5);
            let _ = fs::remove_file(file::path(&z.root, &z.levels, &md5));
        }
    }
}

/// The whole file, its header made final, renamed to the entry's name.
fn place(z: &Zone, f: &File, o: &Open) -> Result<(), ()> {
    if let Err(e) = f.write_all_at(&o.header.encode(), 0) {
        io_failed("pwrite()", &o.tmp, &e);
        return Err(());
    }
    let path = file::path(&z.root, &z.levels, &o.md5);
    if let Some(dir) = path.parent() {
        if let Err(e) = fs::create_dir_all(dir) {
            io_failed("mkdir()", dir, &e);
            return Err(());
        }
    }
    if let Err(e) = fs::rename(&o.tmp, &path) {
        io_failed("rename()", &path, &e);
        return Err(());
    }
    Ok(())
}

/// Entries `inactive` for longer go, then the least recently used ones
/// while the files take more than `max_size`, then while the index
/// holds more keys than the zone's size allows.
fn manage(z: &Zone) {
    let now = crate::clock::unix_secs();
    let inactive = z.inactive.load(Relaxed);
    // (md5, bytes on disk) of what goes; (last use, md5, bytes) of the rest.
    let mut gone = Vec::new();
    let mut kept = Vec::new();
    for shard in z.shards.iter() {
        for (md5, node) in lock(shard).iter().filter(|(_, n)| !n.updating) {
            let size = if node.exists { node.size } else { 0 };
            if node.last + inactive <= now {
                gone.push((*md5, size));
            } else {
                kept.push((node.used, *md5, size));
            }
        }
    }
    let max_size = z.max_size.load(Relaxed);
    let max_keys = z.max_keys.load(Relaxed) as usize;
    let mut size = z
        .size()
        .saturating_sub(gone.iter().map(|&(_, bytes)| bytes).sum());
    // nginx removes while the size reaches `max_size`.
    let over = |size: u64, keys: usize| (max_size != 0 && size >= max_size) || keys > max_keys;
    if over(size, kept.len()) {
        kept.sort_unstable_by_key(|&(used, _, _)| used);
        let mut keys = kept.len();
        for (_, md5, bytes) in kept {
            if !over(size, keys) {
                break;
            }
            size = size.saturating_sub(bytes);
            gone.push((md5, bytes));
            keys -= 1;
        }
    }
    for (md5, _) in gone {
        if z.take(&md5).is_some() {
            let path = file::path(&z.root, &z.levels, &md5);
            if let Err(e) = fs::remove_file(&path) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    io_failed("unlink()", &path, &e);
                }
            }
        }
    }
}

/// The entries a previous run left under `root`, into the index, as
/// nginx's cache loader: each file of a full name at the levels' depth
/// whose header is waypost's and whose size is whole. Files being
/// written when the process stopped are removed.
fn load(z: &Zone, root: &Path, levels: &[u8]) {
    let now = crate::clock::unix_secs();
    let mut dirs = vec![(root.to_path_buf(), 0usize)];
    while let Some((dir, depth)) = dirs.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            let name = entry.file_name();
            let name = name.as_encoded_bytes();
            if kind.is_dir() {
                if depth < levels.len() && name.len() == usize::from(levels[depth]) {
                    dirs.push((path, depth + 1));
                }
                continue;
            }
            if depth == 0 && name.starts_with(b".") && name.ends_with(b".tmp") {
                let _ = fs::remove_file(&path);
                continue;
            }
            if depth != levels.len() {
                continue;
            }
            let Some(md5) = file::unhex(name) else {
                continue;
            };
            let mut head = [0u8; HEADER];
            let header = File::open(&path)
                .and_then(|f| {
                    let len = f.metadata()?.len();
                    f.read_exact_at(&mut head, 0)?;
                    Ok(Header::decode(&head).filter(|h| h.file_len() == len))
                })
                .ok()
                .flatten();
            match header {
                Some(h) => z.stored(md5, h.valid_until, h.file_len(), now),
                None => log::write(
                    Level::Warn,
                    None,
                    &format!(
                        "cache file \"{}\" is not a waypost cache entry, left as it is",
                        path.display()
                    ),
                ),
            }
        }
    }
}
