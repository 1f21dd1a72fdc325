//! Scatter/gather of a request whose items live on several shards (Produce, Fetch and its long-poll
//! wait, ListOffsets): split the items by owning shard, put the other shards' parts in their queues,
//! run this shard's part directly, and gather the answers back into request order.
//!
//! Two stages, as the handlers need them: [`scatter`] returns once every part is *dispatched* — the
//! remote parts are in their shard's queue (so a connection's later request cannot overtake them) and the
//! local part ran its dispatch stage (a produce's offsets are assigned) — and the [`Gather`] it returns
//! completes with the answers. Remote parts are sent before the local part runs, so other shards work
//! while this one does its own part.

use crate::messages::{Reply, ShardMessage};
use crate::shard_state::ShardState;
use kafka_protocol::error::ResponseError;
use shard::ShardId;
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::Poll;

/// A future on this shard.
pub type Pending<T> = Pin<Box<dyn Future<Output = T>>>;

/// A request's items by owning shard, each remembering its position in the request.
pub struct ShardSplit<I> {
    parts: BTreeMap<usize, (Vec<usize>, Vec<I>)>,
    positions: usize,
}

impl<I> Default for ShardSplit<I> {
    fn default() -> Self {
        ShardSplit {
            parts: BTreeMap::new(),
            positions: 0,
        }
    }
}

impl<I> ShardSplit<I> {
    pub fn new() -> ShardSplit<I> {
        ShardSplit::default()
    }

    /// Adds `item` for `shard` at the next position; returns that position.
    pub fn push(&mut self, shard: usize, item: I) -> usize {
        let position = self.skip();
        let (positions, items) = self.parts.entry(shard).or_default();
        positions.push(position);
        items.push(item);
        position
    }

    /// Takes the next position without an item (the caller answers it); returns that position.
    pub fn skip(&mut self) -> usize {
        self.positions += 1;
        self.positions - 1
    }
}

/// What this shard's part of a request gives once dispatched: its answer now, or a future of it.
pub struct LocalAnswer<R>(Pending<R>);

impl<R: 'static> LocalAnswer<R> {
    /// The answer is already there (a read, a lookup).
    pub fn ready(answer: R) -> LocalAnswer<R> {
        LocalAnswer(Box::pin(std::future::ready(answer)))
    }

    /// The answer comes later (the writes of a produce whose offsets are assigned; a wait).
    pub fn later(answer: impl Future<Output = R> + 'static) -> LocalAnswer<R> {
        LocalAnswer(Box::pin(answer))
    }
}

/// One dispatched part: the request positions of its items and the future of its shard's answer.
type Part<R> = (Vec<usize>, Pending<Result<R, ResponseError>>);

/// The dispatched parts of a request, each a future of its shard's answer.
pub struct Gather<R> {
    positions: usize,
    parts: Vec<Part<R>>,
}

/// Dispatches `split`: `remote(items, reply)` makes the message for another shard's part; `local(items)`
/// runs this shard's dispatch stage and gives its answer, or the future of it. A part whose shard cannot
/// be reached answers BROKER_NOT_AVAILABLE.
pub async fn scatter<I, R, Local, Dispatched>(
    state: &Rc<ShardState>,
    split: ShardSplit<I>,
    local: Local,
    mut remote: impl FnMut(Vec<I>, Reply<R>) -> ShardMessage,
) -> Gather<R>
where
    R: 'static,
    Local: FnOnce(Vec<I>) -> Dispatched,
    Dispatched: Future<Output = LocalAnswer<R>>,
{
    let mut parts: Vec<Part<R>> = Vec::with_capacity(split.parts.len());
    let mut local_part = None;
    for (shard, (positions, items)) in split.parts {
        if shard == state.id.0 {
            local_part = Some((positions, items));
            continue;
        }
        let answer: Pending<Result<R, ResponseError>> = match state
            .send(ShardId(shard), |reply| remote(items, reply))
            .await
        {
            Ok(receiver) => Box::pin(async move {
                receiver
                    .await
                    .map_err(|_| ResponseError::BrokerNotAvailable)
            }),
            Err(code) => Box::pin(std::future::ready(Err(code))),
        };
        parts.push((positions, answer));
    }
    if let Some((positions, items)) = local_part {
        let LocalAnswer(answer) = local(items).await;
        parts.push((positions, Box::pin(async move { Ok(answer.await) })));
    }
    Gather {
        positions: split.positions,
        parts,
    }
}

impl<O: 'static> Gather<Vec<O>> {
    /// Every part's answers, by position (None where the request's split skipped a position);
    /// `failed(code)` stands in for each item of a part that could not answer.
    pub async fn all(self, failed: impl Fn(ResponseError) -> O) -> Vec<Option<O>> {
        let mut answers: Vec<Option<O>> = (0..self.positions).map(|_| None).collect();
        for (positions, part) in self.parts {
            match part.await {
                Ok(outcomes) => {
                    assert_eq!(outcomes.len(), positions.len(), "one answer per item");
                    for (position, outcome) in positions.into_iter().zip(outcomes) {
                        answers[position] = Some(outcome);
                    }
                }
                Err(code) => {
                    for position in positions {
                        answers[position] = Some(failed(code));
                    }
                }
            }
        }
        answers
    }
}

impl<R: 'static> Gather<R> {
    /// Completes when the first part answers (dropping the others cancels them: a remote shard sees its
    /// reply channel close). Never completes when there are no parts.
    pub async fn first(mut self) -> Result<R, ResponseError> {
        std::future::poll_fn(|context| {
            for (_, part) in self.parts.iter_mut() {
                if let Poll::Ready(answer) = part.as_mut().poll(context) {
                    return Poll::Ready(answer);
                }
            }
            Poll::Pending
        })
        .await
    }
}
