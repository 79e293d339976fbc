//! Per-worker pool of I/O buffers.
//!
//! A connection holds a buffer only while a request is in flight (head,
//! body, response): idle keep-alive connections hold none, which is what
//! keeps their memory near nginx's. Workers are current-thread runtimes,
//! one per thread, so the free list is a thread-local: no lock, no
//! sharing between workers.

use std::cell::RefCell;
use std::ops::{Deref, DerefMut};

/// The size of a pooled buffer: room for almost every request head and a
/// response head with a small body, in one read and one write.
pub const SIZE: usize = 8192;

/// Free buffers kept per worker. Above that they go back to the
/// allocator: a burst of busy connections does not pin its peak memory.
const KEEP: usize = 16;

thread_local! {
    static FREE: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

/// A buffer from the pool, given back when dropped (unless it grew for a
/// large head: only buffers of the standard size are kept).
pub struct Buf(Vec<u8>);

impl Buf {
    pub fn take() -> Buf {
        let reused = FREE
            .try_with(|f| f.try_borrow_mut().ok().and_then(|mut f| f.pop()))
            .ok()
            .flatten();
        Buf(reused.unwrap_or_else(|| Vec::with_capacity(SIZE)))
    }
}

impl Drop for Buf {
    fn drop(&mut self) {
        let mut v = std::mem::take(&mut self.0);
        if v.capacity() != SIZE {
            return;
        }
        v.clear();
        let _ = FREE.try_with(|f| {
            if let Ok(mut f) = f.try_borrow_mut() {
                if f.len() < KEEP {
                    f.push(v);
                }
            }
        });
    }
}

impl Deref for Buf {
    type Target = Vec<u8>;
    fn deref(&self) -> &Vec<u8> {
        &self.0
    }
}

impl DerefMut for Buf {
    fn deref_mut(&mut self) -> &mut Vec<u8> {
        &mut self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_reused_and_grown_ones_dropped() {
        let mut a = Buf::take();
        a.extend_from_slice(b"abc");
        let ptr = a.as_ptr();
        drop(a);
        let b = Buf::take();
        assert_eq!(b.as_ptr(), ptr);
        assert!(b.is_empty());
        let mut c = Buf::take();
        c.reserve(SIZE * 2);
        drop(c);
        drop(b);
        let d = Buf::take();
        assert_eq!(d.capacity(), SIZE);
    }
}
