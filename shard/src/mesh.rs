//! Cross-shard messaging over bounded channels.
//!
//! Every pair of shards has one bounded single-producer single-consumer channel in each direction (glommio's
//! full channel mesh). A send waits while the peer's channel is full: back-pressure, never unbounded growth.
//! Messages between the same two shards arrive in the order they were sent.

use crate::runtime::ShardId;

/// Depth of each shard-to-shard channel.
pub const CHANNEL_DEPTH: usize = 1024;

/// Built once before the shards start; each shard then calls [`MeshBuilder::join`].
pub struct MeshBuilder<M: Send + 'static> {
    inner: glommio::channels::channel_mesh::MeshBuilder<M, glommio::channels::channel_mesh::Full>,
}

impl<M: Send + 'static> Clone for MeshBuilder<M> {
    fn clone(&self) -> Self {
        MeshBuilder {
            inner: self.inner.clone(),
        }
    }
}

// SAFETY: the glommio builder is Send; it only holds shared set-up state.
unsafe impl<M: Send + 'static> Send for MeshBuilder<M> {}

impl<M: Send + 'static> MeshBuilder<M> {
    pub fn new(shards: usize) -> Self {
        MeshBuilder {
            inner: glommio::channels::channel_mesh::MeshBuilder::full(shards, CHANNEL_DEPTH),
        }
    }

    /// Joins the mesh from the calling shard; completes once every shard has joined.
    /// Returns the sending side and one receiver per peer.
    pub async fn join(self) -> (Mesh<M>, Vec<(ShardId, Receiver<M>)>) {
        let (senders, mut receivers) = self.inner.join().await.expect("joining the shard mesh");
        let me = ShardId(senders.peer_id());
        let streams = receivers
            .streams()
            .into_iter()
            .map(|(peer, receiver)| (ShardId(peer), Receiver { inner: receiver }))
            .collect();
        (Mesh { me, senders }, streams)
    }
}

/// The sending side of the mesh, held by one shard.
pub struct Mesh<M: Send + 'static> {
    me: ShardId,
    senders: glommio::channels::channel_mesh::Senders<M>,
}

impl<M: Send + 'static> Mesh<M> {
    pub fn me(&self) -> ShardId {
        self.me
    }

    pub fn shard_count(&self) -> usize {
        self.senders.nr_consumers()
    }

    /// Sends `message` to shard `to` (never to this shard itself), waiting while its channel is full.
    /// Returns the message back if the peer has gone away (shutdown).
    pub async fn send(&self, to: ShardId, message: M) -> Result<(), M> {
        assert_ne!(
            to, self.me,
            "a shard does not send to itself through the mesh"
        );
        self.senders
            .send_to(to.0, message)
            .await
            .map_err(|error| match error {
                glommio::GlommioError::Closed(glommio::ResourceType::Channel(message)) => message,
                other => panic!("cross-shard send failed: {other}"),
            })
    }
}

/// Messages from one peer, in the order it sent them.
pub struct Receiver<M: Send + 'static> {
    inner: glommio::channels::shared_channel::ConnectedReceiver<M>,
}

impl<M: Send + 'static> Receiver<M> {
    /// The next message, or `None` once the peer has closed its side.
    pub async fn recv(&self) -> Option<M> {
        self.inner.recv().await
    }
}
