/**
 * `deno task bench`: figures for the README, measured side by side in one run.
 *
 * 1. bare spawn rate of the no-op sandboxed handler (Sandbox.spawn directly, no Kafka),
 * 2. end-to-end rate of N no-op tasks through the broker and the runner (same cap),
 * 3. their ratio; under a steady load, fetched → spawned and produce → handler start; at light
 *    load, produce → handler start with prewarm and warm sandboxes,
 * 4. the same through warm sandboxes (`isolation: "function"`),
 * 5. the runner's idle and peak RSS and the cost of payload sizes and caps.
 *
 * Options: --tasks N (default 1000), --quick (fewer tasks, no table).
 * Uses KAFKA_BROKERS, or starts the local broker on 127.0.0.1:39092.
 */
import { parseArgs } from "node:util";
import { fileURLToPath } from "node:url";
import { OPTIONS } from "../runner/config.ts";
import { Sandbox } from "../runner/sandbox/task_sandbox.ts";
import { createKafka, createProducer } from "../runner/kafka/client.ts";
import { benchBrokers, benchSecurity } from "./broker.ts";
import { functionsConfig, RunnerProcess, unique } from "../tests/helpers/harness.ts";
import { steadyLoad } from "./steady_load.ts";
import { fmt, percentile } from "./stats.ts";

const FUNCTIONS = fileURLToPath(new URL("./functions/", import.meta.url));
const { values } = parseArgs({
  args: Deno.args,
  options: {
    tasks: { type: "string", default: "1000" },
    quick: { type: "boolean", default: false },
  },
});
const TASKS = Number(values.tasks);

/** The runner's default TASK_NICE: bare spawns run at the same priority as the runner's. */
const TASK_NICE = Number(OPTIONS.find((o) => o.env === "TASK_NICE")?.default ?? 0);

/** Spawn `count` no-op children directly, `cap` at a time; tasks per second. */
async function bareSpawnRate(count: number, cap: number, payload: Uint8Array): Promise<number> {
  const sandbox = new Sandbox({ nice: TASK_NICE });
  const file = `${FUNCTIONS}noop.ts`;
  let next = 0;
  const started = performance.now();
  const worker = async () => {
    while (next < count) {
      next++;
      const child = sandbox.spawn({
        handler: "noop",
        file,
        task: {},
        payload,
        timeoutMs: 30_000,
        memoryMb: 128,
      });
      const result = await child.done;
      if (result.outcome !== "ok") throw new Error(`bare spawn failed: ${result.reason}`);
    }
  };
  await Promise.all(Array.from({ length: Math.min(cap, count) }, worker));
  return count / ((performance.now() - started) / 1000);
}

interface EndToEnd {
  rate: number;
  dispatchP50: number;
  dispatchP99: number;
  idleRssMb: number;
  peakRssMb: number;
  peakRunning: number;
  /** Spawn → exit of a task, p50, ms. */
  runP50: number;
}

interface EndToEndOptions {
  count: number;
  cap: number;
  /** Payload size in bytes. @default 2 */
  payloadBytes?: number;
  /** Functions config file (e.g. for `isolation: "function"`). @default none */
  functionsConfig?: string;
  /** `debug` gives per-task dispatch figures; `info` is the runner's default. @default "info" */
  logLevel?: string;
}

const stamp = (line: { "@timestamp"?: string } | undefined) =>
  Date.parse((line as { "@timestamp": string })["@timestamp"]);

/** Pre-load tasks, start a runner, time from its group join to the last outcome. */
async function endToEnd(brokers: string, options: EndToEndOptions): Promise<EndToEnd> {
  const { count, cap, payloadBytes = 2 } = options;
  const topic = unique("bench");
  const kafka = createKafka({
    brokers: brokers.split(","),
    clientId: "bench",
    security: benchSecurity(),
  });
  const admin = kafka.admin();
  const producer = createProducer(kafka);
  await Promise.all([admin.connect(), producer.connect()]);
  await admin.createTopics({ topics: [{ topic, numPartitions: 4 }], waitForLeaders: true });
  const value = JSON.stringify({ pad: "x".repeat(Math.max(0, payloadBytes - 10)) });
  // Batches stay under the broker's default request and message size limits (~1 MB).
  const perBatch = Math.max(1, Math.min(500, Math.floor(900_000 / (payloadBytes + 200))));
  for (let i = 0; i < count; i += perBatch) {
    const n = Math.min(perBatch, count - i);
    await producer.send({
      topic,
      messages: Array.from({ length: n }, () => ({ value, headers: { php_worker: "noop" } })),
    });
  }
  await Promise.all([admin.disconnect(), producer.disconnect()]);

  await using runner = new RunnerProcess({
    TASK_TOPIC: topic,
    GROUP_ID: topic,
    FUNCTIONS_DIR: FUNCTIONS,
    MAX_RUNNING: String(cap),
    MAX_PAYLOAD_BYTES: String(2 * 1024 * 1024),
    LOG_LEVEL: options.logLevel ?? "info",
    ...(options.functionsConfig ? { FUNCTIONS_CONFIG: options.functionsConfig } : {}),
  });
  const joined = await runner.waitFor(
    "the group join",
    () => runner.lines.find((l) => l.message.startsWith("Joined group")),
    60_000,
  );
  const idle = await Deno.readTextFile(`/proc/${runner.process.pid}/status`);
  let peakRunning = 0;
  const sampler = setInterval(() => {
    peakRunning = Math.max(peakRunning, childCount(runner.process.pid));
  }, 50);
  const outcomes = await runner.waitForOutcomes(count, 600_000).finally(() =>
    clearInterval(sampler)
  );
  const lastLine = runner.lines.filter((l) => l.properties?.outcome !== undefined).at(-1);
  const failed = outcomes.filter((o) => o.outcome !== "ok");
  if (failed.length) {
    throw new Error(`${failed.length} tasks did not end ok: ${JSON.stringify(failed[0])}`);
  }
  const status = await Deno.readTextFile(`/proc/${runner.process.pid}/status`);
  const kb = (text: string, field: string) =>
    Number(new RegExp(`${field}:\\s+(\\d+) kB`).exec(text)?.[1] ?? NaN);
  const starts = runner.lines.filter((l) => l.message.startsWith("Started"));
  const dispatch = starts.map((l) => l.properties.dispatchMs as number).sort((a, b) => a - b);
  return {
    rate: count / Math.max(0.001, (stamp(lastLine as never) - stamp(joined as never)) / 1000),
    dispatchP50: percentile(dispatch, 50),
    dispatchP99: percentile(dispatch, 99),
    idleRssMb: kb(idle, "VmRSS") / 1024,
    peakRssMb: kb(status, "VmHWM") / 1024,
    peakRunning,
    runP50: percentile(outcomes.map((o) => o.durationMs as number).sort((a, b) => a - b), 50),
  };
}

/** Live child processes of `pid`, from /proc (a sampled count: a child may come and go unseen). */
function childCount(pid: number): number {
  let n = 0;
  try {
    for (const task of Deno.readDirSync(`/proc/${pid}/task`)) {
      const children = Deno.readTextFileSync(`/proc/${pid}/task/${task.name}/children`);
      n += children.split(" ").filter(Boolean).length;
    }
  } catch {
    // the runner is exiting
  }
  return n;
}

const cores = navigator.hardwareConcurrency;
const memGb = Deno.systemMemoryInfo().total / 1024 ** 3;
console.log(
  `task-runner bench: deno ${Deno.version.deno}, ${cores} cores, ${fmt(memGb, 0)} GiB, ` +
    `${TASKS} tasks`,
);
const brokers = await benchBrokers();
console.log(`broker ${brokers}`);
const warmConfig = await functionsConfig({
  noop: { isolation: "function", warm: { concurrency: 16 } },
});
const row = (label: string, value: string) => console.log(`${label.padEnd(54)}${value}`);

// Warm the transpile cache once so neither side pays it.
const noPayload = new TextEncoder().encode("{}");
await bareSpawnRate(4, 4, noPayload);

const cap = 100;
const bare = await bareSpawnRate(TASKS, cap, noPayload);
const bestBare = Math.max(
  ...await Promise.all([2, 4].map((c) => bareSpawnRate(200, c, noPayload))),
);
// At the runner's default log level, as deployed; the table below logs at debug for dispatch.
const e2e = await endToEnd(brokers, { count: TASKS, cap });
console.log(`\n== process per task (isolation: task), no-op handler, cap ${cap} ==`);
row("bare spawn rate, cap 100 (Sandbox.spawn, no Kafka)", `${fmt(bare)} tasks/s`);
row("bare spawn rate, best of cap 2 and 4", `${fmt(bestBare)} tasks/s`);
row("end-to-end rate (broker → runner → child)", `${fmt(e2e.rate)} tasks/s`);
row("ratio end-to-end / bare (cap 100, same run)", fmt(e2e.rate / bare, 2));
row("ratio end-to-end / best bare", fmt(e2e.rate / bestBare, 2));
row("peak live children (sampled every 50 ms)", String(e2e.peakRunning));
row("runner RSS idle / peak with the cap full", `${fmt(e2e.idleRssMb)} / ${fmt(e2e.peakRssMb)} MB`);

const warmTasks = TASKS * 5;
const warm = await endToEnd(brokers, {
  count: warmTasks,
  cap,
  functionsConfig: warmConfig.path,
});
console.log(`\n== warm sandboxes (isolation: function, concurrency 16), cap ${cap} ==`);
row(`end-to-end rate, ${warmTasks} no-op tasks`, `${fmt(warm.rate)} tasks/s`);
row("ratio function mode / bare spawn rate (cap 100)", fmt(warm.rate / bare, 1));
row("ratio function mode / task mode end-to-end", fmt(warm.rate / e2e.rate, 1));
row("runner peak RSS", `${fmt(warm.peakRssMb)} MB`);

// Flow control on the hot path: the same warm run with a per-function limit at the cap, so
// that the limit is checked and counted for every task but never holds one back.
await using limitedConfig = await functionsConfig({
  noop: { isolation: "function", warm: { concurrency: 16 }, maxRunning: cap },
});
const limited = await endToEnd(brokers, {
  count: warmTasks,
  cap,
  functionsConfig: limitedConfig.path,
});
console.log(`\n== flow control: the same with maxRunning ${cap} on the function ==`);
row(`end-to-end rate with maxRunning ${cap}`, `${fmt(limited.rate)} tasks/s`);
row("ratio with / without the per-function limit (>= 0.97)", fmt(limited.rate / warm.rate, 2));

const samples = values.quick ? 40 : 100;
const alo = { delivery: "at-least-once" };
const fn = { isolation: "function" };
const pair = (xs: number[], digits = 1) =>
  `${fmt(percentile(xs, 50), digits)} / ${fmt(percentile(xs, 99), digits)} ms`;

const steadyCount = values.quick ? 150 : 400;
const steady = await steadyLoad(brokers, { count: steadyCount, gapMs: 30 });
const steadyAlo = await steadyLoad(brokers, {
  count: steadyCount,
  gapMs: 30,
  functions: { stamp: alo },
});
console.log(
  `\n== steady load: ${steadyCount} tasks at ~${fmt(steady.rate, 0)}/s, task mode ` +
    `(first 5 left out as warm-up) ==`,
);
row("dispatch (fetched → spawned), at-most-once p50 / p99", pair(steady.dispatch, 2));
row("dispatch (fetched → spawned), at-least-once p50 / p99", pair(steadyAlo.dispatch, 2));
row("fetched → task handed over (commit incl.), at-most-once", pair(steady.handover, 2));
row("fetched → task handed over, at-least-once", pair(steadyAlo.handover, 2));
row("produce → handler start, at-most-once p50 / p99", pair(steady.latency));
row("produce → handler start, at-least-once p50 / p99", pair(steadyAlo.latency));

const light = (functions: Record<string, unknown>, env: Record<string, string> = {}) =>
  steadyLoad(brokers, { count: samples, gapMs: 100, functions, env });
const lightAmo = await light({});
const lightAlo = await light({ stamp: alo });
const prewarmed = await light({}, { PREWARM: "2" });
const prewarmedAlo = await light({ stamp: alo }, { PREWARM: "2" });
const warmLight = await light({ stamp: fn });
const warmAlo = await light({ stamp: { ...fn, ...alo } });
console.log(
  `\n== light load: one task every 100 ms, produce → handler start p50 / p99 ` +
    `(first 5 left out as warm-up) ==`,
);
console.log("(at-most-once commits before the start: one broker round trip more)");
row("task mode, at-most-once", pair(lightAmo.latency));
row("task mode, at-least-once", pair(lightAlo.latency));
row("task mode, PREWARM=2, at-most-once", pair(prewarmed.latency));
row("task mode, PREWARM=2, at-least-once", pair(prewarmedAlo.latency));
row("function mode, at-most-once", pair(warmLight.latency));
row("function mode, at-least-once", pair(warmAlo.latency));
row("dispatch (fetched → spawned), at-most-once", pair(lightAmo.dispatch, 2));
row("dispatch (fetched → spawned), at-least-once", pair(lightAlo.dispatch, 2));

if (!values.quick) {
  console.log(`\n== how cost grows (task mode): ${Math.min(TASKS, 300)} tasks per row ==`);
  console.log(
    "| cap | payload | tasks/s | task run p50 ms (spawn → exit) | " +
      "dispatch p50 / p99 ms (slot → spawned) | runner peak RSS MB |",
  );
  console.log("|---:|---:|---:|---:|---:|---:|");
  const rows: Array<[number, number]> = [
    [1, 2],
    [10, 2],
    [100, 2],
    [100, 1024],
    [100, 100 * 1024],
    [100, 1_000_000],
  ];
  for (const [c, bytes] of rows) {
    const n = c === 1 ? Math.min(TASKS, 100) : Math.min(TASKS, 300);
    const r = await endToEnd(brokers, { count: n, cap: c, payloadBytes: bytes, logLevel: "debug" });
    const size = bytes < 1024
      ? `${bytes} B`
      : bytes < 1_000_000
      ? `${bytes / 1024} KB`
      : `${bytes / 1_000_000} MB`;
    console.log(
      `| ${c} | ${size} | ${fmt(r.rate)} | ${fmt(r.runP50, 0)} | ` +
        `${fmt(r.dispatchP50, 1)} / ${fmt(r.dispatchP99, 1)} | ${fmt(r.peakRssMb)} |`,
    );
  }
}
await warmConfig[Symbol.asyncDispose]();
Deno.exit(0);
