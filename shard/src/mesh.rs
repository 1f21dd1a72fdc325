//! Cross-shard messaging over bounded channels, and the one-shot replies that answer them.
//!
//! Every ordered pair of shards has one bounded channel (`async-channel`, a lock-free MPMC queue used here
//! single-consumer). A send waits while the peer's channel is full: back-pressure, never unbounded growth.
//! Messages between the same two shards arrive in the order they were sent. All channels and every shard's
//! [`Doorbell`] are made before any shard starts, so joining the mesh is a lookup with nothing to wait for.
//!
//! Every wait on another thread (a receive, a send into a full channel, a reply, a reply's cancellation) is
//! polled through [`OnShard`], so the other thread's wake-up reaches this shard through its doorbell and
//! cannot be lost (glommio's own cross-thread notification can lose it; see `doorbell.rs`).
//!
//! Sending never panics: a shard index outside the mesh, or a peer that has shut down, returns the message
//! with a [`SendError`].

use crate::doorbell::{Doorbell, OnShard};
use crate::runtime::ShardId;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

/// Default depth of each shard-to-shard channel.
pub const CHANNEL_DEPTH: usize = 1024;

struct Shared<M> {
    shards: usize,
    /// `channels[from * shards + to]`; the diagonal is unused.
    channels: Vec<(async_channel::Sender<M>, async_channel::Receiver<M>)>,
    doorbells: Vec<Arc<Doorbell>>,
}

/// Built once before the shards start; each shard then calls [`MeshBuilder::join`] with its id.
pub struct MeshBuilder<M: Send + 'static> {
    shared: Arc<Shared<M>>,
}

impl<M: Send + 'static> Clone for MeshBuilder<M> {
    fn clone(&self) -> Self {
        MeshBuilder {
            shared: self.shared.clone(),
        }
    }
}

impl<M: Send + 'static> MeshBuilder<M> {
    pub fn new(shards: usize) -> std::io::Result<Self> {
        Self::with_depth(shards, CHANNEL_DEPTH)
    }

    /// A mesh whose channels hold `depth` messages each (tests use tiny ones).
    pub fn with_depth(shards: usize, depth: usize) -> std::io::Result<Self> {
        assert!(shards > 0 && depth > 0);
        let channels = (0..shards * shards)
            .map(|_| async_channel::bounded(depth))
            .collect();
        let doorbells = (0..shards)
            .map(|_| Doorbell::new())
            .collect::<std::io::Result<_>>()?;
        Ok(MeshBuilder {
            shared: Arc::new(Shared {
                shards,
                channels,
                doorbells,
            }),
        })
    }

    /// Joins the mesh as shard `me`, from that shard's executor: starts listening on its doorbell and
    /// returns the sending side and one receiver per peer.
    ///
    /// Inside a [`crate::simulation::Simulation`] (one thread, no glommio) the doorbell is not listened
    /// to: the simulation's wakers are safe to call from any thread, so waits need no doorbell, and
    /// [`OnShard`] passes them through on a thread without one.
    pub fn join(self, me: ShardId) -> (Mesh<M>, Vec<(ShardId, Receiver<M>)>) {
        assert!(me.0 < self.shared.shards, "{me} is outside the mesh");
        if !crate::simulation::is_active() {
            crate::task::spawn(self.shared.doorbells[me.0].clone().listen());
        }
        let shards = self.shared.shards;
        let receivers = (0..shards)
            .filter(|&peer| peer != me.0)
            .map(|peer| {
                let receiver = self.shared.channels[peer * shards + me.0].1.clone();
                (ShardId(peer), Receiver { inner: receiver })
            })
            .collect();
        (
            Mesh {
                me,
                shared: self.shared,
            },
            receivers,
        )
    }
}

/// Why a message could not be sent; the message comes back with it.
#[derive(Debug)]
pub enum SendError<M> {
    /// No such shard in this mesh.
    NoSuchShard(ShardId, M),
    /// A shard does not send to itself through the mesh.
    ToSelf(M),
    /// The peer has shut down.
    Closed(M),
}

/// The sending side of the mesh, held by one shard.
pub struct Mesh<M: Send + 'static> {
    me: ShardId,
    shared: Arc<Shared<M>>,
}

impl<M: Send + 'static> Mesh<M> {
    pub fn me(&self) -> ShardId {
        self.me
    }

    pub fn shard_count(&self) -> usize {
        self.shared.shards
    }

    /// Sends `message` to shard `to`, waiting while its channel is full.
    pub async fn send(&self, to: ShardId, message: M) -> Result<(), SendError<M>> {
        if to.0 >= self.shared.shards {
            return Err(SendError::NoSuchShard(to, message));
        }
        if to == self.me {
            return Err(SendError::ToSelf(message));
        }
        let sender = &self.shared.channels[self.me.0 * self.shared.shards + to.0].0;
        OnShard::new(sender.send(message))
            .await
            .map_err(|error| SendError::Closed(error.into_inner()))
    }

    /// Stops this shard's part of the mesh when it shuts down: its incoming channels are closed (peers'
    /// sends fail with [`SendError::Closed`]) and what they still hold is dropped (so peers waiting for a
    /// reply see [`Canceled`] instead of waiting forever); its outgoing channels are closed too (peers'
    /// receivers end once drained).
    pub fn shut_down(&self) {
        let shards = self.shared.shards;
        for peer in (0..shards).filter(|&peer| peer != self.me.0) {
            let (incoming_sender, incoming) = &self.shared.channels[peer * shards + self.me.0];
            incoming_sender.close();
            while let Ok(message) = incoming.try_recv() {
                drop(message);
            }
            self.shared.channels[self.me.0 * shards + peer].0.close();
        }
    }
}

/// Messages from one peer, in the order it sent them.
pub struct Receiver<M: Send + 'static> {
    inner: async_channel::Receiver<M>,
}

impl<M: Send + 'static> Receiver<M> {
    /// The next message, or `None` once the peer has closed its side and everything sent was received.
    pub async fn recv(&self) -> Option<M> {
        OnShard::new(self.inner.recv()).await.ok()
    }
}

/// The peer dropped the reply without answering (it shut down, or the request was abandoned).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the reply was dropped unanswered")]
pub struct Canceled;

/// A one-shot reply channel whose receiver can wait on another shard's thread (see the module doc).
pub fn reply_channel<T>() -> (ReplySender<T>, ReplyReceiver<T>) {
    let (sender, receiver) = futures_channel::oneshot::channel();
    (
        ReplySender { inner: sender },
        ReplyReceiver {
            inner: OnShard::new(receiver),
        },
    )
}

/// Answers one request; travels inside the request to the shard that answers it.
pub struct ReplySender<T> {
    inner: futures_channel::oneshot::Sender<T>,
}

impl<T> ReplySender<T> {
    /// Delivers the answer; gives it back if the asker no longer waits.
    pub fn send(self, value: T) -> Result<(), T> {
        self.inner.send(value)
    }

    /// Completes when the asker stops waiting (drops its receiver).
    pub async fn cancellation(&mut self) {
        OnShard::new(self.inner.cancellation()).await
    }
}

/// Waits for the answer.
pub struct ReplyReceiver<T> {
    inner: OnShard<futures_channel::oneshot::Receiver<T>>,
}

impl<T> Future for ReplyReceiver<T> {
    type Output = Result<T, Canceled>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // `OnShard<oneshot::Receiver>` is Unpin: both parts are.
        Pin::new(&mut self.inner)
            .poll(cx)
            .map(|result| result.map_err(|_| Canceled))
    }
}
