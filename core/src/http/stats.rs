//! nginx's `ngx_stat_*` counters, for `stub_status`: connections accepted,
//! handled and open, requests, and how many connections are reading a
//! request head or writing an answer (the others wait).
//!
//! Each worker counts in its own shard, on its own thread, with plain
//! loads and stores (no locked instruction: one writer per shard); the
//! page sums the shards. A count read while a worker updates it may be a
//! request behind, as nginx's are.

use std::cell::Cell;
use std::sync::atomic::{AtomicI64, AtomicPtr, Ordering, Ordering::Relaxed};

/// One worker's counts (a cache line of its own).
#[repr(align(64))]
#[derive(Default)]
pub struct Shard {
    accepted: AtomicI64,
    handled: AtomicI64,
    active: AtomicI64,
    requests: AtomicI64,
    reading: AtomicI64,
    writing: AtomicI64,
    /// The shard made before this one (a list read without a lock: the
    /// `$connections_*` variables may be read by every request).
    next: AtomicPtr<Shard>,
}

/// The last shard made; each links to the one before.
static SHARDS: AtomicPtr<Shard> = AtomicPtr::new(std::ptr::null_mut());

thread_local! {
    static MINE: Cell<Option<&'static Shard>> = const { Cell::new(None) };
}

/// This thread's shard, made on first use (a worker's lives as long as
/// the process: a handful of cache lines).
#[inline]
fn mine() -> &'static Shard {
    MINE.with(|m| match m.get() {
        Some(s) => s,
        None => {
            let s: &'static mut Shard = Box::leak(Box::default());
            let ptr: *mut Shard = s;
            let mut head = SHARDS.load(Ordering::Acquire);
            loop {
                s.next.store(head, Relaxed);
                match SHARDS.compare_exchange(head, ptr, Ordering::AcqRel, Ordering::Acquire) {
                    Ok(_) => break,
                    Err(now) => head = now,
                }
            }
            let s: &'static Shard = s;
            m.set(Some(s));
            s
        }
    })
}

/// Adds `n` to one of this thread's counters: only this thread writes it.
#[inline]
fn add(counter: impl Fn(&Shard) -> &AtomicI64, n: i64) {
    let c = counter(mine());
    c.store(c.load(Relaxed) + n, Relaxed);
}

/// A connection accepted; `handled`: it was given a connection (not
/// refused for `worker_connections`).
pub fn accepted(handled: bool) {
    add(|s| &s.accepted, 1);
    if handled {
        add(|s| &s.handled, 1);
    }
}

/// Counts a connection active while it lives.
pub struct Active(());

impl Active {
    pub fn open() -> Active {
        add(|s| &s.active, 1);
        Active(())
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        add(|s| &s.active, -1);
    }
}

/// Where a connection's request is: reading its head, then writing its
/// answer (counted as a request from then). Dropped, it counts nothing.
/// It holds its thread's shard: no thread-local lookup per change.
pub struct Phase(&'static Shard, u8);

/// Adds `n` to a counter of `shard`, which only this thread writes.
#[inline(always)]
fn bump(c: &AtomicI64, n: i64) {
    c.store(c.load(Relaxed) + n, Relaxed);
}

const NONE: u8 = 0;
const READING: u8 = 1;
const WRITING: u8 = 2;

impl Phase {
    /// A request's first bytes came (on this thread's connection).
    #[inline]
    pub fn reading() -> Phase {
        let shard = mine();
        bump(&shard.reading, 1);
        Phase(shard, READING)
    }

    /// Its head is read: a request, being answered.
    #[inline]
    pub fn writing(&mut self) {
        self.leave();
        bump(&self.0.requests, 1);
        bump(&self.0.writing, 1);
        self.1 = WRITING;
    }

    /// A request that came whole some other way (an HTTP/2 stream).
    #[inline]
    pub fn request() -> Phase {
        let mut p = Phase(mine(), NONE);
        p.writing();
        p
    }

    /// The answer is written; the next request's bytes are there.
    #[inline]
    pub fn next(&mut self) {
        self.leave();
        bump(&self.0.reading, 1);
        self.1 = READING;
    }

    #[inline]
    fn leave(&mut self) {
        match self.1 {
            READING => bump(&self.0.reading, -1),
            WRITING => bump(&self.0.writing, -1),
            _ => {}
        }
        self.1 = NONE;
    }
}

impl Drop for Phase {
    #[inline]
    fn drop(&mut self) {
        self.leave();
    }
}

/// The sums: (active, accepted, handled, requests, reading, writing,
/// waiting).
pub fn totals() -> [i64; 7] {
    let mut t = [0i64; 6];
    let mut at = SHARDS.load(Ordering::Acquire);
    // SAFETY: shards are leaked (never freed) and linked once, fully made,
    // before they are published.
    while let Some(s) = unsafe { at.as_ref() } {
        at = s.next.load(Relaxed);
        for (i, c) in [
            &s.active,
            &s.accepted,
            &s.handled,
            &s.requests,
            &s.reading,
            &s.writing,
        ]
        .into_iter()
        .enumerate()
        {
            t[i] += c.load(Relaxed);
        }
    }
    let [active, accepted, handled, requests, reading, writing] = t.map(|n| n.max(0));
    let waiting = (active - reading - writing).max(0);
    [
        active, accepted, handled, requests, reading, writing, waiting,
    ]
}

/// `stub_status;`'s page, nginx's text to the byte.
pub fn page() -> String {
    let [active, accepted, handled, requests, reading, writing, waiting] = totals();
    format!(
        "Active connections: {active} \nserver accepts handled requests\n {accepted} {handled} {requests} \nReading: {reading} Writing: {writing} Waiting: {waiting} \n"
    )
}
