//! Worker threads. Like nginx's worker processes, each runs its own event
//! loop (a current-thread tokio runtime) and owns its upstream connection
//! pools and balancer state, so no lock is shared by all requests.

use std::cell::Cell;

thread_local! {
    static INDEX: Cell<u32> = const { Cell::new(0) };
}

/// The worker index of the current thread (0 outside workers).
pub fn index() -> u32 {
    INDEX.with(|i| i.get())
}

/// Marks the current thread as worker `i`.
pub fn set_index(i: u32) {
    INDEX.with(|c| c.set(i));
}
