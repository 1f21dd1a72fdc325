//! Write-path tests of the connection loop (a child module of `connection`): responses that complete
//! together leave in one vectored write, and short writes that end inside a part keep the bytes whole
//! and in order.

use super::*;
use bytes::{BufMut, BytesMut};
use futures_lite::future::block_on;
use std::cell::RefCell;

/// Answers every frame with itself.
struct Echo;
impl Service for Echo {
    fn call(&self, frame: Bytes) -> DispatchFuture {
        let response: ResponseFuture = Box::pin(async move {
            let mut out = BytesMut::new();
            out.put_i32(frame.len() as i32);
            out.put_slice(&frame);
            Some(Frame::from(out.freeze()))
        });
        Box::pin(std::future::ready(Ok(response)))
    }
}

/// Takes at most `limit` bytes per vectored write, across buffer boundaries, and counts the writes.
struct VectoredPipe {
    input: Bytes,
    output: Rc<RefCell<Vec<u8>>>,
    writes: Rc<RefCell<usize>>,
    limit: usize,
}
impl AsyncRead for VectoredPipe {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<std::io::Result<usize>> {
        let n = buf.len().min(self.input.len());
        buf[..n].copy_from_slice(&self.input[..n]);
        self.input.advance(n);
        Poll::Ready(Ok(n))
    }
}
impl AsyncWrite for VectoredPipe {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.poll_write_vectored(cx, &[std::io::IoSlice::new(buf)])
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        *self.writes.borrow_mut() += 1;
        let mut output = self.output.borrow_mut();
        let mut left = self.limit;
        for buf in bufs {
            let n = buf.len().min(left);
            output.extend_from_slice(&buf[..n]);
            left -= n;
        }
        Poll::Ready(Ok(self.limit - left))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[test]
fn responses_completed_together_leave_in_one_vectored_write() {
    let frames: Vec<Vec<u8>> = (0..10u8).map(|i| vec![b'f', b'0' + i, i]).collect();
    let mut input = BytesMut::new();
    let mut expected = BytesMut::new();
    for frame in &frames {
        input.put_i32(frame.len() as i32);
        input.put_slice(frame);
        expected.put_i32(frame.len() as i32);
        expected.put_slice(frame);
    }
    for limit in [usize::MAX, 5] {
        let output = Rc::new(RefCell::new(Vec::new()));
        let writes = Rc::new(RefCell::new(0));
        let pipe = VectoredPipe {
            input: input.clone().freeze(),
            output: output.clone(),
            writes: writes.clone(),
            limit,
        };
        block_on(serve_connection(
            pipe,
            &Echo,
            ConnectionLimits::default(),
            ConnectionShared::default(),
        ))
        .unwrap();
        // Short writes split parts anywhere; the bytes still leave whole and in order.
        assert_eq!(&output.borrow()[..], &expected[..], "limit {limit}");
        if limit == usize::MAX {
            // All ten requests arrive in one read; their ten responses leave in one write.
            assert_eq!(*writes.borrow(), 1);
        }
    }
}
