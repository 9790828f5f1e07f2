/**
 * Per-function delivery settings on the real broker: retries with backoff, dead letters byte
 * for byte, the result topic, and key ordering.
 */
import { assert, assertEquals, assertMatch } from "../helpers/assert.ts";
import {
  functionsConfig,
  kafkaClients,
  kcatProduce,
  readTopic,
  RunnerProcess,
  unique,
} from "../helpers/harness.ts";

const text = (v: Buffer | string | (Buffer | string)[] | undefined) => String(v);

Deno.test("retries with exponential backoff end ok on the third attempt", async () => {
  const topic = unique("retry");
  await using config = await functionsConfig({
    flaky: { delivery: "at-least-once", retries: { attempts: 3, baseMs: 400, maxMs: 5000 } },
  });
  await using runner = RunnerProcess.onTopic(topic, {
    FUNCTIONS_CONFIG: config.path,
  });
  await runner.ready();
  await kcatProduce(topic, "{}", { headers: { php_worker: "flaky" } });
  const [outcome] = await runner.waitForOutcomes(1);
  assertEquals(outcome.outcome, "ok");
  assertEquals(outcome.attempts, 3);
  assertEquals(runner.outcomes().length, 1, "one outcome for the task, not one per attempt");
  const retries = runner.lines.filter((l) => l.message.startsWith("Attempt"));
  assertEquals(retries.map((l) => l.properties.attempt), [1, 2]);
  const delays = retries.map((l) => l.properties.delayMs as number);
  assert(delays[0] >= 200 && delays[0] <= 400, `first backoff ${delays[0]}`);
  assert(delays[1] >= 400 && delays[1] <= 800, `second backoff ${delays[1]}`);
  const starts = runner.output("flaky").map((l) => Number(l.split(" at ")[1]));
  assertEquals(starts.length, 3);
  assert(starts[1] - starts[0] >= delays[0], "the second attempt waited its backoff");
  assert(starts[2] - starts[1] >= delays[1], "the third attempt waited its backoff");
});

Deno.test("exhausted retries and rejections go to the dead-letter topic, byte for byte", async () => {
  const topic = unique("dlq");
  const dlq = `${topic}.dlq`;
  await using config = await functionsConfig({
    flaky: { delivery: "at-least-once", retries: { attempts: 2, baseMs: 50 } },
  });
  await using runner = RunnerProcess.onTopic(topic, {
    FUNCTIONS_CONFIG: config.path,
    DLQ_TOPIC: dlq,
    TOPIC_PARTITIONS: "1",
  });
  await runner.ready();
  await kcatProduce(topic, '{"succeedAt": 9, "x": "é"}', {
    headers: { php_worker: "flaky", trace: "t-1" },
    key: "order-1",
  });
  await kcatProduce(topic, '{"a":1}', { headers: { php_worker: "no_such" }, key: "order-2" });
  const outcomes = await runner.waitForOutcomes(2);
  const failed = outcomes.find((o) => o.handler === "flaky")!;
  assertEquals([failed.outcome, failed.attempts, failed.deadLetter], ["failed", 2, dlq]);
  const rejected = outcomes.find((o) => o.handler === "no_such")!;
  assertEquals([rejected.outcome, rejected.deadLetter], ["rejected", dlq]);

  const letters = await readTopic(dlq, 2);
  const byKey = Object.fromEntries(letters.map((m) => [String(m.key), m]));
  const one = byKey["order-1"];
  assertEquals(one.value, Buffer.from('{"succeedAt": 9, "x": "é"}'));
  assertEquals(text(one.headers!.php_worker), "flaky");
  assertEquals(text(one.headers!.trace), "t-1");
  assertEquals(text(one.headers!["x-task-runner-outcome"]), "failed");
  assertMatch(text(one.headers!["x-task-runner-error"]), /exit 1: handler threw/);
  assertEquals(text(one.headers!["x-task-runner-exit-code"]), "1");
  assertEquals(text(one.headers!["x-task-runner-attempts"]), "2");
  assertEquals(text(one.headers!["x-task-runner-original-topic"]), topic);
  assertEquals(text(one.headers!["x-task-runner-original-partition"]), "0");
  assertEquals(text(one.headers!["x-task-runner-original-offset"]), "0");
  assert(!Number.isNaN(Date.parse(text(one.headers!["x-task-runner-failed-at"]))));
  const two = byKey["order-2"];
  assertEquals(two.value, Buffer.from('{"a":1}'));
  assertEquals(text(two.headers!["x-task-runner-outcome"]), "rejected");
  assertMatch(text(two.headers!["x-task-runner-error"]), /unknown handler no_such/);
  assertEquals(text(two.headers!["x-task-runner-original-offset"]), "1");
});

Deno.test("a handler's return value is produced to its result topic with the task's key", async () => {
  const topic = unique("result");
  const results = `${topic}.results`;
  await using config = await functionsConfig({ returns_value: { resultTopic: results } });
  await using kafka = await kafkaClients();
  await kafka.admin.createTopics({
    topics: [{ topic: results, numPartitions: 1 }],
    waitForLeaders: true,
  });
  await using runner = RunnerProcess.onTopic(topic, {
    FUNCTIONS_CONFIG: config.path,
  });
  await runner.ready();
  await kcatProduce(topic, '{"n": 21}', { headers: { php_worker: "returns_value" }, key: "k-21" });
  const [outcome] = await runner.waitForOutcomes(1);
  assertEquals([outcome.outcome, outcome.resultTopic], ["ok", results]);
  const [message] = await readTopic(results, 1);
  assertEquals(String(message.key), "k-21");
  assertEquals(JSON.parse(String(message.value)), { doubled: 42, note: "ünïcode" });
  assertEquals(text(message.headers!["x-task-runner-handler"]), "returns_value");
  assertEquals(text(message.headers!["x-task-runner-source-topic"]), topic);
});

Deno.test("ordering by key: one key runs strictly in order, different keys overlap", async () => {
  const topic = unique("keys");
  const dir = await Deno.makeTempDir();
  await using config = await functionsConfig({ keyed: { ordering: "key", allowWrite: [dir] } });
  await using runner = RunnerProcess.onTopic(topic, {
    FUNCTIONS_CONFIG: config.path,
    TOPIC_PARTITIONS: "1",
  });
  await runner.ready();
  await using kafka = await kafkaClients();
  const keys = ["a", "b", "c"];
  await kafka.producer.send({
    topic,
    messages: Array.from({ length: 12 }, (_, i) => ({
      key: keys[i % 3],
      value: JSON.stringify({ dir, ms: 150 }),
      headers: { php_worker: "keyed" },
    })),
  });
  const outcomes = await runner.waitForOutcomes(12);
  assert(outcomes.every((o) => o.outcome === "ok"));
  const rows = (await Deno.readTextFile(`${dir}/log`)).trim().split("\n").map((l) => l.split(" "))
    .map(([key, offset, start, end]) => ({
      key,
      offset: Number(offset),
      start: Number(start),
      end: Number(end),
    }));
  for (const key of keys) {
    const mine = rows.filter((r) => r.key === key).sort((a, b) => a.start - b.start);
    assertEquals(
      mine.map((r) => r.offset),
      [...mine.map((r) => r.offset)].sort((a, b) => a - b),
      `key ${key} in offset order`,
    );
    for (let i = 1; i < mine.length; i++) {
      assert(
        mine[i].start >= mine[i - 1].end,
        `key ${key}: offset ${mine[i].offset} started before ${mine[i - 1].offset} ended`,
      );
    }
  }
  const overlapping = rows.some((r) =>
    rows.some((q) => q.key !== r.key && q.start < r.end && r.start < q.end)
  );
  assert(overlapping, "tasks of different keys ran at the same time");
  await Deno.remove(dir, { recursive: true });
});
