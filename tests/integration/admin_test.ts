/**
 * The admin commands against the real broker: real messages produced, real values asserted.
 */
import { Buffer } from "node:buffer";
import { inspectMessage } from "../../ops/admin/inspect.ts";
import { groupLag } from "../../ops/admin/lag.ts";
import { offsetsForTimestamp } from "../../ops/admin/offsets.ts";
import { listTopics } from "../../ops/admin/topics.ts";
import { OffsetOutOfRangeError, UnknownTopicError } from "../../runner/errors.ts";
import { assert, assertEquals, assertMatch } from "../helpers/assert.ts";
import { runAdmin } from "../helpers/cli_capture.ts";
import {
  brokers,
  createTopic,
  kafkaClients,
  kcatProduce,
  testKafka,
  unique,
} from "../helpers/harness.ts";

const kafka = testKafka;

/**
 * Commit offsets for `groupId` as a real member would. (admin.setOffsets works too, but its
 * consumer pauses every partition and so waits kafkajs's 5 s idle fetch: too slow for tests.)
 */
async function commit(
  groupId: string,
  topic: string,
  offsets: Array<{ partition: number; offset: number }>,
): Promise<void> {
  const consumer = kafka().consumer({ groupId, maxWaitTimeInMs: 100 });
  const joined = new Promise((resolve) => consumer.on(consumer.events.GROUP_JOIN, resolve));
  await consumer.connect();
  try {
    await consumer.subscribe({ topics: [topic] });
    await consumer.run({ autoCommit: false, eachBatch: () => Promise.resolve() });
    await joined;
    await consumer.commitOffsets(
      offsets.map(({ partition, offset }) => ({ topic, partition, offset: String(offset) })),
    );
  } finally {
    await consumer.disconnect();
  }
}

async function rejection(promise: Promise<unknown>): Promise<Error> {
  try {
    await promise;
  } catch (error) {
    return error as Error;
  }
  throw new Error("expected a rejection, got a result");
}

Deno.test("inspect returns exactly the headers, key, timestamp and payload produced", async () => {
  await using clients = await kafkaClients();
  const topic = unique("inspect");
  await createTopic(clients.admin, topic, 2);
  const before = Date.now();
  // kcat, like a team without our library; partition 1 holds it at offset 1 after a first one.
  await kcatProduce(topic, "first", { partition: 1 });
  await kcatProduce(topic, '{"to":"world","n":7}', {
    partition: 1,
    key: "order-7",
    headers: { php_worker: "hello", trace: "t-1" },
  });
  // kafkajs: a repeated header, a binary payload, no key, an explicit timestamp.
  await clients.producer.send({
    topic,
    messages: [{
      partition: 0,
      value: Buffer.from([0xff, 0x00, 0xfe]),
      timestamp: "1700000000000",
      headers: { php_worker: "word_count", tag: ["a", "b"] },
    }],
  });

  const text = await inspectMessage(kafka(), { topic, partition: 1, offset: 1 });
  assertEquals(text.key, "order-7");
  assertEquals(text.headers, { php_worker: "hello", trace: "t-1" });
  assertEquals(text.payload, '{"to":"world","n":7}');
  assertEquals(text.payloadBytes, 20);
  assertEquals([text.topic, text.partition, text.offset], [topic, 1, 1]);
  assert(text.timestamp >= before - 1000 && text.timestamp <= Date.now(), `${text.timestamp}`);
  assertEquals(text.base64, []);

  const binary = await inspectMessage(kafka(), { topic, partition: 0, offset: 0 });
  assertEquals(binary.key, null);
  assertEquals(binary.timestamp, 1700000000000);
  assertEquals(binary.headers, { php_worker: "word_count", tag: ["a", "b"] });
  assertEquals(binary.payload, Buffer.from([0xff, 0x00, 0xfe]).toString("base64"));
  assertEquals(binary.base64, ["payload"]);

  // The throwaway groups are gone; no group of the cluster was left behind by inspect.
  const { groups } = await clients.admin.listGroups();
  assertEquals(groups.filter((g) => g.groupId.startsWith("task-runner-inspect")), []);

  // The CLI prints the same, as text and as JSON.
  const shown = await runAdmin("inspect", ["--topic", topic, "--partition", "1", "--offset", "1"]);
  assertEquals(shown.code, 0, shown.stderr);
  assertMatch(shown.stdout, /^key\s+"order-7"$/m);
  assertMatch(shown.stdout, /^headers\s+php_worker: hello$/m);
  assertMatch(shown.stdout, /^\s+trace: t-1$/m);
  assertMatch(shown.stdout, /^\{"to":"world","n":7\}$/m);
  const json = await runAdmin("inspect", [
    "--topic",
    topic,
    "--partition",
    "0",
    "--offset",
    "0",
    "--json",
  ]);
  assertEquals(JSON.parse(json.stdout).headers.tag, ["a", "b"]);
});

Deno.test("inspect says so when the offset is past the end or before the log start", async () => {
  await using clients = await kafkaClients();
  const topic = unique("inspect_range");
  await createTopic(clients.admin, topic, 1);
  for (const value of ["m0", "m1", "m2"]) await kcatProduce(topic, value, { partition: 0 });

  const past = await rejection(inspectMessage(kafka(), { topic, partition: 0, offset: 3 }));
  assert(past instanceof OffsetOutOfRangeError, String(past));
  assertMatch(
    past.message,
    /offset 3 is past the end of .*: its messages are 0\.\.2 \(the next message will get offset 3/,
  );

  await clients.admin.fetchTopicOffsets(topic); // loads the leaders deleteTopicRecords looks up
  await clients.admin.deleteTopicRecords({ topic, partitions: [{ partition: 0, offset: "2" }] });
  const before = await rejection(inspectMessage(kafka(), { topic, partition: 0, offset: 1 }));
  assert(before instanceof OffsetOutOfRangeError, String(before));
  assertMatch(
    before.message,
    /offset 1 is before the log start .*deleted by retention; its messages are 2\.\.2/,
  );
  assertEquals((await inspectMessage(kafka(), { topic, partition: 0, offset: 2 })).payload, "m2");

  const noPartition = await rejection(inspectMessage(kafka(), { topic, partition: 5, offset: 0 }));
  assert(noPartition instanceof UnknownTopicError, String(noPartition));
  const cli = await runAdmin("inspect", ["--topic", topic, "--partition", "0", "--offset", "9"]);
  assertEquals(cli.code, 1);
  assertMatch(cli.stderr, /OffsetOutOfRangeError: offset 9 is past the end/);
});

Deno.test("offsets: first offset at or after the time; past the end, the end offset", async () => {
  await using clients = await kafkaClients();
  const topic = unique("offsets");
  await createTopic(clients.admin, topic, 2);
  const t0 = Date.now() - 60_000;
  await clients.producer.send({
    topic,
    messages: [
      { partition: 0, value: "a", timestamp: String(t0) },
      { partition: 0, value: "b", timestamp: String(t0 + 10_000) },
    ],
  });
  const at = (timestamp: number) => offsetsForTimestamp(clients.admin, { topic, timestamp });

  // Between the two messages: the second one.
  assertEquals((await at(t0 + 5_000))[0], {
    partition: 0,
    offset: 1,
    low: 0,
    high: 2,
    pastEnd: false,
  });
  assertEquals((await at(t0))[0].offset, 0);
  assertEquals((await at(t0 - 1))[0].offset, 0);
  // After the last message: the end offset (the next one to be written), not "not found".
  assertEquals(await at(t0 + 10_001), [
    { partition: 0, offset: 2, low: 0, high: 2, pastEnd: true },
    { partition: 1, offset: 0, low: 0, high: 0, pastEnd: true },
  ]);

  const text = await runAdmin("offsets", [
    "--topic",
    topic,
    "--time",
    new Date(t0 + 5_000).toISOString(),
  ]);
  assertEquals(text.code, 0, text.stderr);
  assertMatch(text.stdout, /^0\s+1\s+0\s+2$/m);
  assertMatch(text.stdout, /^1\s+0\s+0\s+0\s+past the end/m);
  assertMatch(text.stdout, /the end offset, i\.e\. the offset the next message will get/);
  const help = await runAdmin("offsets", ["--help"]);
  assertEquals(help.code, 0);
  assertMatch(help.stdout, /not an exact-match lookup/);
  assertMatch(help.stdout, /the answer is the partition's end offset/);
  const bad = await runAdmin("offsets", ["--topic", topic, "--time", "yesterday"]);
  assertEquals(bad.code, 2);
});

Deno.test("lag: committed, end, lag per partition, totals, and no committed offset", async () => {
  await using clients = await kafkaClients();
  const topic = unique("lag");
  const groupId = unique("lag_group");
  await createTopic(clients.admin, topic, 2);
  await clients.producer.send({
    topic,
    messages: [
      ...["a", "b", "c", "d", "e"].map((value) => ({ partition: 0, value })),
      ...["x", "y", "z"].map((value) => ({ partition: 1, value })),
    ],
  });
  await commit(groupId, topic, [{ partition: 0, offset: 2 }]);

  const lag = await groupLag(clients.admin, { groupId, topic });
  assertEquals(lag.state, "Empty");
  assertEquals(lag.members, []);
  assertEquals(lag.partitions, [
    { partition: 0, committed: 2, low: 0, high: 5, lag: 3, owner: null },
    { partition: 1, committed: null, low: 0, high: 3, lag: null, owner: null },
  ]);
  assertEquals(lag.totals, { high: 8, lag: 3, uncommitted: 1, uncommittedMessages: 3 });

  const text = await runAdmin("lag", ["--topic", topic, "--group", groupId]);
  assertEquals(text.code, 0, text.stderr);
  assertMatch(text.stdout, new RegExp(`^group ${groupId} on ${topic}: Empty, no members$`, "m"));
  assertMatch(text.stdout, /^0\s+2\s+5\s+3\s+-$/m);
  assertMatch(text.stdout, /^1\s+none\s+3\s+-\s+-\s+no committed offset/m);
  assertMatch(text.stdout, /^total\s+8\s+3$/m);
  const json = await runAdmin("lag", ["--topic", topic, "--group", groupId, "--json"]);
  assertEquals(JSON.parse(json.stdout).totals.lag, 3);
  const unknown = await runAdmin("lag", ["--topic", unique("missing"), "--group", groupId]);
  assertEquals(unknown.code, 1);
  assertMatch(unknown.stderr, /UnknownTopicError: topic ".*" does not exist/);
});

Deno.test("topics lists partitions, leaders, replicas and end offsets", async () => {
  await using clients = await kafkaClients();
  const topic = unique("topics");
  await createTopic(clients.admin, topic, 3);
  await clients.producer.send({
    topic,
    messages: [{ partition: 0, value: "a" }, { partition: 0, value: "b" }, {
      partition: 2,
      value: "c",
    }],
  });
  // Make sure __consumer_offsets exists, to see it left out and then included.
  await commit(unique("topics_group"), topic, [{ partition: 0, offset: 1 }]);

  const report = await listTopics(clients.admin, { topics: [topic] });
  const [{ nodeId }] = report.brokers;
  assertEquals(report.topics, [{
    topic,
    internal: false,
    partitions: [0, 1, 2].map((partition) => ({
      partition,
      leader: nodeId,
      replicas: [nodeId],
      isr: [nodeId],
      offline: [],
      low: 0,
      high: [2, 0, 1][partition],
    })),
  }]);
  const [port] = brokers().split(",")[0].split(":").slice(-1);
  assertEquals(report.brokers.map((b) => b.port), [Number(port)]);

  const all = await listTopics(clients.admin);
  assert(all.topics.some((t) => t.topic === topic));
  assert(!all.topics.some((t) => t.topic === "__consumer_offsets"));
  const internal = await listTopics(clients.admin, { includeInternal: true });
  assert(internal.topics.some((t) => t.topic === "__consumer_offsets" && t.internal));

  const text = await runAdmin("topics", [topic]);
  assertEquals(text.code, 0, text.stderr);
  assertMatch(
    text.stdout,
    new RegExp(`^${topic}: 3 partition\\(s\\), 3 message\\(s\\) in the log$`, "m"),
  );
  assertMatch(
    text.stdout,
    new RegExp(`^  0\\s+${nodeId}\\s+${nodeId}\\s+${nodeId}\\s+0\\s+2$`, "m"),
  );
  const missing = await runAdmin("topics", [unique("missing")]);
  assertEquals(missing.code, 1);
  const usage = await runAdmin("topics", ["--no-such-flag"]);
  assertEquals(usage.code, 2);
});
