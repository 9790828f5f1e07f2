/**
 * Flow control against the real broker, with handlers that record their start and end times
 * (tests/fixtures/functions/flow_*.ts): per-function and per-key limits, rate limits, delayed
 * tasks, and kill -9 with tasks waiting.
 */
import { assert, assertEquals } from "../helpers/assert.ts";
import {
  functionsConfig,
  kafkaClients,
  ROOT,
  RunnerProcess,
  runTaskArgs,
  unique,
} from "../helpers/harness.ts";

interface Span {
  fn: string;
  offset: number;
  start: number;
  end: number | null;
}

/** What the handlers wrote into `dir`. */
function spans(dir: string): Span[] {
  const out: Span[] = [];
  for (const entry of Deno.readDirSync(dir)) {
    const [fn, offset] = entry.name.split(".");
    const [start, end] = Deno.readTextFileSync(`${dir}/${entry.name}`).trim().split(" ")
      .map(Number);
    out.push({ fn, offset: Number(offset), start, end: Number.isFinite(end) ? end : null });
  }
  return out.sort((a, b) => a.start - b.start);
}

/** The most spans running at once. */
function peak(list: Span[]): number {
  const events = list.flatMap((s) => [[s.start, 1], [s.end ?? Infinity, -1]]).sort((a, b) =>
    a[0] - b[0] || a[1] - b[1]
  );
  let live = 0;
  let most = 0;
  for (const [, delta] of events) most = Math.max(most, live += delta);
  return most;
}

const task = (fn: string, payload: unknown, headers: Record<string, string> = {}) => ({
  value: JSON.stringify(payload),
  headers: { php_worker: fn, ...headers },
});

Deno.test("maxRunning and concurrency: never exceeded, while other functions and keys run in parallel up to the cap; prewarmed children and warm processes inside the limit", async () => {
  const topic = unique("flow-limits");
  const dir = await Deno.makeTempDir();
  const grant = { allowWrite: [dir] };
  await using config = await functionsConfig({
    // Prewarmed idle children are not running tasks: 3 of them do not count toward the 2.
    flow_limited: { ...grant, maxRunning: 2, prewarm: 3 },
    // Function mode: the tasks of warm processes (2 at a time each) count toward maxRunning.
    flow_warm: { ...grant, maxRunning: 3, isolation: "function", warm: { concurrency: 2 } },
    flow_free: grant,
    flow_keyed: { ...grant, concurrency: { key: "payload.shop", max: 1 } },
  });
  await using runner = RunnerProcess.onTopic(topic, {
    FUNCTIONS_CONFIG: config.path,
    MAX_RUNNING: "10",
    TOPIC_PARTITIONS: "1",
  });
  await runner.ready();
  await using kafka = await kafkaClients();
  const messages = [];
  for (let i = 0; i < 8; i++) {
    messages.push(task("flow_limited", { dir, ms: 600 }));
    messages.push(task("flow_free", { dir, ms: 600 }));
    messages.push(task("flow_keyed", { dir, ms: 300, shop: i % 2 ? "a" : "b" }));
  }
  for (let i = 0; i < 8; i++) messages.push(task("flow_warm", { dir, ms: 600 }));
  await kafka.producer.send({ topic, messages });
  const outcomes = await runner.waitForOutcomes(messages.length, 120_000);
  assertEquals(outcomes.filter((o) => o.outcome === "ok").length, messages.length);
  const all = spans(dir);
  const of = (fn: string) => all.filter((s) => s.fn === fn);
  const limited = peak(of("flow_limited"));
  const free = peak(of("flow_free"));
  const keyed = of("flow_keyed");
  const byShop = (shop: number) => keyed.filter((s) => s.offset % 6 === shop);
  // Offsets go limited, free, keyed(b), limited, free, keyed(a), ... (then the warm ones)
  const shopB = peak(byShop(2));
  const shopA = peak(byShop(5));
  const warm = peak(of("flow_warm"));
  console.log(
    `peaks: flow_limited ${limited} (max 2), flow_free ${free}, shop a ${shopA}, shop b ${shopB}, ` +
      `keyed ${peak(keyed)}, flow_warm ${warm} (max 3), all ${peak(all)} (cap 10)`,
  );
  assert(limited <= 2, `flow_limited ran ${limited} at once`);
  assertEquals(limited, 2, "flow_limited used its limit");
  assert(free > 2, `flow_free was held back with flow_limited (peak ${free})`);
  assert(shopA <= 1 && shopB <= 1, `one per shop: a ${shopA}, b ${shopB}`);
  assertEquals(peak(keyed), 2, "the two shops ran in parallel");
  assertEquals(warm, 3, "warm processes ran up to the function's limit, not beyond");
  assert(peak(all) <= 10);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("rateLimit: starts over a 10 s window are not above rate × 1.1 + burst", async () => {
  const topic = unique("flow-rate");
  const dir = await Deno.makeTempDir();
  const perSecond = 8;
  const burst = 4;
  await using config = await functionsConfig({
    flow_rated: { allowWrite: [dir], rateLimit: { perSecond, burst } },
  });
  await using runner = RunnerProcess.onTopic(topic, {
    FUNCTIONS_CONFIG: config.path,
    MAX_RUNNING: "10",
    TOPIC_PARTITIONS: "1",
  });
  await runner.ready();
  await using kafka = await kafkaClients();
  const total = 100;
  await kafka.producer.send({
    topic,
    messages: Array.from({ length: total }, () => task("flow_rated", { dir, ms: 10 })),
  });
  await runner.waitForOutcomes(total, 120_000);
  const starts = spans(dir).map((s) => s.start);
  assertEquals(starts.length, total);
  let most = 0;
  for (let i = 0; i < starts.length; i++) {
    let j = i;
    while (j < starts.length && starts[j] < starts[i] + 10_000) j++;
    most = Math.max(most, j - i);
  }
  // The rate after the burst: starts per second from the burst's end to the last start.
  const measured = (total - burst - 1) / ((starts.at(-1)! - starts[burst]) / 1000);
  console.log(
    `rate: ${measured.toFixed(2)}/s measured (configured ${perSecond}/s, burst ${burst}); ` +
      `most starts in a 10 s window ${most} (bound ${perSecond * 10 * 1.1 + burst})`,
  );
  assert(most <= perSecond * 10 * 1.1 + burst, `${most} starts in 10 s`);
  assert(measured <= perSecond * 1.1, `measured ${measured}/s`);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("delayed tasks never start before their time, and start within 200 ms of it at light load", async () => {
  const topic = unique("flow-delay");
  const dir = await Deno.makeTempDir();
  await using config = await functionsConfig({ flow_delayed: { allowWrite: [dir], prewarm: 2 } });
  await using runner = RunnerProcess.onTopic(topic, {
    FUNCTIONS_CONFIG: config.path,
    MAX_RUNNING: "4",
    TOPIC_PARTITIONS: "1",
  });
  await runner.ready();
  await using kafka = await kafkaClients();
  const base = Date.now() + 3000;
  const times = [0, 1000, 2000, 3000].map((d) => base + d);
  const iso = (ms: number) => new Date(ms).toISOString();
  await kafka.producer.send({
    topic,
    messages: times.map((at, i) =>
      task("flow_delayed", { dir, ms: 10 }, {
        // Both forms the header takes: epoch ms and ISO 8601.
        "x-task-runner-not-before": i % 2 ? iso(at) : String(at),
      })
    ),
  });
  // And one through the command line: `enqueue --at`.
  const cliAt = base + 4000;
  const cli = await new Deno.Command(Deno.execPath(), {
    args: [
      ...runTaskArgs().slice(0, -2).concat(`${ROOT}main.ts`),
      "enqueue",
      "flow_delayed",
      JSON.stringify({ dir, ms: 10 }),
      "--at",
      iso(cliAt),
    ],
    env: { KAFKA_BROKERS: Deno.env.get("KAFKA_BROKERS") ?? "127.0.0.1:39092", TASK_TOPIC: topic },
    stdout: "piped",
    stderr: "piped",
  }).output();
  assertEquals(cli.code, 0, new TextDecoder().decode(cli.stderr));
  times.push(cliAt);
  await runner.waitForOutcomes(times.length, 60_000);
  const started = spans(dir).sort((a, b) => a.offset - b.offset);
  const late = started.map((s, i) => s.start - times[i]);
  console.log(`delays: started ${late.join(", ")} ms after their not-before times`);
  for (const ms of late) {
    assert(ms >= 0, `a task started ${-ms} ms early`);
    assert(ms <= 200, `a task started ${ms} ms late`);
  }
  await Deno.remove(dir, { recursive: true });
});

Deno.test("1,000 delayed tasks do not stall an undelayed function's tasks on the same partition", async () => {
  const topic = unique("flow-stall");
  const dir = await Deno.makeTempDir();
  const grant = { allowWrite: [dir] };
  await using config = await functionsConfig({ flow_delayed: grant, flow_free: grant });
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  await using runner = RunnerProcess.onTopic(topic, {
    FUNCTIONS_CONFIG: config.path,
    MAX_RUNNING: "6",
    TOPIC_PARTITIONS: "1",
    METRICS_PORT: String(port),
  });
  await runner.ready();
  await using kafka = await kafkaClients();
  const at = String(Date.now() + 120_000);
  const delayed = Array.from(
    { length: 1000 },
    () => task("flow_delayed", { dir }, { "x-task-runner-not-before": at }),
  );
  const free = Array.from({ length: 60 }, () => task("flow_free", { dir, ms: 20 }));
  const sent = Date.now();
  await kafka.producer.send({ topic, messages: delayed });
  await kafka.producer.send({ topic, messages: free });
  const outcomes = await runner.waitForOutcomes(free.length, 90_000);
  const took = Date.now() - sent;
  assert(outcomes.every((o) => o.handler === "flow_free" && o.outcome === "ok"));
  // The delayed tasks wait uncommitted: the group's offset stays at the first of them.
  const [committed] = await kafka.admin.fetchOffsets({ groupId: topic, topics: [topic] });
  console.log(
    `1000 delayed + ${free.length} undelayed: the undelayed ran in ${took} ms; ` +
      `committed offset ${committed.partitions[0].offset}`,
  );
  assertEquals(committed.partitions[0].offset, "0");
  const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const waiting = /^task_runner_waiting_tasks\{reason="delay"\} (\d+)$/m.exec(metrics)?.[1];
  console.log(`metrics: task_runner_waiting_tasks{reason="delay"} ${waiting}`);
  assertEquals(waiting, "1000");
  assertEquals(spans(dir).filter((s) => s.fn === "flow_delayed").length, 0);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("kill -9 with waiting tasks: at-least-once loses none, at-most-once runs none twice", async () => {
  const topic = unique("flow-kill");
  const dir = await Deno.makeTempDir();
  const grant = { allowWrite: [dir] };
  await using config = await functionsConfig({
    flow_alo: { ...grant, maxRunning: 1, delivery: "at-least-once" },
    flow_amo: { ...grant, maxRunning: 1 },
  });
  const env = {
    FUNCTIONS_CONFIG: config.path,
    MAX_RUNNING: "4",
    TOPIC_PARTITIONS: "1",
    SESSION_TIMEOUT_MS: "6000",
  };
  await using first = RunnerProcess.onTopic(topic, env);
  await first.ready();
  await using kafka = await kafkaClients();
  const soon = String(Date.now() + 2000);
  const messages = [];
  for (let i = 0; i < 4; i++) {
    messages.push(task("flow_alo", { dir, ms: 1500 }));
    messages.push(task("flow_amo", { dir, ms: 1500 }));
  }
  messages.push(task("flow_alo", { dir, ms: 100 }, { "x-task-runner-not-before": soon }));
  messages.push(task("flow_amo", { dir, ms: 100 }, { "x-task-runner-not-before": soon }));
  await kafka.producer.send({ topic, messages });
  // One of each runs, the rest wait (limit, delay).
  await first.waitFor("one task of each function to start", () => {
    const fns = new Set(spans(dir).map((s) => s.fn));
    return fns.size === 2 ? true : undefined;
  });
  first.kill("SIGKILL");
  await first.exited;
  const before = spans(dir);
  await using second = RunnerProcess.onTopic(topic, env);
  // at-least-once: all 5 end ok here; at-most-once: the 4 that had not started (the one that
  // was running is lost and named so).
  await second.waitFor("the second runner's outcomes", () => {
    const o = second.outcomes();
    const alo = o.filter((x) => x.handler === "flow_alo" && x.outcome === "ok").length;
    const amo = o.filter((x) => x.handler === "flow_amo" && x.outcome === "ok").length;
    return alo + before.filter((s) => s.fn === "flow_alo" && s.end !== null).length >= 5 &&
        amo >= 5 - before.filter((s) => s.fn === "flow_amo").length
      ? true
      : undefined;
  }, 90_000);
  const after = spans(dir);
  const offsets = (fn: string, list: Span[]) =>
    list.filter((s) => s.fn === fn).map((s) => s.offset);
  const aloDone = new Set(
    after.filter((s) => s.fn === "flow_alo" && s.end !== null).map((s) => s.offset),
  );
  const amoRuns = offsets("flow_amo", after);
  console.log(
    `kill -9: before ${before.map((s) => `${s.fn}@${s.offset}`).join(" ")}; ` +
      `at-least-once completed offsets ${[...aloDone].sort((a, b) => a - b)}; ` +
      `at-most-once runs ${amoRuns.sort((a, b) => a - b)}`,
  );
  assertEquals(aloDone.size, 5, "at-least-once lost a task");
  assertEquals(new Set(amoRuns).size, amoRuns.length, "an at-most-once task ran twice");
  assertEquals(
    amoRuns.length,
    5,
    "each at-most-once task ran once (the running one before the kill)",
  );
  await Deno.remove(dir, { recursive: true });
});
