//! The transaction coordinator through the handlers on the manual clock: FindCoordinator (creating
//! `__transaction_state`), InitProducerId, AddPartitionsToTxn, AddOffsetsToTxn, EndTxn with its markers,
//! fencing of a zombie producer, DescribeTransactions and ListTransactions, the timeout abort, expiry of
//! idle ids, and replay (including a transaction found prepared, whose markers are sent on load).

use super::TestShard;
use crate::control::{control, ControlRequest, NewTopic};
use crate::txn::records::{self, TxnRecord};
use crate::txn::state::{TransactionState, Transit};
use crate::txn::TRANSACTION_STATE_TOPIC;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::add_partitions_to_txn_request::{
    AddPartitionsToTxnTopic, AddPartitionsToTxnTransaction,
};
use kafka_protocol::messages::{
    AddOffsetsToTxnRequest, AddOffsetsToTxnResponse, AddPartitionsToTxnRequest,
    AddPartitionsToTxnResponse, ApiKey, DescribeTransactionsRequest, DescribeTransactionsResponse,
    EndTxnRequest, EndTxnResponse, FindCoordinatorRequest, FindCoordinatorResponse, GroupId,
    InitProducerIdRequest, InitProducerIdResponse, ListTransactionsRequest,
    ListTransactionsResponse, ProducerId, TopicName, TransactionalId,
};
use kafka_protocol::protocol::StrBytes;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

const TOPIC: &str = "orders";
const ID: &str = "in-process-txn";
const ABORT_INTERVAL_MS: u64 = 1_000;

fn text(value: &str) -> StrBytes {
    StrBytes::from_string(value.to_string())
}

fn transactional_shard(adjust: impl FnOnce(&mut crate::config::BrokerConfig)) -> TestShard {
    let mut shard = TestShard::start(|config| {
        config.transactions.state_log_partitions = 1;
        config.transactions.abort_timed_out_interval_ms = ABORT_INTERVAL_MS;
        adjust(config);
    });
    let state = shard.state.clone();
    let request = ControlRequest::CreateTopics {
        topics: vec![NewTopic {
            name: TOPIC.to_string(),
            partitions: 2,
            configs: BTreeMap::new(),
            replication_factor: None,
            assignments: Vec::new(),
        }],
        validate_only: false,
    };
    let response = shard
        .simulation
        .block_on(async move { control(&state, request).await });
    assert!(crate::control::topic_outcomes(response, 1)[0].is_ok());
    let mut find = FindCoordinatorRequest::default();
    find.key = text(ID);
    find.key_type = 1;
    let found: FindCoordinatorResponse = shard.call(ApiKey::FindCoordinator, 3, &find);
    assert_eq!(found.error_code, 0, "transaction coordinator found");
    assert_eq!(found.node_id.0, shard.state.config.node_id);
    shard.simulation.run_until_stalled();
    assert!(shard.state.transactions.get(0).unwrap().is_loaded());
    shard
}

/// InitProducerId v4: (error, producer id, epoch).
fn init(shard: &mut TestShard, timeout_ms: i32, expected: Option<(i64, i16)>) -> (i16, i64, i16) {
    let mut request = InitProducerIdRequest::default();
    request.transactional_id = Some(TransactionalId(text(ID)));
    request.transaction_timeout_ms = timeout_ms;
    let (producer_id, epoch) = expected.unwrap_or((-1, -1));
    request.producer_id = ProducerId(producer_id);
    request.producer_epoch = epoch;
    let response: InitProducerIdResponse = shard.call(ApiKey::InitProducerId, 4, &request);
    (
        response.error_code,
        response.producer_id.0,
        response.producer_epoch,
    )
}

fn add_partitions(shard: &mut TestShard, producer: (i64, i16), partitions: &[i32]) -> Vec<i16> {
    let mut topic = AddPartitionsToTxnTopic::default();
    topic.name = TopicName(text(TOPIC));
    topic.partitions = partitions.to_vec();
    let mut request = AddPartitionsToTxnRequest::default();
    request.v3_and_below_transactional_id = TransactionalId(text(ID));
    request.v3_and_below_producer_id = ProducerId(producer.0);
    request.v3_and_below_producer_epoch = producer.1;
    request.v3_and_below_topics = vec![topic];
    let response: AddPartitionsToTxnResponse = shard.call(ApiKey::AddPartitionsToTxn, 3, &request);
    response.results_by_topic_v3_and_below[0]
        .results_by_partition
        .iter()
        .map(|result| result.partition_error_code)
        .collect()
}

fn end(shard: &mut TestShard, producer: (i64, i16), commit: bool) -> i16 {
    let mut request = EndTxnRequest::default();
    request.transactional_id = TransactionalId(text(ID));
    request.producer_id = ProducerId(producer.0);
    request.producer_epoch = producer.1;
    request.committed = commit;
    let response: EndTxnResponse = shard.call(ApiKey::EndTxn, 3, &request);
    response.error_code
}

fn describe(shard: &mut TestShard) -> (i16, String, i16, usize) {
    let mut request = DescribeTransactionsRequest::default();
    request.transactional_ids = vec![TransactionalId(text(ID))];
    let response: DescribeTransactionsResponse =
        shard.call(ApiKey::DescribeTransactions, 0, &request);
    let state = &response.transaction_states[0];
    (
        state.error_code,
        state.transaction_state.to_string(),
        state.producer_epoch,
        state
            .topics
            .iter()
            .map(|topic| topic.partitions.len())
            .sum(),
    )
}

/// The markers in a partition of `TOPIC`: (commit, coordinator epoch, producer id, epoch).
fn markers(shard: &mut TestShard, partition: i32) -> Vec<(bool, i32, i64, i16)> {
    let partition = shard.state.partitions.get(TOPIC, partition).unwrap();
    let end = partition.high_watermark();
    let joined = shard
        .simulation
        .block_on(async move {
            partition
                .log
                .read(storage::types::Offset(0), 1 << 20, end, true)
                .await
        })
        .unwrap();
    storage::batch::iter_batches(&joined)
        .filter_map(|(position, header)| {
            let batch = &joined[position..position + header.total_size()];
            storage::txn::parse_marker(batch).map(|(commit, coordinator_epoch)| {
                (
                    commit,
                    coordinator_epoch,
                    header.producer_id,
                    header.producer_epoch,
                )
            })
        })
        .collect()
}

#[test]
fn a_transaction_commits_with_markers_on_each_partition() {
    let mut shard = transactional_shard(|_| {});
    let (error, producer_id, epoch) = init(&mut shard, 60_000, None);
    assert_eq!((error, epoch), (0, 0));
    assert_eq!(
        add_partitions(&mut shard, (producer_id, epoch), &[0, 1]),
        vec![0, 0]
    );
    // AddOffsetsToTxn adds the group's offsets partition.
    let mut offsets = AddOffsetsToTxnRequest::default();
    offsets.transactional_id = TransactionalId(text(ID));
    offsets.producer_id = ProducerId(producer_id);
    offsets.producer_epoch = epoch;
    offsets.group_id = GroupId(text("consumers"));
    let added: AddOffsetsToTxnResponse = shard.call(ApiKey::AddOffsetsToTxn, 3, &offsets);
    assert_eq!(added.error_code, 0);
    assert_eq!(describe(&mut shard), (0, "Ongoing".into(), 0, 3));
    assert_eq!(end(&mut shard, (producer_id, epoch), true), 0);
    shard.simulation.run_until_stalled();
    for partition in [0, 1] {
        assert_eq!(
            markers(&mut shard, partition),
            vec![(true, 0, producer_id, epoch)]
        );
    }
    assert_eq!(describe(&mut shard).1, "CompleteCommit");
    // A retried EndTxn of the completed commit is fine; an abort of it is not.
    assert_eq!(end(&mut shard, (producer_id, epoch), true), 0);
    assert_eq!(
        end(&mut shard, (producer_id, epoch), false),
        ResponseError::InvalidTxnState.code()
    );
    // Unknown partitions are refused without asking the coordinator.
    let unknown = add_partitions(&mut shard, (producer_id, epoch), &[0, 9]);
    assert_eq!(
        unknown,
        vec![
            ResponseError::OperationNotAttempted.code(),
            ResponseError::UnknownTopicOrPartition.code()
        ]
    );
}

#[test]
fn a_second_producer_fences_the_first_and_aborts_its_transaction() {
    let mut shard = transactional_shard(|_| {});
    let (_, producer_id, first_epoch) = init(&mut shard, 60_000, None);
    assert_eq!(
        add_partitions(&mut shard, (producer_id, first_epoch), &[0]),
        vec![0]
    );
    // The new producer's InitProducerId aborts the open transaction and is told to retry.
    let (error, _, _) = init(&mut shard, 60_000, None);
    assert_eq!(error, ResponseError::ConcurrentTransactions.code());
    shard.simulation.run_until_stalled();
    assert_eq!(markers(&mut shard, 0), vec![(false, 0, producer_id, 1)]);
    let (error, same_id, second_epoch) = init(&mut shard, 60_000, None);
    assert_eq!((error, same_id, second_epoch), (0, producer_id, 2));
    // The zombie is fenced everywhere.
    assert_eq!(
        end(&mut shard, (producer_id, first_epoch), true),
        ResponseError::ProducerFenced.code()
    );
    assert_eq!(
        add_partitions(&mut shard, (producer_id, first_epoch), &[1]),
        vec![ResponseError::ProducerFenced.code()]
    );
    assert_eq!(
        end(&mut shard, (producer_id + 1, second_epoch), true),
        ResponseError::InvalidProducerIdMapping.code()
    );
    // KIP-360: a producer naming a stale epoch of the current id is fenced.
    let (error, _, _) = init(&mut shard, 60_000, Some((producer_id, first_epoch)));
    assert_eq!(error, ResponseError::ProducerFenced.code());
    // And a bad timeout is refused.
    let (error, _, _) = init(&mut shard, 900_001, None);
    assert_eq!(error, ResponseError::InvalidTransactionTimeout.code());
}

#[test]
fn a_transaction_past_its_timeout_is_aborted_and_its_producer_fenced() {
    let mut shard = transactional_shard(|_| {});
    let (_, producer_id, epoch) = init(&mut shard, 5_000, None);
    assert_eq!(
        add_partitions(&mut shard, (producer_id, epoch), &[1]),
        vec![0]
    );
    shard.simulation.advance(Duration::from_millis(4_000));
    assert_eq!(describe(&mut shard).1, "Ongoing", "not timed out yet");
    shard
        .simulation
        .advance(Duration::from_millis(2_000 + ABORT_INTERVAL_MS));
    assert_eq!(describe(&mut shard), (0, "CompleteAbort".into(), 1, 0));
    assert_eq!(markers(&mut shard, 1), vec![(false, 0, producer_id, 1)]);
    assert_eq!(
        end(&mut shard, (producer_id, epoch), true),
        ResponseError::ProducerFenced.code()
    );
    // ListTransactions sees it, by state and by producer id.
    let mut list = ListTransactionsRequest::default();
    list.state_filters = vec![text("CompleteAbort"), text("NoSuchState")];
    list.producer_id_filters = vec![ProducerId(producer_id)];
    list.duration_filter = -1;
    let listed: ListTransactionsResponse = shard.call(ApiKey::ListTransactions, 1, &list);
    assert_eq!(listed.error_code, 0);
    assert_eq!(listed.unknown_state_filters, vec![text("NoSuchState")]);
    assert_eq!(listed.transaction_states.len(), 1);
    list.state_filters = vec![text("Ongoing")];
    let listed: ListTransactionsResponse = shard.call(ApiKey::ListTransactions, 1, &list);
    assert!(listed.transaction_states.is_empty());
}

#[test]
fn an_idle_transactional_id_expires_with_a_tombstone() {
    let mut shard = transactional_shard(|config| {
        config.transactions.id_expiration_ms = 60_000;
        config.transactions.remove_expired_interval_ms = 10_000;
    });
    init(&mut shard, 10_000, None);
    shard.simulation.advance(Duration::from_millis(50_000));
    assert_eq!(describe(&mut shard).0, 0);
    shard.simulation.advance(Duration::from_millis(20_000));
    assert_eq!(
        describe(&mut shard).0,
        ResponseError::TransactionalIdNotFound.code()
    );
    let written = state_records(&mut shard);
    assert_eq!(
        written.last().unwrap(),
        &TxnRecord {
            transactional_id: ID.into(),
            value: None
        }
    );
    // A reload keeps it gone; a new InitProducerId starts over with a new producer id.
    reload(&mut shard);
    assert_eq!(
        describe(&mut shard).0,
        ResponseError::TransactionalIdNotFound.code()
    );
    assert_eq!(init(&mut shard, 10_000, None).2, 0);
}

fn state_records(shard: &mut TestShard) -> Vec<TxnRecord> {
    let partition = shard
        .state
        .partitions
        .get(TRANSACTION_STATE_TOPIC, 0)
        .unwrap();
    let end = partition.high_watermark();
    let joined = shard
        .simulation
        .block_on(async move {
            partition
                .log
                .read(storage::types::Offset(0), 1 << 20, end, true)
                .await
        })
        .unwrap();
    records::decode_batch(joined).unwrap()
}

/// The coordinator partition closes and opens again (a restart of the coordinator): it replays.
fn reload(shard: &mut TestShard) {
    let partition = shard
        .state
        .partitions
        .get(TRANSACTION_STATE_TOPIC, 0)
        .unwrap();
    shard.state.transactions.partition_closed(0);
    shard.state.transactions.partition_opened(partition);
    shard.simulation.run_until_stalled();
}

#[test]
fn replay_restores_ids_and_completes_a_prepared_commit() {
    let mut shard = transactional_shard(|_| {});
    let (_, producer_id, epoch) = init(&mut shard, 60_000, None);
    assert_eq!(
        add_partitions(&mut shard, (producer_id, epoch), &[0]),
        vec![0]
    );
    reload(&mut shard);
    assert_eq!(describe(&mut shard), (0, "Ongoing".into(), 0, 1));
    // The coordinator stopped after writing PrepareCommit: the records say so.
    let partition = shard
        .state
        .partitions
        .get(TRANSACTION_STATE_TOPIC, 0)
        .unwrap();
    let now_ms = shard.simulation.wall_clock_ms();
    let prepared = TxnRecord {
        transactional_id: ID.into(),
        value: Some(Transit {
            producer_id,
            last_producer_id: -1,
            producer_epoch: epoch,
            last_producer_epoch: -1,
            timeout_ms: 60_000,
            state: TransactionState::PrepareCommit,
            partitions: BTreeSet::from([(TOPIC.to_string(), 0), (TOPIC.to_string(), 1)]),
            start_timestamp_ms: now_ms,
            last_update_timestamp_ms: now_ms,
        }),
    };
    let batch = records::encode_batch(&[prepared], now_ms);
    shard
        .simulation
        .block_on(async move { partition.append(batch).await })
        .unwrap();
    reload(&mut shard);
    for partition in [0, 1] {
        assert_eq!(
            markers(&mut shard, partition),
            vec![(true, 0, producer_id, epoch)]
        );
    }
    assert_eq!(describe(&mut shard), (0, "CompleteCommit".into(), 0, 0));
    assert_eq!(
        state_records(&mut shard)
            .last()
            .unwrap()
            .value
            .as_ref()
            .unwrap()
            .state,
        TransactionState::CompleteCommit
    );
    // The id goes on with the next epoch.
    assert_eq!(init(&mut shard, 60_000, None), (0, producer_id, 1));
}

#[test]
fn verify_only_batches_answer_each_partitions_standing() {
    let mut shard = transactional_shard(|_| {});
    let (_, producer_id, epoch) = init(&mut shard, 60_000, None);
    assert_eq!(
        add_partitions(&mut shard, (producer_id, epoch), &[0]),
        vec![0]
    );
    let mut topic = AddPartitionsToTxnTopic::default();
    topic.name = TopicName(text(TOPIC));
    topic.partitions = vec![0, 1];
    let mut transaction = AddPartitionsToTxnTransaction::default();
    transaction.transactional_id = TransactionalId(text(ID));
    transaction.producer_id = ProducerId(producer_id);
    transaction.producer_epoch = epoch;
    transaction.verify_only = true;
    transaction.topics = vec![topic];
    let mut request = AddPartitionsToTxnRequest::default();
    request.transactions = vec![transaction];
    let response: AddPartitionsToTxnResponse = shard.call(ApiKey::AddPartitionsToTxn, 4, &request);
    let errors: Vec<i16> = response.results_by_transaction[0].topic_results[0]
        .results_by_partition
        .iter()
        .map(|result| result.partition_error_code)
        .collect();
    assert_eq!(errors, vec![0, ResponseError::InvalidTxnState.code()]);
    assert_eq!(describe(&mut shard).3, 1, "verification adds nothing");
}

/// A transactional batch of one record from `producer` (sequence `sequence`).
fn transactional_batch(producer: (i64, i16), sequence: i32) -> bytes::Bytes {
    use kafka_protocol::records::{
        Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };
    let record = Record {
        transactional: true,
        control: false,
        delete_horizon: false,
        partition_leader_epoch: -1,
        producer_id: producer.0,
        producer_epoch: producer.1,
        timestamp_type: TimestampType::Creation,
        offset: 0,
        sequence,
        timestamp: 0,
        key: None,
        value: Some(bytes::Bytes::from_static(b"value")),
        headers: Default::default(),
    };
    let mut buf = bytes::BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression: Compression::None,
    };
    RecordBatchEncoder::encode(&mut buf, std::iter::once(&record), &options).unwrap();
    buf.freeze()
}

fn produce(shard: &mut TestShard, partition: i32, records: bytes::Bytes) -> i16 {
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::messages::{ProduceRequest, ProduceResponse};
    let mut data = PartitionProduceData::default();
    data.index = partition;
    data.records = Some(records);
    let mut topic = TopicProduceData::default();
    topic.name = TopicName(text(TOPIC));
    topic.partition_data = vec![data];
    let mut request = ProduceRequest::default();
    request.transactional_id = Some(TransactionalId(text(ID)));
    request.acks = -1;
    request.timeout_ms = 30_000;
    request.topic_data = vec![topic];
    let response: ProduceResponse = shard.call(ApiKey::Produce, 9, &request);
    response.responses[0].partition_responses[0].error_code
}

#[test]
fn a_transactional_batch_to_a_partition_not_in_the_transaction_is_refused() {
    let mut shard = transactional_shard(|_| {});
    let (_, producer_id, epoch) = init(&mut shard, 60_000, None);
    assert_eq!(
        add_partitions(&mut shard, (producer_id, epoch), &[0]),
        vec![0]
    );
    assert_eq!(
        produce(&mut shard, 0, transactional_batch((producer_id, epoch), 0)),
        0
    );
    assert_eq!(
        produce(&mut shard, 1, transactional_batch((producer_id, epoch), 0)),
        ResponseError::InvalidTxnState.code(),
        "partition 1 was never added"
    );
    // After the commit a late batch of the ended transaction is refused too. (Partition 1: partition
    // 0's producer state says its transaction is open until the storage layer ends transactions on
    // markers; then a late batch there is verified, and refused, the same way.)
    assert_eq!(end(&mut shard, (producer_id, epoch), true), 0);
    shard.simulation.run_until_stalled();
    assert_eq!(
        produce(&mut shard, 1, transactional_batch((producer_id, epoch), 0)),
        ResponseError::InvalidTxnState.code()
    );
    assert_eq!(
        produce(&mut shard, 0, transactional_batch((producer_id + 7, 0), 0)),
        ResponseError::InvalidProducerIdMapping.code(),
        "a producer id the transactional id does not have"
    );
}
