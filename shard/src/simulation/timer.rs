//! The simulation's timers: sleeps waiting for the virtual clock, keyed by (deadline, registration order)
//! so they fire in deadline order and, at equal deadlines, in the order they were registered. A sleep is
//! registered only while pending, and unregistered when it completes or is dropped (a timeout's timer
//! once its future wins), so the table holds exactly the sleeps someone still waits on.

use super::Core;
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::Instant;

type TimerKey = (Instant, u64);

#[derive(Default)]
pub(crate) struct Timers {
    pending: RefCell<BTreeMap<TimerKey, Waker>>,
    next_sequence: Cell<u64>,
}

impl Timers {
    pub(crate) fn len(&self) -> usize {
        self.pending.borrow().len()
    }

    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.pending
            .borrow()
            .keys()
            .next()
            .map(|(deadline, _)| *deadline)
    }

    /// Removes and returns the earliest timer, if there is one due by `limit` (any, without a limit).
    pub(crate) fn pop_due(&self, limit: Option<Instant>) -> Option<(Instant, Waker)> {
        let mut pending = self.pending.borrow_mut();
        let (deadline, _) = *pending.keys().next()?;
        if limit.is_some_and(|limit| deadline > limit) {
            return None;
        }
        pending
            .pop_first()
            .map(|((deadline, _), waker)| (deadline, waker))
    }

    pub(crate) fn clear(&self) {
        let pending = std::mem::take(&mut *self.pending.borrow_mut());
        drop(pending);
    }

    fn register(&self, deadline: Instant, waker: Waker) -> TimerKey {
        let key = (deadline, self.next_sequence.get());
        self.next_sequence.set(key.1 + 1);
        self.pending.borrow_mut().insert(key, waker);
        key
    }

    /// Refreshes the waker of a registered timer; false if it is no longer registered (it fired).
    fn update(&self, key: TimerKey, waker: &Waker) -> bool {
        match self.pending.borrow_mut().get_mut(&key) {
            Some(registered) => {
                if !registered.will_wake(waker) {
                    *registered = waker.clone();
                }
                true
            }
            None => false,
        }
    }

    fn remove(&self, key: TimerKey) {
        // `try_borrow_mut`: a sleep dropped while the table is being cleared has nothing left to remove.
        if let Ok(mut pending) = self.pending.try_borrow_mut() {
            pending.remove(&key);
        }
    }
}

/// Completes once the simulation's clock reaches `deadline`.
pub(crate) struct Sleep {
    core: Rc<Core>,
    deadline: Instant,
    registered: Option<TimerKey>,
}

impl Sleep {
    pub(crate) fn until(core: Rc<Core>, deadline: Instant) -> Sleep {
        Sleep {
            core,
            deadline,
            registered: None,
        }
    }
}

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.core.now() >= self.deadline {
            if let Some(key) = self.registered.take() {
                self.core.timers().remove(key);
            }
            return Poll::Ready(());
        }
        let still_registered = self
            .registered
            .is_some_and(|key| self.core.timers().update(key, cx.waker()));
        if !still_registered {
            // Not yet registered, or fired by a test that then did not move the clock past it (cannot
            // happen: a timer fires with the clock at its deadline); register (again).
            let key = self
                .core
                .timers()
                .register(self.deadline, cx.waker().clone());
            self.registered = Some(key);
        }
        Poll::Pending
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        if let Some(key) = self.registered.take() {
            self.core.timers().remove(key);
        }
    }
}
