/**
 * Prewarmed sandboxes through the runner (PREWARM=2, and a per-function `prewarm`): tasks run
 * ok in children started before them, and SIGTERM leaves no process behind.
 */
import { assert, assertEquals } from "../helpers/assert.ts";
import {
  alive,
  functionsConfig,
  kafkaClients,
  type LogLine,
  RunnerProcess,
  unique,
} from "../helpers/harness.ts";

/** Pids of the "Started …" or "Prewarmed …" lines of `handler` (one line per process). */
const pidsOf = (runner: RunnerProcess, what: "Started" | "Prewarmed", handler: string) =>
  runner.lines
    .filter((l: LogLine) => l.properties.handler === handler)
    .filter((l) =>
      what === "Started"
        ? l.message.startsWith("Started")
        : /^Prewarmed \S+ pid \d+$/.test(l.message)
    )
    .map((l) => l.properties.pid as number);

Deno.test("PREWARM=2: tasks run ok in prewarmed children; SIGTERM leaves no process", async () => {
  const topic = unique("prewarm");
  await using config = await functionsConfig({ echo: { prewarm: 1 } });
  await using runner = RunnerProcess.onTopic(topic, {
    FUNCTIONS_CONFIG: config.path,
    TOPIC_PARTITIONS: "1",
    PREWARM: "2",
  });
  await runner.ready();
  // echo has its own count: prewarmed from the start, before any task.
  const [echoPid] = await runner.waitFor("echo to be prewarmed", () => {
    const pids = pidsOf(runner, "Prewarmed", "echo");
    return pids.length > 0 ? pids : undefined;
  });
  await using kafka = await kafkaClients();
  const send = (handler: string, n: number) =>
    kafka.producer.send({
      topic,
      messages: [{ value: JSON.stringify({ n }), headers: { php_worker: handler } }],
    });

  await send("echo", 0);
  const [first] = await runner.waitForOutcomes(1);
  assertEquals(first.outcome, "ok");
  assertEquals(pidsOf(runner, "Started", "echo"), [echoPid], "the task took the prewarmed child");

  // Other functions: PREWARM applies from their first task on.
  for (let n = 1; n <= 4; n++) {
    await send("returns_value", n);
    await runner.waitForOutcomes(1 + n);
    await runner.waitFor(
      "two idle children",
      () => pidsOf(runner, "Prewarmed", "returns_value").length >= n + 1 || undefined,
    );
  }
  const outcomes = runner.outcomes();
  assert(outcomes.every((o) => o.outcome === "ok"), JSON.stringify(outcomes));
  const started = pidsOf(runner, "Started", "returns_value");
  const prewarmed = pidsOf(runner, "Prewarmed", "returns_value");
  assert(!prewarmed.includes(started[0]), "the first task of a function starts cold");
  assertEquals(
    started.slice(1).filter((pid) => prewarmed.includes(pid)),
    started.slice(1),
    "later tasks take prewarmed children",
  );
  const idle = prewarmed.filter((pid) => !started.includes(pid));
  assert(idle.length >= 2 && idle.every(alive), `idle children wait: ${idle}`);

  runner.kill("SIGTERM");
  assertEquals((await runner.exited).code, 0);
  const all = [...pidsOf(runner, "Prewarmed", "echo"), ...prewarmed, ...started];
  assertEquals(all.filter(alive), [], "no process is left behind");
});
