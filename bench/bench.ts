/**
 * `deno task bench`: figures for the README, measured side by side in one run.
 *
 * 1. bare spawn rate of the no-op sandboxed handler (Sandbox.spawn directly, no Kafka),
 * 2. end-to-end rate of N no-op tasks through the broker and the runner (same cap),
 * 3. their ratio, latency produce → handler start (light load) and fetch → spawn,
 * 4. the runner's peak RSS (VmHWM) and the cost of payload sizes and caps.
 *
 * Options: --tasks N (default 1000), --quick (fewer tasks, no table).
 * Uses KAFKA_BROKERS, or starts the local broker on 127.0.0.1:39092.
 */
import { parseArgs } from "node:util";
import { fileURLToPath } from "node:url";
import { Sandbox } from "../runner/sandbox.ts";
import { createKafka, createProducer } from "../runner/kafka.ts";
import { startLocalBroker } from "../runner/local_broker.ts";
import { RunnerProcess, unique } from "../tests/integration/harness.ts";

const FUNCTIONS = fileURLToPath(new URL("./functions/", import.meta.url));
const { values } = parseArgs({
  args: Deno.args,
  options: {
    tasks: { type: "string", default: "1000" },
    quick: { type: "boolean", default: false },
  },
});
const TASKS = Number(values.tasks);

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}
const fmt = (n: number, digits = 1) => n.toFixed(digits);

/** Spawn `count` no-op children directly, `cap` at a time; tasks per second. */
async function bareSpawnRate(count: number, cap: number, payload: Uint8Array): Promise<number> {
  const sandbox = new Sandbox();
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
  peakRssMb: number;
  peakRunning: number;
}

/** Pre-load `count` tasks, start a runner, time until all have an outcome. */
async function endToEnd(
  brokers: string,
  count: number,
  cap: number,
  payloadBytes: number,
): Promise<EndToEnd> {
  const topic = unique("bench");
  const kafka = createKafka({ brokers: brokers.split(","), clientId: "bench" });
  const admin = kafka.admin();
  const producer = createProducer(kafka);
  await Promise.all([admin.connect(), producer.connect()]);
  await admin.createTopics({ topics: [{ topic, numPartitions: 4 }], waitForLeaders: true });
  const value = JSON.stringify({ pad: "x".repeat(Math.max(0, payloadBytes - 10)) });
  for (let i = 0; i < count; i += 500) {
    const n = Math.min(500, count - i);
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
  });
  const first = await runner.waitFor(
    "the first start",
    () => runner.lines.find((l) => l.message.startsWith("Started")),
    60_000,
  );
  const t0 = Date.parse((first as unknown as { "@timestamp": string })["@timestamp"]);
  const outcomes = await runner.waitForOutcomes(count, 600_000);
  const lastLine = runner.lines.filter((l) => l.properties?.outcome !== undefined).at(-1)!;
  const t1 = Date.parse((lastLine as unknown as { "@timestamp": string })["@timestamp"]);
  const failed = outcomes.filter((o) => o.outcome !== "ok");
  if (failed.length) {
    throw new Error(`${failed.length} tasks did not end ok: ${JSON.stringify(failed[0])}`);
  }
  const status = await Deno.readTextFile(`/proc/${runner.process.pid}/status`);
  const hwm = Number(/VmHWM:\s+(\d+) kB/.exec(status)?.[1] ?? NaN);
  const starts = runner.lines.filter((l) => l.message.startsWith("Started"));
  const dispatch = starts.map((l) => l.properties.dispatchMs as number).sort((a, b) => a - b);
  return {
    rate: count / Math.max(0.001, (t1 - t0) / 1000),
    dispatchP50: percentile(dispatch, 50),
    dispatchP99: percentile(dispatch, 99),
    peakRssMb: hwm / 1024,
    peakRunning: Math.max(...starts.map((l) => l.properties.running as number)),
  };
}

/** Light load: one task every `gapMs`; produce → handler start latency. */
async function lightLoadLatency(brokers: string, count: number, gapMs: number): Promise<number[]> {
  const topic = unique("latency");
  await using runner = new RunnerProcess({
    TASK_TOPIC: topic,
    GROUP_ID: topic,
    FUNCTIONS_DIR: FUNCTIONS,
  });
  await runner.waitFor(
    "the group join",
    () => runner.lines.find((l) => l.message.startsWith("Joined group")),
    60_000,
  );
  const kafka = createKafka({ brokers: brokers.split(","), clientId: "bench" });
  const producer = createProducer(kafka);
  await producer.connect();
  for (let i = 0; i < count; i++) {
    await producer.send({ topic, messages: [{ value: "{}", headers: { php_worker: "stamp" } }] });
    await new Promise((r) => setTimeout(r, gapMs));
  }
  await producer.disconnect();
  await runner.waitForOutcomes(count);
  return runner.output("stamp").map((line) => {
    const [, started, produced] = line.split(" ").map(Number);
    return started - produced;
  }).sort((a, b) => a - b);
}

const cores = navigator.hardwareConcurrency;
const memGb = Deno.systemMemoryInfo().total / 1024 ** 3;
1024 / 1024;
console.log(
  `task-runner bench: deno ${Deno.version.deno}, ${cores} cores, ${
    fmt(memGb, 0)
  } GiB, ${TASKS} tasks`,
);
const brokers = Deno.env.get("KAFKA_BROKERS") || await startLocalBroker({ port: 39092 });
console.log(`broker ${brokers}`);

// Warm the transpile cache once so neither side pays it.
await bareSpawnRate(4, 4, new TextEncoder().encode("{}"));

const cap = 100;
const bare = await bareSpawnRate(TASKS, cap, new TextEncoder().encode("{}"));
const e2e = await endToEnd(brokers, TASKS, cap, 2);
console.log(`\n== process-per-task, no-op handler, cap ${cap} ==`);
console.log(`bare spawn rate (Sandbox.spawn, no Kafka)   ${fmt(bare)} tasks/s`);
console.log(`end-to-end rate (broker → runner → child)   ${fmt(e2e.rate)} tasks/s`);
console.log(`ratio end-to-end / bare                     ${fmt(e2e.rate / bare, 2)}`);
console.log(
  `fetch → spawn p50 / p99                     ${fmt(e2e.dispatchP50, 2)} / ${
    fmt(e2e.dispatchP99, 2)
  } ms`,
);
console.log(`peak live children                          ${e2e.peakRunning}`);
console.log(`runner peak RSS (VmHWM)                     ${fmt(e2e.peakRssMb)} MB`);

const latency = await lightLoadLatency(brokers, values.quick ? 20 : 50, 100);
console.log(`\n== light load: one task every 100 ms ==`);
console.log(
  `produce → handler start p50 / p99            ${percentile(latency, 50)} / ${
    percentile(latency, 99)
  } ms`,
);

if (!values.quick) {
  console.log(`\n== how cost grows: ${Math.min(TASKS, 300)} tasks per row ==`);
  console.log("| cap | payload | tasks/s | fetch→spawn p99 ms | runner peak RSS MB |");
  console.log("|---:|---:|---:|---:|---:|");
  const rows: Array<[number, number]> = [
    [1, 2],
    [10, 2],
    [100, 2],
    [100, 1024],
    [100, 100 * 1024],
    [100, 1024 * 1024],
  ];
  for (const [c, bytes] of rows) {
    const n = c === 1 ? Math.min(TASKS, 100) : Math.min(TASKS, 300);
    const r = await endToEnd(brokers, n, c, bytes);
    const size = bytes < 1024
      ? `${bytes} B`
      : bytes < 1024 * 1024
      ? `${bytes / 1024} KB`
      : `${bytes / 1024 / 1024} MB`;
    console.log(
      `| ${c} | ${size} | ${fmt(r.rate)} | ${fmt(r.dispatchP99, 2)} | ${fmt(r.peakRssMb)} |`,
    );
  }
}
Deno.exit(0);
