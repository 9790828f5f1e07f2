/**
 * /metrics, /healthz and /readyz of a running runner move with real tasks.
 */
import { assert, assertEquals, assertMatch } from "../helpers/assert.ts";
import { kcatProduce, RunnerProcess, unique } from "../helpers/harness.ts";

function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  return port;
}

/** The value of one sample line, e.g. `task_runner_tasks_total{handler="echo",outcome="ok"}`. */
function sample(text: string, series: string): number | undefined {
  const line = text.split("\n").find((l) => l.startsWith(series + " "));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

Deno.test("metrics count outcomes, show the cap and lag; health and readiness answer", async () => {
  const topic = unique("metrics");
  const port = freePort();
  const base = `http://127.0.0.1:${port}`;
  await using runner = RunnerProcess.onTopic(topic, {
    METRICS_PORT: String(port),
    MAX_RUNNING: "7",
    TOPIC_PARTITIONS: "2",
  });
  await runner.waitFor(
    "the metrics endpoint",
    () => runner.lines.find((l) => l.message.startsWith("Metrics on")),
  );
  const health = await fetch(`${base}/healthz`);
  assertEquals([health.status, await health.text()], [200, "ok\n"]);

  await runner.waitFor(
    "the group join",
    () => runner.lines.find((l) => l.message.startsWith("Joined group")),
  );
  const ready = await fetch(`${base}/readyz`);
  assertEquals([ready.status, await ready.text()], [200, "ready\n"]);

  for (const handler of ["echo", "echo", "throws"]) {
    await kcatProduce(topic, "{}", { headers: { php_worker: handler } });
  }
  await kcatProduce(topic, "{}", { headers: { php_worker: "missing_one" } });
  await runner.waitForOutcomes(4);

  const text = await (await fetch(`${base}/metrics`)).text();
  assertEquals(sample(text, 'task_runner_tasks_total{handler="echo",outcome="ok"}'), 2);
  assertEquals(sample(text, 'task_runner_tasks_total{handler="throws",outcome="failed"}'), 1);
  assertEquals(
    sample(text, 'task_runner_tasks_total{handler="missing_one",outcome="rejected"}'),
    1,
  );
  assertEquals(
    sample(text, 'task_runner_task_duration_seconds_count{handler="echo",outcome="ok"}'),
    2,
  );
  assertEquals(sample(text, "task_runner_live_children"), 0);
  assertEquals(sample(text, "task_runner_max_running"), 7);
  assertEquals(sample(text, "task_runner_paused"), 0);
  assertEquals(sample(text, `task_runner_consumer_lag{topic="${topic}",partition="0"}`), 0);
  assertEquals(sample(text, `task_runner_consumer_lag{topic="${topic}",partition="1"}`), 0);
  const rss = sample(text, "task_runner_resident_memory_bytes");
  assert(rss !== undefined && rss > 10_000_000, `rss ${rss}`);

  const missing = await fetch(`${base}/nope`);
  assertEquals(missing.status, 404);
  await missing.body?.cancel();

  runner.kill("SIGTERM");
  assertEquals((await runner.exited).code, 0);
  assertMatch(runner.raw.join("\n"), /Stopped/);
});
