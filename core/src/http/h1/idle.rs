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

thread_local! {
    /// The wakers of idle connections that wait for a [`wake_all`].
    static WAITING: RefCell<Slab<Waker>> = const { RefCell::new(Slab::new()) };
    /// [`wake_all`] calls so far: a registration from an earlier round
    /// was woken (its slot may hold another connection's waker since).
    static ROUND: Cell<u64> = const { Cell::new(0) };
    /// Connections between requests, registered or not.
    static IDLE: Cell<usize> = const { Cell::new(0) };
    /// How many idle connections a worker short of connections asked to
    /// close, and not yet closed.
    static TO_CLOSE: Cell<usize> = const { Cell::new(0) };
}

/// A wait for [`wake_all`]: ready once it ran after the first poll, then
/// waiting for the next one.
pub struct Waiting {
    /// Slot in `WAITING` and the round it was taken in, once polled.
    slot: Option<(usize, u64)>,
    /// A connection's idle period, counted in [`count`] until dropped.
    counted: bool,
}

impl Waiting {
    /// An HTTP/1 connection's wait for a request: counted as idle (a
    /// connection [`ask_to_close`] may close) while it lives.
    pub fn idle() -> Waiting {
        IDLE.set(IDLE.get() + 1);
        Waiting {
            slot: None,
            counted: true,
        }
    }

    /// Only the wake, not counted as idle (an HTTP/2 connection's).
    pub fn for_wake() -> Waiting {
        Waiting {
            slot: None,
            counted: false,
        }
    }
}

impl Future for Waiting {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let round = ROUND.get();
        match self.slot {
            Some((_, taken)) if taken != round => {
                self.slot = None;
                Poll::Ready(())
            }
            Some((key, _)) => {
                WAITING.with_borrow_mut(|waiting| {
                    if let Some(w) = waiting.get_mut(key) {
                        if !w.will_wake(cx.waker()) {
                            *w = cx.waker().clone();
                        }
                    }
                });
                Poll::Pending
            }
            None => {
                let key = WAITING.with_borrow_mut(|waiting| waiting.insert(cx.waker().clone()));
                self.slot = Some((key, round));
                Poll::Pending
            }
        }
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        if self.counted {
            IDLE.set(IDLE.get().saturating_sub(1));
        }
        if let Some((key, round)) = self.slot {
            if round == ROUND.get() {
                WAITING.with_borrow_mut(|waiting| waiting.try_remove(key));
            }
        }
    }
}

/// Wakes every idle connection of this thread's worker, so each looks at
/// the stop, the reload or the request to close.
pub fn wake_all() {
    ROUND.set(ROUND.get().wrapping_add(1));
    // Taken out first: a woken waker may run code that registers again.
    let woken = WAITING.with_borrow_mut(std::mem::take);
    for (_, w) in woken {
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
    fn only_as_many_as_asked_close() {
        ask_to_close(2);
        assert!(take_close());
        assert!(take_close());
        assert!(!take_close());
    }
}
