// kafkajs transactional producer against the broker: InitProducerId (on the first transaction()), a committed transaction across
// the partitions of two topics with sendOffsets, an aborted one with sendOffsets, and a last committed
// one. Prints one JSON line of what it did for tests/integration/test_kafkajs_transactions.py, which
// checks the result with confluent-kafka read_committed / read_uncommitted consumers and the group's
// committed offsets; exits non-zero on any error or timeout.
const { Kafka, logLevel } = require('kafkajs');

const [broker, topic, inputTopic, group, transactionalId] = process.argv.slice(2);

const values = (prefix, count) => Array.from({ length: count }, (_, i) => `${prefix}-${i}`);

(async () => {
  const timer = setTimeout(() => { console.error('timed out'); process.exit(2); }, 90000);
  const kafka = new Kafka({
    clientId: 'kafkajs-txn-itest', brokers: [broker], logLevel: logLevel.WARN,
    retry: { retries: 6, initialRetryTime: 100 },
  });
  const admin = kafka.admin();
  await admin.connect();
  await admin.createTopics({ topics: [{ topic, numPartitions: 2 }, { topic: inputTopic, numPartitions: 2 }] });
  await admin.disconnect();

  const producer = kafka.producer({
    transactionalId, idempotent: true, maxInFlightRequests: 1, transactionTimeout: 10000,
  });
  await producer.connect();
  const sendTo = async (transaction, prefix) => {
    await transaction.send({ topic, messages: values(`${prefix}-p0`, 3).map((value) => ({ value, partition: 0 })) });
    await transaction.send({ topic, messages: values(`${prefix}-p1`, 2).map((value) => ({ value, partition: 1 })) });
    await transaction.send({ topic: inputTopic, messages: [{ value: `${prefix}-in`, partition: 0 }] });
  };
  const offsets = (p0, p1) => ({
    consumerGroupId: group,
    topics: [{ topic: inputTopic, partitions: [{ partition: 0, offset: String(p0) }, { partition: 1, offset: String(p1) }] }],
  });

  const first = await producer.transaction();
  await sendTo(first, 'first');
  await first.sendOffsets(offsets(5, 3));
  await first.commit();

  const aborted = await producer.transaction();
  await sendTo(aborted, 'aborted');
  await aborted.sendOffsets(offsets(99, 99));
  await aborted.abort();

  const second = await producer.transaction();
  await sendTo(second, 'second');
  await second.commit();
  await producer.disconnect();
  clearTimeout(timer);
  console.log(JSON.stringify({ committed: ['first', 'second'], aborted: ['aborted'], offsets: { 0: 5, 1: 3 } }));
})().catch((error) => { console.error(error); process.exit(1); });
