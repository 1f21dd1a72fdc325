// kafkajs (its own protocol implementation, not librdkafka) against the broker: create a topic, produce
// keyed messages, consume them in a consumer group, commit on leaving, resume from the committed offsets
// with a second consumer, and read the group back through the admin API. Prints one JSON line of
// results for tests/integration/test_kafkajs.py to check; exits non-zero on any error or timeout.
const { Kafka, logLevel } = require('kafkajs');

const [broker, topic, group] = process.argv.slice(2);
const FIRST = 300;
const SECOND = 50;

async function consumeUntil(kafka, wanted, label) {
  const consumer = kafka.consumer({ groupId: group, sessionTimeout: 10000, heartbeatInterval: 500 });
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  const seen = [];
  const started = Date.now();
  let joinedAfterMs = null;
  consumer.on(consumer.events.GROUP_JOIN, () => { joinedAfterMs = Date.now() - started; });
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${label}: timed out with ${seen.length}/${wanted}`)), 30000);
    consumer.run({
      eachMessage: async ({ message }) => {
        seen.push(message.value.toString());
        if (seen.length >= wanted) { clearTimeout(timer); resolve(); }
      },
    });
  });
  // Let a few more arrive if the broker wrongly redelivers, then leave (commits first).
  await new Promise((resolve) => setTimeout(resolve, 500));
  await consumer.disconnect();
  return { seen, joinedAfterMs };
}

(async () => {
  const kafka = new Kafka({ clientId: 'kafkajs-itest', brokers: [broker], logLevel: logLevel.WARN, retry: { retries: 10 } });
  const admin = kafka.admin();
  await admin.connect();
  await admin.createTopics({ topics: [{ topic, numPartitions: 3 }] });
  const producer = kafka.producer();
  await producer.connect();
  await producer.send({ topic, messages: Array.from({ length: FIRST }, (_, i) => ({ key: `k${i}`, value: `a${i}` })) });

  const first = await consumeUntil(kafka, FIRST, 'first consumer');
  await producer.send({ topic, messages: Array.from({ length: SECOND }, (_, i) => ({ key: `k${i}`, value: `b${i}` })) });
  await producer.disconnect();
  const second = await consumeUntil(kafka, SECOND, 'second consumer');

  const offsets = await admin.fetchOffsets({ groupId: group, topics: [topic] });
  const listed = await admin.listGroups();
  const described = await admin.describeGroups([group]);
  await admin.disconnect();
  console.log(JSON.stringify({
    first: first.seen, second: second.seen, firstJoinedAfterMs: first.joinedAfterMs,
    committed: offsets[0].partitions.map((p) => Number(p.offset)),
    listed: listed.groups.filter((g) => g.groupId === group),
    state: described.groups[0].state, protocolType: described.groups[0].protocolType,
  }));
})().catch((error) => { console.error(error); process.exit(1); });
