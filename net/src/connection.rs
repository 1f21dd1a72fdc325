//! One connection's loop, with pipelining and in-order responses.
//!
//! Requests are handled in two stages (Redpanda's "dispatched" / "responded"):
//! 1. **dispatch** — done strictly one request at a time, in arrival order. Everything whose order matters
//!    (assigning offsets to a partition's batches, sending work to another shard's queue) happens here.
//! 2. **respond** — the future returned by dispatch; these overlap freely (a long-poll fetch does not hold up
//!    the produce behind it), but their responses are written in request order.
//!
//! ```text
//!  socket ──read──► read_buffer ──take_frame──► dispatching (one) ──► in_flight (≤ max_in_flight, FIFO)
//!                                                                        │ completed front slots
//!  socket ◄──write── write_queue ◄──────────────────────────────────────┘
//! ```
//! Bounds (reading stops, and TCP pushes back on the client, while any is reached):
//! - one frame is at most `max_request_bytes`, and its buffer grows only as its bytes arrive (the
//!   announced length is the peer's claim, not an allocation);
//! - a frame's announced size is reserved from the shard's [`RequestBudget`] before its body is read and
//!   returned when its response is complete; a connection that cannot reserve waits;
//! - at most `max_in_flight` requests await their response;
//! - no request is dispatched while more than `max_queued_response_bytes` of completed responses wait to
//!   be sent (a client that pipelines fetches and never reads holds at most that, plus the responses of
//!   the requests already in flight).
//!
//! The connection reports its progress to a [`ConnectionActivity`] that the broker's idle watchdog reads.

use crate::budget::{BudgetWait, ConnectionActivity, RequestBudget};
use crate::frame::{FrameError, LENGTH_PREFIX_BYTES};
use crate::read_buffer::ReadBuffer;
use crate::splice::Frame;
use bytes::{Buf, Bytes};
use futures_lite::{AsyncRead, AsyncWrite};
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Instant;

/// The response frame (length prefix included), or `None` when the request gets no response (acks=0).
pub type ResponseFuture = Pin<Box<dyn Future<Output = Option<Frame>>>>;
/// Completes when the request is dispatched; yields the future of its response, or asks to close.
pub type DispatchFuture = Pin<Box<dyn Future<Output = Result<ResponseFuture, CloseConnection>>>>;

/// A service asks for its connection to be closed (garbage input, unknown API key …); it has logged why.
#[derive(Debug)]
pub struct CloseConnection;

/// What handles the requests of a connection.
pub trait Service {
    /// Called once per request frame (without its length prefix), in arrival order.
    fn call(&self, frame: Bytes) -> DispatchFuture;
}

#[derive(Clone, Copy, Debug)]
pub struct ConnectionLimits {
    pub max_request_bytes: usize,
    pub max_in_flight: usize,
    /// No request is dispatched while more completed-response bytes than this wait to be sent.
    pub max_queued_response_bytes: usize,
}

/// Default of [`ConnectionLimits::max_queued_response_bytes`]: 8 MiB.
pub const DEFAULT_MAX_QUEUED_RESPONSE_BYTES: usize = 8 * 1024 * 1024;

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            max_request_bytes: crate::frame::DEFAULT_MAX_REQUEST_BYTES,
            max_in_flight: 32,
            max_queued_response_bytes: DEFAULT_MAX_QUEUED_RESPONSE_BYTES,
        }
    }
}

/// What a connection shares with others on its shard and with its idle watchdog.
#[derive(Clone)]
pub struct ConnectionShared {
    pub request_budget: Rc<RequestBudget>,
    pub activity: Rc<ConnectionActivity>,
}

impl Default for ConnectionShared {
    fn default() -> Self {
        ConnectionShared {
            request_budget: Rc::new(RequestBudget::unbounded()),
            activity: Rc::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error("closed by the request handler")]
    ClosedByService,
}

const READ_CHUNK_BYTES: usize = 64 * 1024;
/// Bounds of what one read offers the socket. Offered room must be initialized (the stream reads into a
/// slice); [`ReadBuffer`] zeroes it once and reuses it, and the offer follows what arrives: it doubles
/// while reads fill it and shrinks to the size of a read that did not.
const MIN_READ_BYTES: usize = 4 * 1024;
const MAX_READ_BYTES: usize = 256 * 1024;
/// Most queued response parts handed to one vectored write (one `sendmsg`): responses that complete
/// together leave in one system call instead of one each.
const MAX_WRITE_PARTS: usize = 64;
/// Iterations of the loop with progress before the task yields to its executor (fairness between
/// connections on one shard).
const LOOP_BUDGET: u32 = 64;

struct Slot {
    response: ResponseFuture,
    done: Option<Option<Frame>>,
    /// Request bytes reserved from the budget until the response is complete.
    reserved: usize,
}

struct Connection<'a, S, Svc> {
    stream: S,
    service: &'a Svc,
    limits: ConnectionLimits,
    shared: ConnectionShared,
    budget_wait: BudgetWait,
    /// Reserved for the frame at the front of `read_buffer` (its length prefix has arrived).
    front_reserved: Option<usize>,
    /// Reserved for the request being dispatched.
    dispatching_reserved: usize,
    /// Everything this connection holds from the budget (returned on drop).
    held: usize,
    /// Bytes of completed responses not yet written.
    queued_response_bytes: usize,
    /// A complete request, a completed response or written bytes since the activity was last updated.
    progressed: bool,
    read_buffer: ReadBuffer,
    /// Bytes the next read offers (see [`MIN_READ_BYTES`]).
    read_size: usize,
    read_closed: bool,
    dispatching: Option<DispatchFuture>,
    in_flight: VecDeque<Slot>,
    write_queue: VecDeque<Bytes>,
    unflushed: bool,
}

/// Serves one connection until the peer closes it or an error occurs. Returns `Ok` on an orderly close.
pub async fn serve_connection<S, Svc>(
    stream: S,
    service: &Svc,
    limits: ConnectionLimits,
    shared: ConnectionShared,
) -> Result<(), ConnectionError>
where
    S: AsyncRead + AsyncWrite + Unpin,
    Svc: Service,
{
    assert!(limits.max_in_flight > 0);
    let mut connection = Connection {
        stream,
        service,
        limits,
        shared,
        budget_wait: BudgetWait::default(),
        front_reserved: None,
        dispatching_reserved: 0,
        held: 0,
        queued_response_bytes: 0,
        progressed: false,
        read_buffer: ReadBuffer::with_capacity(READ_CHUNK_BYTES),
        read_size: MIN_READ_BYTES,
        read_closed: false,
        dispatching: None,
        in_flight: VecDeque::with_capacity(limits.max_in_flight),
        write_queue: VecDeque::new(),
        unflushed: false,
    };
    std::future::poll_fn(|cx| connection.poll(cx)).await
}

impl<S: AsyncRead + AsyncWrite + Unpin, Svc: Service> Connection<'_, S, Svc> {
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ConnectionError>> {
        let result = self.poll_loop(cx);
        if std::mem::take(&mut self.progressed) {
            self.shared.activity.progressed(Instant::now());
        }
        self.shared
            .activity
            .set_busy(self.dispatching.is_some() || !self.in_flight.is_empty());
        result
    }

    fn poll_loop(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ConnectionError>> {
        for _ in 0..LOOP_BUDGET {
            let mut progress = false;
            progress |= self.poll_dispatch(cx)?;
            progress |= self.poll_read(cx)?;
            progress |= self.poll_responses(cx);
            progress |= self.poll_write(cx)?;
            if self.read_closed
                && self.dispatching.is_none()
                && self.in_flight.is_empty()
                && self.write_queue.is_empty()
            {
                return Poll::Ready(Ok(()));
            }
            if !progress {
                return Poll::Pending;
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    /// Drives the request being dispatched; when none is, starts the next buffered frame.
    fn poll_dispatch(&mut self, cx: &mut Context<'_>) -> Result<bool, ConnectionError> {
        let mut progress = false;
        loop {
            if let Some(dispatch) = self.dispatching.as_mut() {
                match dispatch.as_mut().poll(cx) {
                    Poll::Pending => return Ok(progress),
                    Poll::Ready(Err(CloseConnection)) => {
                        return Err(ConnectionError::ClosedByService)
                    }
                    Poll::Ready(Ok(response)) => {
                        self.dispatching = None;
                        self.in_flight.push_back(Slot {
                            response,
                            done: None,
                            reserved: std::mem::take(&mut self.dispatching_reserved),
                        });
                        progress = true;
                    }
                }
            }
            if self.in_flight.len() >= self.limits.max_in_flight
                || self.queued_response_bytes > self.limits.max_queued_response_bytes
                || !self.reserve_front_frame(cx)?
            {
                return Ok(progress);
            }
            match self.read_buffer.take_frame(self.limits.max_request_bytes)? {
                Some(frame) => {
                    self.dispatching_reserved = self.front_reserved.take().unwrap_or(0);
                    self.dispatching = Some(self.service.call(frame));
                    self.progressed = true;
                    progress = true;
                }
                None => return Ok(progress),
            }
        }
    }

    /// True when the frame at the front of the read buffer holds its reservation; false when its length
    /// prefix has not arrived yet or the budget is spent (then this task is woken by a release).
    fn reserve_front_frame(&mut self, cx: &mut Context<'_>) -> Result<bool, ConnectionError> {
        if self.front_reserved.is_some() {
            return Ok(true);
        }
        let Some(length) = self
            .read_buffer
            .front_frame_length(self.limits.max_request_bytes)?
        else {
            return Ok(false);
        };
        let bytes = LENGTH_PREFIX_BYTES + length;
        if !self
            .shared
            .request_budget
            .try_reserve(bytes, &mut self.budget_wait, cx)
        {
            return Ok(false);
        }
        self.held += bytes;
        self.front_reserved = Some(bytes);
        Ok(true)
    }

    fn poll_read(&mut self, cx: &mut Context<'_>) -> Result<bool, ConnectionError> {
        if self.read_closed
            || self.dispatching.is_some()
            || self.in_flight.len() >= self.limits.max_in_flight
            || self.queued_response_bytes > self.limits.max_queued_response_bytes
        {
            return Ok(false);
        }
        // A frame whose length has arrived is read only once its size is reserved.
        if self.front_reserved.is_none()
            && self
                .read_buffer
                .front_frame_length(self.limits.max_request_bytes)?
                .is_some()
        {
            return Ok(false);
        }
        let want = self.read_size;
        let room = self.read_buffer.unfilled(want);
        let result = Pin::new(&mut self.stream).poll_read(cx, room);
        match result {
            Poll::Ready(Ok(0)) => {
                self.read_closed = true;
                Ok(true)
            }
            Poll::Ready(Ok(read)) => {
                self.read_buffer.commit(read);
                self.read_size = if read == want {
                    (want * 2).min(MAX_READ_BYTES)
                } else {
                    read.next_power_of_two()
                        .clamp(MIN_READ_BYTES, MAX_READ_BYTES)
                };
                Ok(true)
            }
            Poll::Ready(Err(error)) => Err(error.into()),
            Poll::Pending => Ok(false),
        }
    }

    /// Polls every unfinished response; moves finished ones at the front to the write queue.
    fn poll_responses(&mut self, cx: &mut Context<'_>) -> bool {
        let mut progress = false;
        for slot in self.in_flight.iter_mut().filter(|slot| slot.done.is_none()) {
            if let Poll::Ready(output) = slot.response.as_mut().poll(cx) {
                if let Some(frame) = &output {
                    self.queued_response_bytes += frame.len();
                }
                slot.done = Some(output);
                let reserved = std::mem::take(&mut slot.reserved);
                self.held -= reserved;
                self.shared.request_budget.release(reserved);
                self.progressed = true;
                progress = true;
            }
        }
        while self
            .in_flight
            .front()
            .is_some_and(|slot| slot.done.is_some())
        {
            let slot = self.in_flight.pop_front().expect("front exists");
            if let Some(Some(frame)) = slot.done {
                self.write_queue
                    .extend(frame.parts.into_iter().filter(|part| !part.is_empty()));
            }
            progress = true;
        }
        progress
    }

    /// Writes the queued parts, up to [`MAX_WRITE_PARTS`] per vectored write.
    fn poll_write(&mut self, cx: &mut Context<'_>) -> Result<bool, ConnectionError> {
        let mut progress = false;
        while !self.write_queue.is_empty() {
            let mut slices = [std::io::IoSlice::new(&[]); MAX_WRITE_PARTS];
            let count = self.write_queue.len().min(MAX_WRITE_PARTS);
            for (slice, part) in slices.iter_mut().zip(self.write_queue.iter()) {
                *slice = std::io::IoSlice::new(part);
            }
            match Pin::new(&mut self.stream).poll_write_vectored(cx, &slices[..count]) {
                Poll::Ready(Ok(0)) => {
                    return Err(std::io::Error::from(std::io::ErrorKind::WriteZero).into())
                }
                Poll::Ready(Ok(written)) => {
                    self.queued_response_bytes -= written;
                    let mut left = written;
                    while left > 0 {
                        let front = self
                            .write_queue
                            .front_mut()
                            .expect("written bytes were queued");
                        let taken = left.min(front.len());
                        front.advance(taken);
                        left -= taken;
                        if front.is_empty() {
                            self.write_queue.pop_front();
                        }
                    }
                    self.progressed = true;
                    self.unflushed = true;
                    progress = true;
                }
                Poll::Ready(Err(error)) => return Err(error.into()),
                Poll::Pending => return Ok(progress),
            }
        }
        if self.unflushed {
            match Pin::new(&mut self.stream).poll_flush(cx) {
                Poll::Ready(Ok(())) => self.unflushed = false,
                Poll::Ready(Err(error)) => return Err(error.into()),
                Poll::Pending => {}
            }
        }
        Ok(progress)
    }
}

impl<S, Svc> Drop for Connection<'_, S, Svc> {
    fn drop(&mut self) {
        self.shared.request_budget.release(self.held);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::{BufMut, BytesMut};
    use futures_lite::future::block_on;
    use std::cell::RefCell;
    use std::rc::Rc;

    /// An in-memory duplex: reads come from `input`, writes go to `output`.
    struct Pipe {
        input: Bytes,
        output: Rc<RefCell<Vec<u8>>>,
    }
    impl AsyncRead for Pipe {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &mut [u8],
        ) -> Poll<std::io::Result<usize>> {
            let n = buf.len().min(self.input.len()).min(3); // tiny reads: exercise partial frames
            buf[..n].copy_from_slice(&self.input[..n]);
            self.input.advance(n);
            Poll::Ready(Ok(n))
        }
    }
    impl AsyncWrite for Pipe {
        fn poll_write(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<std::io::Result<usize>> {
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

    /// Echoes each frame back; frames starting with `s` complete only after `n` polls ("slow"),
    /// frames starting with `q` get no response.
    struct Echo {
        dispatch_order: Rc<RefCell<Vec<u8>>>,
    }
    impl Service for Echo {
        fn call(&self, frame: Bytes) -> DispatchFuture {
            self.dispatch_order.borrow_mut().push(frame[1]);
            Box::pin(async move {
                let response: ResponseFuture = Box::pin(async move {
                    if frame[0] == b's' {
                        for _ in 0..5 {
                            futures_lite::future::yield_now().await;
                        }
                    }
                    if frame[0] == b'q' {
                        return None;
                    }

                    let mut out = BytesMut::new();
                    out.put_i32(frame.len() as i32);
                    out.put_slice(&frame);
                    Some(Frame::from(out.freeze()))
                });
                Ok(response)
            })
        }
    }

    #[test]
    fn responses_leave_in_request_order() {
        let mut input = BytesMut::new();
        for frame in [&b"s1"[..], b"f2", b"q3", b"s4", b"f5"] {
            input.put_i32(frame.len() as i32);
            input.put_slice(frame);
        }
        let output = Rc::new(RefCell::new(Vec::new()));
        let order = Rc::new(RefCell::new(Vec::new()));
        let pipe = Pipe {
            input: input.freeze(),
            output: output.clone(),
        };
        block_on(serve_connection(
            pipe,
            &Echo {
                dispatch_order: order.clone(),
            },
            ConnectionLimits::default(),
            ConnectionShared::default(),
        ))
        .unwrap();
        let mut expected = BytesMut::new();
        for frame in [&b"s1"[..], b"f2", b"s4", b"f5"] {
            expected.put_i32(frame.len() as i32);
            expected.put_slice(frame);
        }
        assert_eq!(&output.borrow()[..], &expected[..]);
        assert_eq!(&order.borrow()[..], b"12345");
    }

    #[test]
    fn oversized_frame_closes_the_connection() {
        let mut input = BytesMut::new();
        input.put_i32(1000);
        let pipe = Pipe {
            input: input.freeze(),
            output: Rc::new(RefCell::new(Vec::new())),
        };
        let limits = ConnectionLimits {
            max_request_bytes: 100,
            max_in_flight: 4,
            ..ConnectionLimits::default()
        };
        let result = block_on(serve_connection(
            pipe,
            &Echo {
                dispatch_order: Default::default(),
            },
            limits,
            ConnectionShared::default(),
        ));
        assert!(matches!(
            result,
            Err(ConnectionError::Frame(FrameError::TooLarge {
                size: 1000,
                max: 100
            }))
        ));
    }
}

/// Tests of the bounds (back-pressure, request budget, idle progress), with their own pipes.
#[cfg(test)]
#[path = "connection_bound_tests.rs"]
mod bound_tests;

/// Tests of the write path (vectored writes of queued responses).
#[cfg(test)]
#[path = "connection_write_tests.rs"]
mod write_tests;
