//! Runtime services: spawning, sleeping, timeouts, yielding.

use std::future::Future;
use std::time::Duration;

/// Runs `future` on the current shard, detached: it lives until it completes.
pub fn spawn<F: Future<Output = ()> + 'static>(future: F) {
    glommio::spawn_local(future).detach();
}

/// A task whose result can be awaited; dropping the handle cancels the task.
pub struct JoinHandle<T>(glommio::Task<T>);

impl<T> Future for JoinHandle<T> {
    type Output = T;
    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<T> {
        std::pin::Pin::new(&mut self.0).poll(cx)
    }
}

/// Runs `future` on the current shard and returns a handle to await its output.
pub fn spawn_joinable<T: 'static, F: Future<Output = T> + 'static>(future: F) -> JoinHandle<T> {
    JoinHandle(glommio::spawn_local(future))
}

pub async fn sleep(duration: Duration) {
    glommio::timer::sleep(duration).await;
}

/// `Some(output)` if `future` finished within `duration`, else `None` (and `future` is dropped).
pub async fn timeout<T, F: Future<Output = T>>(duration: Duration, future: F) -> Option<T> {
    futures_lite::future::or(async { Some(future.await) }, async {
        glommio::timer::sleep(duration).await;
        None
    })
    .await
}

/// Lets other tasks of this shard run if this one has used its time slice.
pub async fn yield_if_needed() {
    glommio::yield_if_needed().await;
}
