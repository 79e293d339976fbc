//! Timeouts that leave their timer where it is.
//!
//! A connection waits for the same thing request after request (the next
//! request head, an upstream's answer), each wait with the same timeout.
//! Moving a tokio timer to `now + timeout` at every wait, and polling it
//! to register the task, cost about 170 instructions and five atomic
//! read-modify-writes per wait: a fifth of all atomics of a proxied
//! request. Here the timer moves only when it would fire late (a shorter
//! timeout than the one it was set for) or when it fires before the
//! wait's own deadline, that is, at most once per timeout for a busy
//! connection; and it is polled only when a different task waits on it
//! or it has fired. nginx keeps its timers in a tree and skips an update
//! within `NGX_TIMER_LAZY_DELAY` for the same reason.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Waker};

use tokio::time::{Instant, Sleep};

/// What is known of the task a timer was last polled by.
pub trait Polled {
    /// Whether the timer was last polled with `waker`'s task.
    fn by(&self, waker: &Waker) -> bool;
    /// It was polled with `waker`, or (`None`) it must be polled again.
    fn set(&mut self, waker: Option<&Waker>);
}

/// The task a timer was last polled by, as its waker's data and vtable
/// addresses, for a timer different tasks wait on (an upstream
/// connection's, which serves one client's task, then another's). The
/// timer holds a clone of that waker while it is registered, so the task,
/// and with it the address, cannot be another task's meanwhile; once the
/// timer has fired it holds none, and [`passed`] polls it again.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PolledBy(usize, usize);

impl PolledBy {
    fn of(waker: &Waker) -> PolledBy {
        PolledBy(waker.data() as usize, waker.vtable() as *const _ as usize)
    }
}

impl Polled for PolledBy {
    fn by(&self, waker: &Waker) -> bool {
        *self == PolledBy::of(waker)
    }

    fn set(&mut self, waker: Option<&Waker>) {
        *self = waker.map(PolledBy::of).unwrap_or_default();
    }
}

/// For a timer only its owner's task ever waits on (a client
/// connection's keep-alive timer): whether it was polled since it last
/// had to be. One byte, where [`PolledBy`] takes 16 in every idle
/// connection's task.
impl Polled for bool {
    fn by(&self, _: &Waker) -> bool {
        *self
    }

    fn set(&mut self, waker: Option<&Waker>) {
        *self = waker.is_some();
    }
}

/// Whether `due` has passed, by `sleep`, which is moved to `due` only
/// when it is set to fire later than that or has fired before it. When
/// it returns `false`, the task of `cx` is woken by `due` at the latest.
pub fn passed(
    mut sleep: Pin<&mut Sleep>,
    due: Instant,
    polled: &mut impl Polled,
    cx: &mut Context<'_>,
) -> bool {
    if sleep.deadline() > due {
        sleep.as_mut().reset(due);
        polled.set(None);
    }
    loop {
        if polled.by(cx.waker()) && !sleep.is_elapsed() {
            return false;
        }
        // Outside tokio's cooperative budget: a `Pending` for lack of
        // budget would leave the task unregistered while `polled` says
        // it is.
        let mut unbudgeted = tokio::task::coop::unconstrained(sleep.as_mut());
        if Pin::new(&mut unbudgeted).poll(cx).is_pending() {
            polled.set(Some(cx.waker()));
            return false;
        }
        if sleep.deadline() >= due {
            return true;
        }
        // It fired at an earlier wait's deadline: on to this one's.
        sleep.as_mut().reset(due);
        polled.set(None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Waits on `sleep` for `due` as the connections do; the time it
    /// returned at.
    async fn wait(mut sleep: Pin<&mut Sleep>, due: Instant, polled: &mut impl Polled) -> Instant {
        std::future::poll_fn(|cx| {
            if passed(sleep.as_mut(), due, polled, cx) {
                std::task::Poll::Ready(Instant::now())
            } else {
                std::task::Poll::Pending
            }
        })
        .await
    }

    #[tokio::test]
    async fn a_timer_set_later_is_moved_to_the_deadline() {
        let mut sleep = std::pin::pin!(tokio::time::sleep(Duration::from_secs(60)));
        let due = Instant::now() + Duration::from_millis(20);
        let at = tokio::time::timeout(
            Duration::from_secs(10),
            wait(sleep.as_mut(), due, &mut false),
        )
        .await
        .expect("woken by the deadline, not the timer's old 60 s");
        assert!(at >= due);
    }

    #[tokio::test]
    async fn a_timer_that_fires_early_is_moved_on_and_the_wait_goes_on() {
        let start = Instant::now();
        let mut sleep = std::pin::pin!(tokio::time::sleep_until(start + Duration::from_millis(5)));
        let due = start + Duration::from_millis(40);
        let at = wait(sleep.as_mut(), due, &mut false).await;
        assert!(at >= due, "returned {:?} before the deadline", due - at);
        assert_eq!(sleep.deadline(), due);
    }

    #[tokio::test]
    async fn a_wait_of_another_task_is_registered() {
        // An upstream connection's timer, polled by one client's task,
        // then waited on by another's: the second must be woken.
        let sleep = Box::pin(tokio::time::sleep(Duration::from_secs(60)));
        let due = Instant::now() + Duration::from_millis(20);
        let (sleep, polled_by) = tokio::spawn(async move {
            let mut sleep = sleep;
            let mut polled_by = PolledBy::default();
            std::future::poll_fn(|cx| {
                assert!(!passed(sleep.as_mut(), due, &mut polled_by, cx));
                std::task::Poll::Ready(())
            })
            .await;
            (sleep, polled_by)
        })
        .await
        .expect("the first task");
        let at = tokio::spawn(async move {
            let (mut sleep, mut polled_by) = (sleep, polled_by);
            wait(sleep.as_mut(), due, &mut polled_by).await
        });
        let at = tokio::time::timeout(Duration::from_secs(10), at)
            .await
            .expect("the second task is woken at the deadline")
            .expect("the second task");
        assert!(at >= due);
    }
}
