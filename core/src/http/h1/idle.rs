//! The worker's idle connections: counted, and woken together after a
//! reload or a stop, or asked to close when the worker runs short of
//! connections (nginx's reusable connections queue).
//!
//! A worker's connections all run on its own thread (one current-thread
//! runtime per worker), and so does what wakes them (the worker's main
//! task, its accept loops), so the list is the thread's own: no lock and
//! no atomic beyond the waker's reference count. `tokio::sync::Notify`,
//! used before, took its mutex three times per keep-alive wait, about six
//! atomic operations per request.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use slab::Slab;

/// Wakers per chunk of the list.
const CHUNK: usize = 512;

/// The wakers, in chunks of [`CHUNK`] (12 KB each) rather than one table
/// that doubles: at 10,000 idle connections one table (720 KB, however it
/// was reserved) cost ~210 bytes of resident memory per connection where
/// the chunks cost the 24 bytes of an entry.
struct Wakers {
    chunks: Vec<Slab<Waker>>,
    /// No chunk before this one has room.
    room: usize,
}

impl Wakers {
    fn insert(&mut self, w: Waker) -> usize {
        while self.chunks.get(self.room).is_some_and(|c| c.len() >= CHUNK) {
            self.room += 1;
        }
        if self.room == self.chunks.len() {
            self.chunks.push(Slab::with_capacity(CHUNK));
        }
        let chunk = &mut self.chunks[self.room];
        self.room * CHUNK + chunk.insert(w)
    }

    fn get_mut(&mut self, key: usize) -> Option<&mut Waker> {
        self.chunks.get_mut(key / CHUNK)?.get_mut(key % CHUNK)
    }

    fn remove(&mut self, key: usize) {
        if let Some(chunk) = self.chunks.get_mut(key / CHUNK) {
            chunk.try_remove(key % CHUNK);
            self.room = self.room.min(key / CHUNK);
        }
    }

    fn drain(&mut self) -> Vec<Waker> {
        self.room = 0;
        self.chunks.iter_mut().flat_map(|c| c.drain()).collect()
    }
}

thread_local! {
    /// The wakers of idle connections that wait for a [`wake_all`].
    static WAITING: RefCell<Wakers> = const {
        RefCell::new(Wakers {
            chunks: Vec::new(),
            room: 0,
        })
    };
    /// [`wake_all`] calls so far: a registration from an earlier round
    /// was woken (its slot may hold another connection's waker since).
    static ROUND: Cell<u32> = const { Cell::new(0) };
    /// Connections between requests, registered or not.
    static IDLE: Cell<usize> = const { Cell::new(0) };
    /// How many idle connections a worker short of connections asked to
    /// close, and not yet closed.
    static TO_CLOSE: Cell<usize> = const { Cell::new(0) };
}

/// A wait for [`wake_all`]: ready once it ran after the first poll, then
/// waiting for the next one.
///
/// Twelve bytes: every idle connection's task holds one, and a task past
/// its allocation's size class costs 128 bytes more (see `h1::serve`).
pub struct Waiting {
    /// Slot in `WAITING` plus one once polled (0: none; a worker's
    /// connections are far fewer than `u32::MAX`, bounded by its file
    /// descriptors).
    slot: u32,
    /// The round the slot was taken in (rounds wrap: a registration would
    /// have to outlive 2^32 reloads and stops to be taken for a current one).
    round: u32,
    /// A connection's idle period, counted in [`count`] until dropped.
    counted: bool,
}

impl Waiting {
    /// An HTTP/1 connection's wait for a request: counted as idle (a
    /// connection [`ask_to_close`] may close) while it lives.
    pub fn idle() -> Waiting {
        IDLE.set(IDLE.get() + 1);
        Waiting {
            slot: 0,
            round: 0,
            counted: true,
        }
    }

    /// Only the wake, not counted as idle (an HTTP/2 connection's).
    pub fn for_wake() -> Waiting {
        Waiting {
            slot: 0,
            round: 0,
            counted: false,
        }
    }
}

impl Future for Waiting {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let round = ROUND.get();
        if self.slot == 0 {
            let key = WAITING.with_borrow_mut(|waiting| {
                let key = waiting.insert(cx.waker().clone());
                let slot = u32::try_from(key + 1).ok();
                if slot.is_none() {
                    waiting.remove(key);
                }
                slot
            });
            // (Unregistered past u32::MAX slots, which file descriptors
            // do not reach: only stops and reloads would miss it.)
            if let Some(slot) = key {
                self.slot = slot;
                self.round = round;
            }
            return Poll::Pending;
        }
        if self.round != round {
            self.slot = 0;
            return Poll::Ready(());
        }
        let key = self.slot as usize - 1;
        WAITING.with_borrow_mut(|waiting| {
            if let Some(w) = waiting.get_mut(key) {
                if !w.will_wake(cx.waker()) {
                    *w = cx.waker().clone();
                }
            }
        });
        Poll::Pending
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        if self.counted {
            IDLE.set(IDLE.get().saturating_sub(1));
        }
        if self.slot != 0 && self.round == ROUND.get() {
            let key = self.slot as usize - 1;
            WAITING.with_borrow_mut(|waiting| waiting.remove(key));
        }
    }
}

/// Wakes every idle connection of this thread's worker, so each looks at
/// the stop, the reload or the request to close.
pub fn wake_all() {
    ROUND.set(ROUND.get().wrapping_add(1));
    // Taken out first: a woken waker may run code that registers again.
    let woken = WAITING.with_borrow_mut(Wakers::drain);
    for w in woken {
        w.wake();
    }
}

/// Connections of this worker waiting for a request.
pub fn count() -> usize {
    IDLE.get()
}

/// Asks up to `n` idle connections to close (nginx's
/// `ngx_drain_connections`), and wakes them.
pub fn ask_to_close(n: usize) {
    TO_CLOSE.set(n);
    wake_all();
}

/// Woken while idle: whether this connection is one asked to close.
pub fn take_close() -> bool {
    let n = TO_CLOSE.get();
    TO_CLOSE.set(n.saturating_sub(1));
    n > 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::Wake;

    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn a_registered_wait_is_woken_once_per_round_and_counted_while_it_lives() {
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);
        let before = super::count();
        let mut w = Waiting::idle();
        assert_eq!(super::count(), before + 1);
        assert!(Pin::new(&mut w).poll(&mut cx).is_pending());
        assert!(Pin::new(&mut w).poll(&mut cx).is_pending());
        wake_all();
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        assert!(Pin::new(&mut w).poll(&mut cx).is_ready());
        // Registered again: the next round wakes it again.
        assert!(Pin::new(&mut w).poll(&mut cx).is_pending());
        wake_all();
        assert_eq!(count.0.load(Ordering::SeqCst), 2);
        drop(w);
        assert_eq!(super::count(), before);
        // A dropped wait is not woken, and one not idle is not counted.
        let mut gone = Waiting::for_wake();
        assert_eq!(super::count(), before);
        assert!(Pin::new(&mut gone).poll(&mut cx).is_pending());
        drop(gone);
        wake_all();
        assert_eq!(count.0.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn keys_stay_valid_across_chunks() {
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        let mut list = Wakers {
            chunks: Vec::new(),
            room: 0,
        };
        let keys: Vec<usize> = (0..CHUNK * 2 + 3)
            .map(|_| list.insert(waker.clone()))
            .collect();
        assert_eq!(list.chunks.len(), 3);
        // A slot freed in the first chunk is the next one taken.
        list.remove(keys[7]);
        assert_eq!(list.insert(waker.clone()), keys[7]);
        list.remove(keys[CHUNK + 1]);
        assert!(list.get_mut(keys[CHUNK + 1]).is_none());
        assert!(list.get_mut(keys[CHUNK + 2]).is_some());
        assert_eq!(list.drain().len(), CHUNK * 2 + 2);
        assert!(list.get_mut(keys[0]).is_none());
    }

    #[test]
    fn only_as_many_as_asked_close() {
        ask_to_close(2);
        assert!(take_close());
        assert!(take_close());
        assert!(!take_close());
    }
}
