/** TaskConsumer against the real broker: batches in, offsets out, readiness, stop. */
import type { KafkaMessage } from "kafkajs";
import { assert, assertEquals } from "../helpers/assert.ts";
import { createTopic, kafkaClients, testKafka, unique } from "../helpers/harness.ts";
import { TaskConsumer } from "../../runner/intake/consumer.ts";
import type { TopicPartition } from "../../runner/intake/topic_partition.ts";

Deno.test("the consumer feeds batches, commits with metadata, reads them back, and stops once", async () => {
  const topic = unique("consumer");
  await using clients = await kafkaClients();
  await createTopic(clients.admin, topic, 1);
  await clients.producer.send({ topic, messages: [{ value: "a" }, { value: "b" }] });

  const kafka = testKafka();
  const admin = kafka.admin();
  await admin.connect();
  const consumer = new TaskConsumer(kafka, {
    topic,
    groupId: topic,
    admin,
    sessionTimeoutMs: 6000,
  });
  assertEquals(consumer.readiness(), "not connected to Kafka");
  const seen: string[] = [];
  const assigned: TopicPartition[][] = [];
  const got = Promise.withResolvers<void>();
  await consumer.start({
    ingest(tp, messages: KafkaMessage[], control) {
      for (const m of messages) {
        seen.push(`${tp.topic === topic}/${tp.partition}@${m.offset}=${m.value}`);
        control.resolveOffset(m.offset);
      }
      if (seen.length === 2) got.resolve();
      return Promise.resolve();
    },
    retain: (tps) => assigned.push([...tps]),
  });
  await got.promise;
  assertEquals(seen, ["true/0@0=a", "true/0@1=b"]);
  assertEquals(assigned.at(-1), [{ topic, partition: 0 }]);
  assertEquals(consumer.readiness(), null, "connected and holding a partition");

  const tp = { topic, partition: 0 };
  assertEquals(await consumer.committed(tp), { offset: "-1", metadata: null });
  await consumer.commit(tp, { offset: "2", metadata: '{"v":1,"s":[[-1,1]],"f":[]}' });
  assertEquals(await consumer.committed(tp), {
    offset: "2",
    metadata: '{"v":1,"s":[[-1,1]],"f":[]}',
  });

  const stopped = consumer.stop();
  assert(consumer.stop() === stopped, "stop() is idempotent");
  await stopped;
  assertEquals(consumer.readiness(), "stopping");
  await admin.disconnect();
});
