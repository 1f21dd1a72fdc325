//! Waking a shard from another thread without ever losing the wake-up.
//!
//! # Why not glommio's own foreign wake-ups
//! glommio 0.9 wakes a task from another thread by queueing its waker for the task's executor and calling
//! `SleepNotifier::notify`, which writes the executor's eventfd only if a `should_notify` flag is set. The
//! executor sets that flag (`Relaxed`) before it looks at its queues one last time and parks in
//! `io_uring_enter`; the waker enqueues (`Relaxed` as well) and then reads the flag. With no fence between
//! each side's store and its load, both can read the other's old value (x86 lets a load pass an earlier
//! store): the executor sees no work and parks, the waker sees "not sleeping" and writes nothing, and the
//! shard sleeps until some unrelated event — forever at start-up, where there is none. glommio's
//! `shared_channel` and channel mesh use the same notifier; an upstream report describes lost wake-ups in the
//! mesh under contention. That is the start-up hang the hardening issue reproduced (both executors parked in
//! io_uring waits before "shard ready").
//!
//! # The doorbell
//! Each shard owns a [`Doorbell`]: a queue of wakers to run, a `rung` flag and a Unix socket pair. Another
//! thread that must wake a task of this shard pushes the task's waker onto the queue, and writes one byte to
//! the socket unless the bell is already rung:
//!
//! ```text
//! ringer (any thread)                     owner (the shard's doorbell task)
//! wakers.push(waker)                      loop { read ≥1 byte (io_uring: parks the shard until then)
//! if !rung.swap(true, SeqCst) {                  rung.store(false, SeqCst)
//!     write(socket, 1 byte)                      while let Some(waker) = wakers.pop() { waker.wake() } }
//! }
//! ```
//! Liveness: all operations on `rung` are sequentially consistent. If a ringer's swap returns `false`, it
//! writes a byte, which the owner's pending read completes on (a socket never loses a byte). If it returns
//! `true`, the swap came before the owner's next `store(false)` in the single order of those operations, so
//! the owner's drain that follows that store sees the push (made before the swap). Either way the waker runs
//! on its own shard's thread, where glommio's local wake path has no race. A ringer that finds the socket
//! full (`EAGAIN`) needs no byte: unread bytes are already there.
//!
//! [`OnShard`] makes any future safe to wait on across threads: it polls the inner future with a waker that
//! routes wake-ups from other threads through the doorbell of the shard that polled it. The mesh's channels
//! and the reply channels are awaited through it.

use concurrent_queue::ConcurrentQueue;
use futures_lite::AsyncReadExt;
use std::cell::RefCell;
use std::future::Future;
use std::io::Write;
use std::os::fd::IntoRawFd;
use std::os::unix::net::UnixStream;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

/// Counts doorbells so each has an identity threads can compare.
static NEXT_DOORBELL: AtomicUsize = AtomicUsize::new(1);

pub struct Doorbell {
    id: usize,
    rung: AtomicBool,
    wakers: ConcurrentQueue<Waker>,
    /// The ringers' end (non-blocking).
    ringer: UnixStream,
    /// The owner's end, until the owning shard takes it to listen.
    listener: Mutex<Option<UnixStream>>,
}

thread_local! {
    /// The doorbell of the shard running on this thread, once it listens.
    static CURRENT: RefCell<Option<Arc<Doorbell>>> = const { RefCell::new(None) };
}

/// The doorbell of the shard on this thread, if this thread is a shard that listens on one.
pub fn current() -> Option<Arc<Doorbell>> {
    CURRENT.with(|current| current.borrow().clone())
}

impl Doorbell {
    pub fn new() -> std::io::Result<Arc<Doorbell>> {
        let (ringer, listener) = UnixStream::pair()?;
        ringer.set_nonblocking(true)?;
        Ok(Arc::new(Doorbell {
            id: NEXT_DOORBELL.fetch_add(1, Ordering::Relaxed),
            rung: AtomicBool::new(false),
            wakers: ConcurrentQueue::unbounded(),
            ringer,
            listener: Mutex::new(Some(listener)),
        }))
    }

    /// Runs `waker` on the doorbell's shard: at once when called there, else through the bell.
    pub fn wake(&self, waker: Waker) {
        if self.is_current() {
            waker.wake();
            return;
        }
        // An unbounded queue only refuses when closed, which this one never is.
        let _ = self.wakers.push(waker);
        if !self.rung.swap(true, Ordering::SeqCst) {
            match (&self.ringer).write(&[1]) {
                Ok(_) => {}
                // Full: bytes the owner has not read yet will wake it.
                Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {}
                // The owner is gone (shutdown): nobody is left to wake.
                Err(_) => {}
            }
        }
    }

    fn is_current(&self) -> bool {
        CURRENT.with(|current| {
            current
                .borrow()
                .as_ref()
                .is_some_and(|doorbell| doorbell.id == self.id)
        })
    }

    /// Makes this the calling shard's doorbell and answers it until the ringers' end closes. Spawn it once,
    /// on the owning shard, before anything waits on another thread.
    pub async fn listen(self: Arc<Self>) {
        let Some(listener) = self.listener.lock().expect("doorbell lock").take() else {
            panic!("a doorbell is listened to by one shard only");
        };
        CURRENT.with(|current| *current.borrow_mut() = Some(self.clone()));
        // SAFETY: the descriptor is ours (taken out of the std stream) and owned by glommio's stream now.
        let mut socket: glommio::net::UnixStream =
            unsafe { std::os::fd::FromRawFd::from_raw_fd(listener.into_raw_fd()) };
        let mut bytes = [0u8; 64];
        loop {
            match socket.read(&mut bytes).await {
                Ok(0) => break,
                Ok(_) => {}
                Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(error) => {
                    tracing::error!(%error, "doorbell read failed");
                    break;
                }
            }
            self.rung.store(false, Ordering::SeqCst);
            while let Ok(waker) = self.wakers.pop() {
                waker.wake();
            }
        }
    }
}

/// A waker that delivers wake-ups from other threads through its shard's doorbell.
struct ShardWaker {
    inner: Waker,
    doorbell: Arc<Doorbell>,
}

impl Wake for ShardWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.doorbell.wake(self.inner.clone());
    }
}

/// Polls `F` so that a wake-up from another thread reaches this shard through its doorbell (see the
/// module doc). On a thread with no doorbell it is `F` itself.
pub struct OnShard<F> {
    inner: F,
    /// The waker last polled with and the doorbell waker made for it.
    waker: Option<(Waker, Waker)>,
}

impl<F> OnShard<F> {
    pub fn new(inner: F) -> Self {
        OnShard { inner, waker: None }
    }
}

impl<F: Future> Future for OnShard<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        // SAFETY: `inner` is never moved out of the pinned `OnShard`; `waker` is not structurally pinned.
        let this = unsafe { self.get_unchecked_mut() };
        let inner = unsafe { Pin::new_unchecked(&mut this.inner) };
        let Some(doorbell) = current() else {
            return inner.poll(cx);
        };
        let reuse = matches!(&this.waker, Some((last, _)) if last.will_wake(cx.waker()));
        if !reuse {
            let wrapped = Waker::from(Arc::new(ShardWaker {
                inner: cx.waker().clone(),
                doorbell,
            }));
            this.waker = Some((cx.waker().clone(), wrapped));
        }
        let (_, wrapped) = this.waker.as_ref().expect("set above");
        inner.poll(&mut Context::from_waker(wrapped))
    }
}
