/**
 * Prewarmed sandboxes against cold starts, side by side in one run, through the broker and the
 * runner as a subprocess (as `bench.ts` does):
 *
 * 1. light load, one task every `--gap` ms: latency produce → handler start, p50 / p99 (the
 *    first task of each run is left out: with PREWARM it is the one that starts cold);
 * 2. throughput of `--tasks` queued no-op tasks at cap 100, with the CPU they cost (runner
 *    plus children, from /proc), how many tasks took a prewarmed child and how many idle
 *    children were evicted or killed for lack of room.
 *
 * `deno run -A bench/prewarm_bench.ts [--tasks 1000] [--latency-tasks 50] [--gap 100]
 * [--prewarm 2]`. Uses KAFKA_BROKERS, or starts the local broker on 127.0.0.1:39092.
 */
import { parseArgs } from "node:util";
import { fileURLToPath } from "node:url";
import { createKafka, createProducer } from "../runner/kafka/client.ts";
import { benchBrokers, benchSecurity } from "./broker.ts";
import { type LogLine, RunnerProcess, unique } from "../tests/helpers/harness.ts";
import { fmt, percentile } from "./stats.ts";

const FUNCTIONS = fileURLToPath(new URL("./functions/", import.meta.url));
const { values } = parseArgs({
  args: Deno.args,
  options: {
    tasks: { type: "string", default: "1000" },
    "latency-tasks": { type: "string", default: "50" },
    gap: { type: "string", default: "100" },
    prewarm: { type: "string", default: "2" },
  },
});
const TASKS = Number(values.tasks);
const LATENCY_TASKS = Number(values["latency-tasks"]);
const GAP_MS = Number(values.gap);
const PREWARM = Number(values.prewarm);
const CAP = 100;
const TICKS_PER_SECOND = 100; // USER_HZ on Linux

const at = (line: LogLine) =>
  Date.parse((line as unknown as { "@timestamp": string })["@timestamp"]);
const pidsOf = (runner: RunnerProcess, prefix: string) =>
  new Set(runner.lines.filter((l) => l.message.startsWith(prefix)).map((l) => l.properties.pid));

/** CPU seconds of a process and of its reaped children, from /proc. */
function cpuSeconds(pid: number): number {
  const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ").map(Number);
  return (f[11] + f[12] + f[13] + f[14]) / TICKS_PER_SECOND;
}

/** Light load: one task every GAP_MS; produce → handler start latencies, sorted. */
async function latency(brokers: string, prewarm: number): Promise<number[]> {
  const topic = unique("prewarm_latency");
  await using runner = new RunnerProcess({
    TASK_TOPIC: topic,
    GROUP_ID: topic,
    FUNCTIONS_DIR: FUNCTIONS,
    PREWARM: String(prewarm),
  });
  await runner.waitFor(
    "the group join",
    () => runner.lines.find((l) => l.message.startsWith("Joined group")),
    60_000,
  );
  const producer = createProducer(
    createKafka({ brokers: brokers.split(","), clientId: "bench", security: benchSecurity() }),
  );
  await producer.connect();
  for (let i = 0; i <= LATENCY_TASKS; i++) {
    await producer.send({ topic, messages: [{ value: "{}", headers: { php_worker: "stamp" } }] });
    await new Promise((r) => setTimeout(r, GAP_MS));
  }
  await producer.disconnect();
  await runner.waitForOutcomes(LATENCY_TASKS + 1);
  return runner.output("stamp").slice(1).map((line) => {
    const [, started, produced] = line.split(" ").map(Number);
    return started - produced;
  }).sort((a, b) => a - b);
}

interface Throughput {
  rate: number;
  cpuMsPerTask: number;
  prewarmedTakes: number;
  killed: number;
}

/** Queue `count` no-op tasks, start a runner, time until all have an outcome. */
async function throughput(brokers: string, count: number, prewarm: number): Promise<Throughput> {
  const topic = unique("prewarm_rate");
  const kafka = createKafka({
    brokers: brokers.split(","),
    clientId: "bench",
    security: benchSecurity(),
  });
  const admin = kafka.admin();
  const producer = createProducer(kafka);
  await Promise.all([admin.connect(), producer.connect()]);
  await admin.createTopics({ topics: [{ topic, numPartitions: 4 }], waitForLeaders: true });
  for (let i = 0; i < count; i += 500) {
    const messages = Array.from(
      { length: Math.min(500, count - i) },
      () => ({ value: "{}", headers: { php_worker: "noop" } }),
    );
    await producer.send({ topic, messages });
  }
  await Promise.all([admin.disconnect(), producer.disconnect()]);

  await using runner = new RunnerProcess({
    TASK_TOPIC: topic,
    GROUP_ID: topic,
    FUNCTIONS_DIR: FUNCTIONS,
    MAX_RUNNING: String(CAP),
    PREWARM: String(prewarm),
  });
  const first = await runner.waitFor(
    "the first start",
    () => runner.lines.find((l) => l.message.startsWith("Started")),
    60_000,
  );
  const cpuBefore = cpuSeconds(runner.process.pid);
  const outcomes = await runner.waitForOutcomes(count, 600_000);
  const cpu = cpuSeconds(runner.process.pid) - cpuBefore;
  const failed = outcomes.filter((o) => o.outcome !== "ok");
  if (failed.length) throw new Error(`${failed.length} tasks failed: ${JSON.stringify(failed[0])}`);
  const last = runner.lines.filter((l) => l.properties?.outcome !== undefined).at(-1)!;
  const prewarmed = pidsOf(runner, "Prewarmed");
  const started = [...pidsOf(runner, "Started")];
  return {
    rate: count / Math.max(0.001, (at(last) - at(first)) / 1000),
    cpuMsPerTask: (cpu / count) * 1000,
    prewarmedTakes: started.filter((pid) => prewarmed.has(pid)).length,
    killed: runner.lines.filter((l) => /^Prewarmed .* killed/.test(l.message)).length,
  };
}

console.log(
  `prewarm bench: deno ${Deno.version.deno}, ${navigator.hardwareConcurrency} cores, ` +
    `load average ${Deno.loadavg().map((n) => fmt(n, 2)).join(" ")} at start`,
);
const brokers = await benchBrokers();
console.log(`broker ${brokers}`);

const modes = [0, PREWARM];
const label = (k: number) => (k === 0 ? "cold (PREWARM=0)" : `prewarmed (PREWARM=${k})`);

console.log(
  `\n== light load: one task every ${GAP_MS} ms, produce → handler start, ` +
    `${LATENCY_TASKS} tasks per row ==`,
);
console.log("| mode | p50 ms | p99 ms | max ms |\n|---|---:|---:|---:|");
for (const k of modes) {
  const l = await latency(brokers, k);
  console.log(`| ${label(k)} | ${percentile(l, 50)} | ${percentile(l, 99)} | ${l.at(-1)} |`);
}

console.log(`\n== throughput: ${TASKS} queued no-op tasks, cap ${CAP} ==`);
console.log(
  "| mode | tasks/s | CPU ms/task (runner + children) | tasks in a prewarmed child | " +
    "prewarmed children killed unused |\n|---|---:|---:|---:|---:|",
);
for (const k of modes) {
  const t = await throughput(brokers, TASKS, k);
  console.log(
    `| ${label(k)} | ${fmt(t.rate)} | ${fmt(t.cpuMsPerTask, 2)} | ${t.prewarmedTakes} | ` +
      `${t.killed} |`,
  );
}
Deno.exit(0);
