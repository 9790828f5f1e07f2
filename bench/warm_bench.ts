/**
 * Task mode (a `deno run` per task) against function mode (warm sandboxes), side by side in
 * one run: no-op tasks per second at the same number of tasks in flight, CPU per task (runner
 * plus children), and the warm processes' resident memory before they are closed. No Kafka.
 *
 * `deno run -A bench/warm_bench.ts [--inflight 16] [--tasks 5000] [--cold-tasks 300]`
 */
import { parseArgs } from "node:util";
import { fileURLToPath } from "node:url";
import type { RunningChild, SandboxTask } from "../runner/sandbox/process_source.ts";
import { Sandbox } from "../runner/sandbox/task_sandbox.ts";
import { WarmSandboxes } from "../runner/sandbox/warm_sandbox.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    inflight: { type: "string", default: "16" },
    tasks: { type: "string", default: "5000" },
    "cold-tasks": { type: "string", default: "300" },
  },
});
const INFLIGHT = Number(values.inflight);
const TASKS = Number(values.tasks);
const COLD_TASKS = Number(values["cold-tasks"]);
const TICKS_PER_SECOND = 100; // USER_HZ on Linux

const TASK: SandboxTask = {
  handler: "noop",
  file: fileURLToPath(new URL("./functions/noop.ts", import.meta.url)),
  task: { headers: {}, key: null, topic: "bench", partition: 0, offset: "0", timestamp: "" },
  payload: new TextEncoder().encode('{"n":1}'),
  timeoutMs: 30_000,
  memoryMb: 128,
};

/** CPU seconds of a process from /proc: its own, and its reaped children's. */
function cpu(pid: number | "self"): { own: number; children: number } {
  const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ").map(Number);
  return {
    own: (fields[11] + fields[12]) / TICKS_PER_SECOND,
    children: (fields[13] + fields[14]) / TICKS_PER_SECOND,
  };
}

function rssMb(pid: number): number {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1] ?? NaN) / 1024;
}

/** Run `count` tasks with at most `inflight` at a time; seconds taken. */
async function drive(
  spawn: () => RunningChild,
  count: number,
  inflight: number,
  pids: Set<number>,
): Promise<number> {
  let next = 0;
  const started = performance.now();
  const worker = async () => {
    while (next < count) {
      next++;
      const child = spawn();
      pids.add(child.pid);
      const result = await child.done;
      if (result.outcome !== "ok") throw new Error(`task failed: ${result.reason}`);
    }
  };
  await Promise.all(Array.from({ length: Math.min(inflight, count) }, worker));
  return (performance.now() - started) / 1000;
}

/** Sequential latency of one task at a time, median in ms. */
async function medianLatency(spawn: () => RunningChild, count: number): Promise<number> {
  const times: number[] = [];
  for (let i = 0; i < count; i++) {
    const started = performance.now();
    await spawn().done;
    times.push(performance.now() - started);
  }
  return times.sort((a, b) => a - b)[Math.floor(count / 2)];
}

interface Figures {
  mode: string;
  tasks: number;
  rate: number;
  cpuMsPerTask: number;
  latencyMs: number;
  processes: number;
  rssMb: number | null;
  startMs: number | null;
}

async function taskMode(): Promise<Figures> {
  const sandbox = new Sandbox();
  const spawn = () => sandbox.spawn(TASK);
  const latencyMs = await medianLatency(spawn, 20);
  const before = cpu("self");
  const pids = new Set<number>();
  const seconds = await drive(spawn, COLD_TASKS, INFLIGHT, pids);
  const after = cpu("self");
  const cpuSeconds = after.own - before.own + after.children - before.children;
  return {
    mode: "task (process per task)",
    tasks: COLD_TASKS,
    rate: COLD_TASKS / seconds,
    cpuMsPerTask: (cpuSeconds / COLD_TASKS) * 1000,
    latencyMs,
    processes: pids.size,
    rssMb: null,
    startMs: null,
  };
}

async function functionMode(concurrency: number): Promise<Figures> {
  const warm = new WarmSandboxes({ concurrency, maxTasks: 1_000_000 });
  const spawn = () => warm.spawn(TASK);
  const pids = new Set<number>();
  try {
    // Start the processes first: start-up is paid once per process, not per task.
    const startSeconds = await drive(spawn, INFLIGHT, INFLIGHT, pids);
    const latencyMs = await medianLatency(spawn, 200);
    const self = cpu("self");
    const childBefore = new Map([...pids].map((pid) => [pid, cpu(pid).own]));
    const seconds = await drive(spawn, TASKS, INFLIGHT, pids);
    const childSeconds = [...pids].reduce(
      (sum, pid) => sum + cpu(pid).own - (childBefore.get(pid) ?? 0),
      0,
    );
    const cpuSeconds = cpu("self").own - self.own + childSeconds;
    return {
      mode: `function, concurrency ${concurrency}`,
      tasks: TASKS,
      rate: TASKS / seconds,
      cpuMsPerTask: (cpuSeconds / TASKS) * 1000,
      latencyMs,
      processes: warm.processes,
      rssMb: [...pids].reduce((sum, pid) => sum + rssMb(pid), 0),
      startMs: startSeconds * 1000,
    };
  } finally {
    await warm.close();
  }
}

const fmt = (n: number | null, digits = 1) => (n === null ? "-" : n.toFixed(digits));
console.log(
  `no-op handler, ${INFLIGHT} tasks in flight, ${Deno.build.target}, ` +
    `deno ${Deno.version.deno}, ${navigator.hardwareConcurrency} cores`,
);
const rows = [await taskMode(), await functionMode(1), await functionMode(8)];
console.log(
  "\n| mode | tasks | tasks/s | CPU ms/task | latency p50 (1 at a time) | processes | " +
    "warm RSS total | first round (start-up) |\n|---|---|---|---|---|---|---|---|",
);
for (const r of rows) {
  console.log(
    `| ${r.mode} | ${r.tasks} | ${fmt(r.rate, 0)} | ${fmt(r.cpuMsPerTask, 2)} | ` +
      `${fmt(r.latencyMs, 2)} ms | ${r.processes} | ${
        r.rssMb === null ? "-" : `${fmt(r.rssMb)} MB`
      } | ` +
      `${r.startMs === null ? "-" : `${fmt(r.startMs, 0)} ms`} |`,
  );
}
const base = rows[0].rate;
console.log(
  `\nfunction mode / task mode: ${
    rows.slice(1).map((r) => `${fmt(r.rate / base, 0)}×`).join(", ")
  }`,
);
