/**
 * `isolation: "function"` through the runner: warm processes serve many tasks, outcomes and
 * drain behave as in task mode, and nothing is left behind.
 */
import { assert, assertEquals, assertMatch } from "../helpers/assert.ts";
import { alive, functionsConfig, kafkaClients, RunnerProcess, unique } from "../helpers/harness.ts";

Deno.test("function isolation: one warm process serves many tasks; drain leaves none", async () => {
  const topic = unique("warm");
  await using config = await functionsConfig({
    counts_calls: { isolation: "function", warm: { concurrency: 16 } },
    hangs: { isolation: "function" },
  });
  await using runner = RunnerProcess.onTopic(topic, {
    FUNCTIONS_CONFIG: config.path,
    TOPIC_PARTITIONS: "1",
    DRAIN_TIMEOUT_MS: "500",
    KILL_GRACE_MS: "500",
  });
  await runner.ready();
  await using kafka = await kafkaClients();
  await kafka.producer.send({
    topic,
    messages: Array.from(
      { length: 10 },
      () => ({ value: "{}", headers: { php_worker: "counts_calls" } }),
    ),
  });
  const outcomes = await runner.waitForOutcomes(10);
  assert(outcomes.every((o) => o.outcome === "ok"), JSON.stringify(outcomes[0]));
  const pids = new Set(outcomes.map((o) => /warm pid (\d+)/.exec(String(o.reason))?.[1]));
  assertEquals(pids.size, 1, `one warm process served them all: ${[...pids]}`);
  const calls = runner.output("counts_calls");
  assertEquals(calls.length, 10);
  assertMatch(calls.at(-1)!, /10/, "module state persisted across tasks");

  await kafka.producer.send({
    topic,
    messages: [{ value: "{}", headers: { php_worker: "hangs" } }],
  });
  await runner.waitFor(
    "the hanging task to start",
    () =>
      runner.lines.find((l) => l.message.startsWith("Started") && l.properties.handler === "hangs"),
  );
  const warmPids = runner.lines.filter((l) => l.message.startsWith("Started")).map((l) =>
    l.properties.pid as number
  );
  runner.kill("SIGTERM");
  assertEquals((await runner.exited).code, 0);
  const last = runner.outcomes().at(-1)!;
  assertEquals([last.handler, last.outcome], ["hangs", "failed"]);
  assertMatch(String(last.reason), /at shutdown, after the drain timeout of 500 ms/);
  assertEquals([...new Set(warmPids)].filter(alive), [], "no warm process is left");
});
