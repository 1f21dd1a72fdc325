//! Bound tests of the connection loop (a child module of `connection`).

use super::*;
use bytes::{BufMut, BytesMut};
use futures_lite::future::{block_on, poll_once};
use std::time::Duration;
use tests_support::*;

fn frames(frames: &[&[u8]]) -> BytesMut {
    let mut input = BytesMut::new();
    for frame in frames {
        input.put_i32(frame.len() as i32);
        input.put_slice(frame);
    }
    input
}

#[test]
fn bytes_of_an_incomplete_frame_are_not_progress() {
    let pipe = OpenPipe::default();
    pipe.input.borrow_mut().extend_from_slice(&frames(&[b"f1"]));
    let shared = ConnectionShared::default();
    let service = Recorder::default();
    let mut connection = Box::pin(serve_connection(
        pipe.clone(),
        &service,
        ConnectionLimits::default(),
        shared.clone(),
    ));
    let probe = Instant::now() + Duration::from_secs(100);
    assert!(block_on(poll_once(&mut connection)).is_none());
    assert_eq!(service.calls.borrow().len(), 1);
    let idle_after_request = shared.activity.idle_for(probe);
    // A slow-loris client: the length prefix of a 1000-byte frame, then a trickle.
    pipe.input.borrow_mut().put_i32(1000);
    for _ in 0..3 {
        pipe.input.borrow_mut().put_u8(b'x');
        assert!(block_on(poll_once(&mut connection)).is_none());
        assert_eq!(shared.activity.idle_for(probe), idle_after_request);
    }
    pipe.input.borrow_mut().put_bytes(b'x', 997);
    assert!(block_on(poll_once(&mut connection)).is_none());
    assert_eq!(service.calls.borrow().len(), 2);
    assert!(shared.activity.idle_for(probe) < idle_after_request);
}

#[test]
fn an_unread_response_backlog_stops_dispatching() {
    let pipe = OpenPipe::default();
    pipe.refuse_writes.set(true); // the client never reads
    let requests: Vec<&[u8]> = vec![b"b"; 200];
    pipe.input
        .borrow_mut()
        .extend_from_slice(&frames(&requests));
    let service = Recorder::default();
    let limits = ConnectionLimits {
        max_in_flight: 4,
        max_queued_response_bytes: 2 * BIG_RESPONSE,
        ..ConnectionLimits::default()
    };
    let mut connection = Box::pin(serve_connection(
        pipe.clone(),
        &service,
        limits,
        ConnectionShared::default(),
    ));
    for _ in 0..50 {
        assert!(block_on(poll_once(&mut connection)).is_none());
    }
    // Dispatching stops once more than 2 MiB wait; what is in flight then still completes.
    let dispatched = service.calls.borrow().len();
    assert!(dispatched <= 3 + limits.max_in_flight, "{dispatched}");
    // The client starts reading: everything is served.
    pipe.refuse_writes.set(false);
    pipe.closed.set(true);
    block_on(connection).unwrap();
    assert_eq!(service.calls.borrow().len(), 200);
    assert_eq!(pipe.output.borrow().len(), 200 * BIG_RESPONSE);
}

#[test]
fn a_spent_request_budget_holds_back_the_body_until_a_release() {
    let budget = Rc::new(crate::budget::RequestBudget::with_always_admitted(100, 0));
    let shared = ConnectionShared {
        request_budget: budget.clone(),
        activity: Rc::default(),
    };
    // Someone else holds 90 bytes.
    let waker = std::task::Waker::noop();
    let mut other = crate::budget::BudgetWait::default();
    assert!(budget.try_reserve(90, &mut other, &mut Context::from_waker(waker)));
    let pipe = OpenPipe::default();
    pipe.input
        .borrow_mut()
        .extend_from_slice(&frames(&[&[b'f'; 50]]));
    let service = Recorder::default();
    let mut connection = Box::pin(serve_connection(
        pipe.clone(),
        &service,
        ConnectionLimits::default(),
        shared,
    ));
    assert!(block_on(poll_once(&mut connection)).is_none());
    assert!(service.calls.borrow().is_empty());
    assert_eq!(budget.in_use(), 90);
    budget.release(90);
    pipe.closed.set(true);
    block_on(connection).unwrap();
    assert_eq!(service.calls.borrow().len(), 1);
    assert_eq!(budget.in_use(), 0, "returned once the response completed");
}

/// Pipes and services for the bound tests.
mod tests_support {
    use super::*;
    use std::cell::{Cell, RefCell};

    pub const BIG_RESPONSE: usize = 1024 * 1024;

    /// An in-memory duplex that stays open (reads are `Pending` when empty) until `closed`.
    #[derive(Clone, Default)]
    pub struct OpenPipe {
        pub input: Rc<RefCell<BytesMut>>,
        pub output: Rc<RefCell<Vec<u8>>>,
        pub closed: Rc<Cell<bool>>,
        pub refuse_writes: Rc<Cell<bool>>,
    }
    impl AsyncRead for OpenPipe {
        fn poll_read(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &mut [u8],
        ) -> Poll<std::io::Result<usize>> {
            let mut input = self.input.borrow_mut();
            if input.is_empty() {
                return if self.closed.get() {
                    Poll::Ready(Ok(0))
                } else {
                    Poll::Pending
                };
            }
            let n = buf.len().min(input.len());
            buf[..n].copy_from_slice(&input[..n]);
            input.advance(n);
            Poll::Ready(Ok(n))
        }
    }
    impl AsyncWrite for OpenPipe {
        fn poll_write(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<std::io::Result<usize>> {
            if self.refuse_writes.get() {
                return Poll::Pending;
            }
            self.output.borrow_mut().extend_from_slice(buf);
            Poll::Ready(Ok(buf.len()))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    /// Records each call; `b` frames get a 1 MiB response, others an empty frame.
    #[derive(Default)]
    pub struct Recorder {
        pub calls: RefCell<Vec<Bytes>>,
    }
    impl Service for Recorder {
        fn call(&self, frame: Bytes) -> DispatchFuture {
            self.calls.borrow_mut().push(frame.clone());
            let size = if frame.first() == Some(&b'b') {
                BIG_RESPONSE
            } else {
                4
            };
            let response: ResponseFuture = Box::pin(async move {
                let mut out = BytesMut::zeroed(size);
                out[..4].copy_from_slice(&(size as i32 - 4).to_be_bytes());
                Some(Frame::from(out.freeze()))
            });
            Box::pin(std::future::ready(Ok(response)))
        }
    }
}
