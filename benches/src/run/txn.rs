//! Transactional producers (`--transactional-id`): each producer thread runs begin_transaction,
//! its sends, and commit_transaction whenever the open transaction holds `--txn-commit-every` records
//! or has been open `--txn-commit-ms` (whichever comes first), and commits the last one at the end.
//!
//! Invariant: at most one transaction is open per producer; every begun transaction ends in exactly
//! one commit or abort counted in the thread's [`Stats`]. Two latencies per committed transaction go
//! to the thread's recorders: the commit (waiting for its records' acknowledgements, then the
//! commit_transaction call: EndTxn) and the whole transaction (begin_transaction -> committed).

use super::clients::{ProdCtx, Stats};
use crate::cli::Workload;
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, Producer};
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

/// How long a commit or abort may take before kbench counts it as failed.
const END_TIMEOUT: Duration = Duration::from_secs(60);
/// Attempts of a commit that fails with a retriable error.
const COMMIT_ATTEMPTS: u32 = 5;

/// Serves delivery reports until every record is acknowledged (at most [`END_TIMEOUT`]). The rdkafka
/// crate's `commit_transaction` flushes first, but its flush polls in 100 ms slices that run to their
/// end, which would add up to 100 ms to every commit; short polls here leave it nothing to wait for.
fn drain(producer: &BaseProducer<ProdCtx>) {
    let start = Instant::now();
    while producer.in_flight_count() > 0 && start.elapsed() < END_TIMEOUT {
        producer.poll(Duration::from_millis(1));
    }
}

/// What a transaction step asks of the producer loop.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Next {
    Continue,
    /// A fatal transactional error (e.g. fenced): the producer cannot go on.
    Stop,
}

pub(super) struct TransactionLoop {
    commit_every_records: Option<u64>,
    commit_every: Option<Duration>,
    open_since: Option<Instant>,
    records: u64,
}

impl TransactionLoop {
    /// None when the workload is not transactional.
    pub(super) fn of(w: &Workload) -> Option<TransactionLoop> {
        w.transactional_id.as_ref()?;
        Some(TransactionLoop {
            commit_every_records: w.txn_commit_every,
            commit_every: w.txn_commit_ms.map(Duration::from_millis),
            open_since: None,
            records: 0,
        })
    }

    /// Before a send: begins a transaction unless one is open.
    pub(super) fn before_send(&mut self, producer: &BaseProducer<ProdCtx>, stats: &Stats) -> Next {
        if self.open_since.is_some() {
            return Next::Continue;
        }
        match producer.begin_transaction() {
            Ok(()) => {
                self.open_since = Some(Instant::now());
                self.records = 0;
                Next::Continue
            }
            Err(e) => {
                stats.error(format!("begin_transaction: {e}"));
                Next::Stop
            }
        }
    }

    /// After a send was queued: commits when the transaction is full or old enough.
    pub(super) fn after_send(&mut self, producer: &BaseProducer<ProdCtx>, stats: &Stats) -> Next {
        self.records += 1;
        let full = self.commit_every_records.is_some_and(|n| self.records >= n);
        let old = match (self.commit_every, self.open_since) {
            (Some(limit), Some(since)) => since.elapsed() >= limit,
            _ => false,
        };
        if full || old {
            self.end(producer, stats)
        } else {
            Next::Continue
        }
    }

    /// At the end of the run: commits the open transaction, if any.
    pub(super) fn finish(&mut self, producer: &BaseProducer<ProdCtx>, stats: &Stats) {
        if self.open_since.is_some() {
            let _ = self.end(producer, stats);
        }
    }

    /// Commits the open transaction (retrying retriable errors); aborts it when the error asks
    /// for an abort.
    fn end(&mut self, producer: &BaseProducer<ProdCtx>, stats: &Stats) -> Next {
        let Some(since) = self.open_since.take() else {
            return Next::Continue;
        };
        let mut attempt = 0;
        loop {
            attempt += 1;
            let call = Instant::now();
            drain(producer);
            let error = match producer.commit_transaction(END_TIMEOUT) {
                Ok(()) => {
                    let done = Instant::now();
                    stats.txn_commit.record_us((done - call).as_micros() as u64);
                    stats.txn_open.record_us((done - since).as_micros() as u64);
                    stats.txn_committed.fetch_add(1, Relaxed);
                    return Next::Continue;
                }
                Err(e) => e,
            };
            stats.error(format!("commit_transaction: {error}"));
            let (fatal, retriable, requires_abort) = match &error {
                KafkaError::Transaction(e) => {
                    (e.is_fatal(), e.is_retriable(), e.txn_requires_abort())
                }
                _ => (false, false, true),
            };
            if fatal {
                return Next::Stop;
            }
            if retriable && attempt < COMMIT_ATTEMPTS {
                continue;
            }
            if requires_abort || retriable {
                return match producer.abort_transaction(END_TIMEOUT) {
                    Ok(()) => {
                        stats.txn_aborted.fetch_add(1, Relaxed);
                        Next::Continue
                    }
                    Err(e) => {
                        stats.error(format!("abort_transaction: {e}"));
                        Next::Stop
                    }
                };
            }
            return Next::Stop;
        }
    }
}
