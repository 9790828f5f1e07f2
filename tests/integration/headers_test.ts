/**
 * A message with 20,000 headers (issue 17 item 1): kafkajs 2.2.4 alone spends minutes of one
 * core decoding it, the runner misses its heartbeats and is dropped from the group. With the
 * bounded header reader it is one rejected outcome and everything else runs on time.
 */
import { assert, assertEquals } from "../helpers/assert.ts";
import { createTopic, kafkaClients, RunnerProcess, unique } from "../helpers/harness.ts";

Deno.test("20,000 headers: one rejected outcome; other tasks run and the runner keeps its group", async () => {
  const topic = unique("headers");
  await using clients = await kafkaClients();
  await createTopic(clients.admin, topic, 2);
  await using runner = RunnerProcess.onTopic(topic, { SESSION_TIMEOUT_MS: "6000" });
  await runner.ready();
  const many: Record<string, string> = { php_worker: "echo" };
  for (let i = 1; i < 20_000; i++) many[`h${i}`] = "v";
  const plain = (partition: number, n: number) => ({
    partition,
    value: JSON.stringify({ n }),
    headers: { php_worker: "echo" },
  });
  await clients.producer.send({ topic, messages: [plain(0, 0), plain(1, 1)] });
  await clients.producer.send({ topic, messages: [{ partition: 0, value: "{}", headers: many }] });
  // Plain tasks on both partitions for longer than the session timeout.
  let n = 2;
  const until = Date.now() + 8_000;
  while (Date.now() < until) {
    await clients.producer.send({ topic, messages: [plain(0, n++), plain(1, n++)] });
    await new Promise((r) => setTimeout(r, 500));
  }
  const outcomes = await runner.waitForOutcomes(n + 1, 60_000);
  await new Promise((r) => setTimeout(r, 1000));
  const all = runner.outcomes();
  const rejected = all.filter((o) => o.outcome === "rejected");
  assertEquals(rejected.map((o) => [o.partition, o.offset, o.reason]), [
    [0, "1", "message has 20000 headers, more than the limit of 100"],
  ]);
  assertEquals(all.length, n + 1, "every task ends in exactly one outcome");
  assertEquals(outcomes.filter((o) => o.outcome === "ok").length, n);
  // Every plain task ran within seconds of being produced: nothing froze.
  const slow = runner.lines.filter((l) =>
    l.logger.includes("kafka") && /rebalanc|not aware of this member|heartbeat/i.test(l.message)
  );
  assertEquals(slow.map((l) => l.message), []);
  const joins = runner.lines.filter((l) => l.message.startsWith("Consuming"));
  assert(joins.length === 1, `the runner joined ${joins.length} times`);
});
