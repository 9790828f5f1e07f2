/**
 * Function mode at its limit, side by side in one run (issue 16):
 *
 * 1. Kafka-free: WarmSandboxes serving no-op tasks at the runner's warm settings;
 * 2. end to end: the runner (default configuration except `isolation: "function"`, default log
 *    level, one outcome line per task) consuming pre-produced no-op tasks; runner CPU per task
 *    (user+sys from /proc over the run / tasks);
 * 3. the least any bridge must do: kafkajs `eachBatch` → one warm Deno process over a pipe,
 *    no ledger, no logs, no commits (bench/reference_bridge.ts).
 *
 * 1 and 2 run at `warm.concurrency` `--concurrency` (16), then again at the default, 1 (one warm
 * process per task in flight: 100 at the cap).
 *
 * 4. at-most-once function mode latency at light load next to the commit round trip on the same
 *    broker (bench/commit_latency.ts), on the bench broker and, unless `--no-default-linger`, on
 *    a second local broker with Kafka's default `group.coordinator.append.linger.ms` (5 ms).
 *
 * `--profile DIR` runs the runner with `--cpu-prof` and prints its top 10 frames by self time.
 * `--console` runs the end-to-end part four ways more, side by side, in `--rounds` rounds (3) of
 * `--console-tasks` tasks (40,000): console off, alone and with a headless Chromium on
 * about:blank; console on, with that Chromium on its Overview and with only a curl on its live
 * stream (the console's own cost, apart from a browser's on the same machine).
 * `--browser-idle` runs the browser under SCHED_IDLE (`chrt --idle`), as a stand-in for an
 * operator's browser on another machine: Chromium raises its browser process to nice -8.
 *
 * `deno run -A bench/function_mode.ts [--tasks 20000] [--concurrency 16] [--profile DIR] [--console]
 * [--rounds 3] [--console-tasks 40000] [--browser-idle] [--no-default-linger]`
 */
import { parseArgs } from "node:util";
import { fileURLToPath } from "node:url";
import { OPTIONS } from "../runner/config.ts";
import { createKafka, createProducer } from "../runner/kafka/client.ts";
import type { SandboxTask } from "../runner/sandbox/process_source.ts";
import { WarmSandboxes } from "../runner/sandbox/warm_sandbox.ts";
import { benchBrokers } from "./broker.ts";
import { fmt } from "./stats.ts";
import { functionsConfig, ROOT, runTaskArgs, unique } from "../tests/helpers/harness.ts";
import { referenceBridge } from "./reference_bridge.ts";
import { commitLatency } from "./commit_latency.ts";
import { percentile } from "./stats.ts";
import { ConfigResourceTypes } from "kafkajs";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    tasks: { type: "string", default: "20000" },
    concurrency: { type: "string", default: "16" },
    profile: { type: "string" },
    console: { type: "boolean", default: false },
    rounds: { type: "string", default: "3" },
    "console-tasks": { type: "string", default: "40000" },
    "no-default-linger": { type: "boolean", default: false },
    "browser-idle": { type: "boolean", default: false },
  },
});
const TASKS = Number(values.tasks);
const CONCURRENCY = Number(values.concurrency);
const CONSOLE_TASKS = Number(values["console-tasks"]);
const TICKS_PER_SECOND = 100; // USER_HZ on Linux
const FUNCTIONS = fileURLToPath(new URL("./functions/", import.meta.url));
const CAP = Number(OPTIONS.find((o) => o.env === "MAX_RUNNING")?.default ?? 100);

/**
 * User+sys CPU seconds of a process, from /proc; with `reaped`, plus those of its children that
 * have exited and been waited for.
 */
function cpuSeconds(pid: number | "self", { reaped = false } = {}): number {
  const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ").map(Number);
  return (fields[11] + fields[12] + (reaped ? fields[13] + fields[14] : 0)) / TICKS_PER_SECOND;
}

/** 1. WarmSandboxes without Kafka, `CAP` tasks in flight as the runner would keep. */
async function kafkaFree(
  count: number,
  concurrency = CONCURRENCY,
): Promise<{ rate: number; cpu: CpuShares }> {
  const warm = new WarmSandboxes({ concurrency });
  const task: SandboxTask = {
    handler: "noop",
    file: `${FUNCTIONS}noop.ts`,
    task: { headers: {}, key: null, topic: "bench", partition: 0, offset: "0", timestamp: "" },
    payload: new TextEncoder().encode("{}"),
    timeoutMs: 30_000,
    memoryMb: 128,
  };
  const run = async (n: number) => {
    for (let i = 0; i < n; i++) {
      const result = await warm.spawn(task).done;
      if (result.outcome !== "ok") throw new Error(`warm task failed: ${result.reason}`);
    }
  };
  await run(CAP); // processes started, JIT warm
  const start = cpuSample("self", null);
  await Promise.all(Array.from({ length: CAP }, () => run(Math.ceil(count / CAP))));
  const end = cpuSample("self", null);
  const tasks = Math.ceil(count / CAP) * CAP;
  await warm.close();
  return { rate: tasks / ((end.at - start.at) / 1000), cpu: cpuShares(start, end, tasks) };
}

async function produce(brokers: string, topic: string, count: number): Promise<void> {
  const kafka = createKafka({ brokers: brokers.split(","), clientId: "bench" });
  const admin = kafka.admin();
  const producer = createProducer(kafka);
  await Promise.all([admin.connect(), producer.connect()]);
  await admin.createTopics({ topics: [{ topic, numPartitions: 4 }], waitForLeaders: true });
  for (let i = 0; i < count; i += 1000) {
    const n = Math.min(1000, count - i);
    await producer.send({
      topic,
      messages: Array.from({ length: n }, () => ({ value: "{}", headers: { php_worker: "noop" } })),
    });
  }
  await Promise.all([admin.disconnect(), producer.disconnect()]);
}

interface EndToEnd {
  rate: number;
  cpuMsPerTask: number;
  /** CPU per task by party, and the machine's busy share. */
  cpu: CpuShares;
  rssMb: number;
  /** CPU of the browser's processes (and the puppeteer driving it) over the run, per task. */
  browserCpuMsPerTask?: number;
}

/**
 * User+sys CPU seconds of `pid` and all its descendants, from /proc, with that of the children
 * they have reaped (a warm process recycled after `maxTasks` has exited by the end of a run).
 */
function treeCpuSeconds(pid: number): number {
  const parents = new Map<number, number>();
  for (const entry of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    try {
      const stat = Deno.readTextFileSync(`/proc/${entry.name}/stat`);
      parents.set(Number(entry.name), Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]));
    } catch {
      // exited meanwhile
    }
  }
  const inTree = (p: number): boolean =>
    p === pid || (parents.has(p) && p > 1 && inTree(parents.get(p)!));
  let total = 0;
  for (const p of parents.keys()) {
    if (!inTree(p)) continue;
    try {
      total += cpuSeconds(p, { reaped: true });
    } catch {
      // exited meanwhile
    }
  }
  return total;
}

/**
 * Busy CPU seconds of the whole machine (all cores), from /proc/stat: all but idle and iowait,
 * steal included (time the host took from this VM's cores is capacity the run did not get).
 */
function machineBusySeconds(): number {
  const [, ...ticks] = Deno.readTextFileSync("/proc/stat").split("\n")[0].trim().split(/\s+/);
  const [user, nice, system, , , irq, softirq, steal] = ticks.map(Number);
  return (user + nice + system + irq + softirq + steal) / TICKS_PER_SECOND;
}

/** The pid of the local broker (broker/kafka.sh) serving `brokers`, or null when not local. */
function localBrokerPid(brokers: string): number | null {
  const port = brokers.split(",")[0].split(":").pop();
  for (const entry of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    try {
      const cmdline = Deno.readTextFileSync(`/proc/${entry.name}/cmdline`);
      if (cmdline.includes("kafka.Kafka") && cmdline.includes(`/data-${port}/`)) {
        return Number(entry.name);
      }
    } catch {
      // exited meanwhile, or not ours to read
    }
  }
  return null;
}

/** CPU per task of each party over a measured part, and how busy the machine was. */
interface CpuShares {
  /** Per task, ms: the process measured (the runner; the Kafka-free bench itself). */
  mainMs: number;
  /** Per task, ms: its child processes (the warm processes). */
  childrenMs: number;
  /** Per task, ms: the local broker, or null when the broker is not local. */
  brokerMs: number | null;
  /** Busy share of all cores over the measured part, 0-1. */
  machineBusy: number;
}

/** Samples to take at the start and at the end of a measured part, for {@link CpuShares}. */
function cpuSample(pid: number | "self", brokerPid: number | null) {
  const self = pid === "self" ? Deno.pid : pid;
  return {
    at: performance.now(),
    main: cpuSeconds(pid),
    tree: treeCpuSeconds(self),
    broker: brokerPid === null ? null : cpuSeconds(brokerPid),
    machine: machineBusySeconds(),
  };
}

function cpuShares(
  start: ReturnType<typeof cpuSample>,
  end: ReturnType<typeof cpuSample>,
  tasks: number,
): CpuShares {
  const perTask = (seconds: number) => (seconds * 1000) / tasks;
  const main = end.main - start.main;
  return {
    mainMs: perTask(main),
    childrenMs: perTask(end.tree - start.tree - main),
    brokerMs: start.broker === null || end.broker === null
      ? null
      : perTask(end.broker - start.broker),
    machineBusy: (end.machine - start.machine) /
      (((end.at - start.at) / 1000) * navigator.hardwareConcurrency),
  };
}

/** 2. The runner, on `count` pre-produced tasks; its rate and CPU per task. */
async function endToEnd(
  brokers: string,
  count: number,
  profileDir?: string,
  viewer: Viewer = "none",
  concurrency = CONCURRENCY,
): Promise<EndToEnd> {
  // The console is on (a listener on a port) for the viewers that use it.
  const consolePort = viewer === "console" || viewer === "stream"
    ? 39_600 + Math.floor(Math.random() * 300)
    : 0;
  // A browser is launched (on about:blank) before the runner, and shown the console once that
  // is up: Chromium's launch and the page's load fall before the measured part of the run.
  const open = viewer === "none" ? undefined : await openViewer(viewer);
  let shown = viewer === "none" || viewer === "blank";
  const topic = unique("fnmode");
  await produce(brokers, topic, count);
  await using config = await functionsConfig({
    noop: { isolation: "function", warm: { concurrency } },
  });
  const args = runTaskArgs();
  if (profileDir) args.splice(1, 0, "--cpu-prof", `--cpu-prof-dir=${profileDir}`);
  const child = new Deno.Command(Deno.execPath(), {
    args,
    cwd: ROOT,
    env: {
      KAFKA_BROKERS: brokers,
      TASK_TOPIC: topic,
      GROUP_ID: topic,
      FUNCTIONS_DIR: FUNCTIONS,
      FUNCTIONS_CONFIG: config.path,
      LOG_FORMAT: "json",
      METRICS_PORT: String(consolePort),
    },
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  // Count outcome lines without parsing the rest: the bench must not be the bottleneck. The
  // measured part begins once the runner has joined its group and the viewer shows the console.
  let outcomes = 0;
  let joined = false;
  const brokerPid = localBrokerPid(brokers);
  let start: { outcomes: number; sample: ReturnType<typeof cpuSample>; viewerCpu: number } | null =
    null;
  let done: ReturnType<typeof cpuSample> | null = null;
  const decoder = new TextDecoder();
  let tail = "";
  for await (const chunk of child.stdout) {
    const text = tail + decoder.decode(chunk, { stream: true });
    const lines = text.split("\n");
    tail = lines.pop()!;
    for (const line of lines) {
      if (consolePort !== 0 && line.includes("console on")) {
        // Not awaited: the runner's output must keep being read meanwhile.
        open!.show(`http://127.0.0.1:${consolePort}/`).then(() => shown = true);
      }
      if (!joined && line.includes("Joined group")) joined = true;
      else if (line.includes('"outcome":"ok"')) outcomes++;
      else if (line.includes('"outcome":')) throw new Error(`a task did not end ok: ${line}`);
    }
    if (!start && joined && shown) {
      if (outcomes > count / 4) {
        throw new Error(`${outcomes} tasks ended before the viewer was open: raise --tasks`);
      }
      const sample = cpuSample(child.pid, brokerPid);
      start = { outcomes, sample, viewerCpu: open?.cpuSeconds() ?? 0 };
    }
    if (outcomes >= count) {
      done = cpuSample(child.pid, brokerPid);
      break;
    }
  }
  if (!start || !done) throw new Error("the runner's output ended before its tasks did");
  const status = Deno.readTextFileSync(`/proc/${child.pid}/status`);
  const rssMb = Number(/VmHWM:\s+(\d+) kB/.exec(status)?.[1] ?? NaN) / 1024;
  const viewerCpu = open ? open.cpuSeconds() - start.viewerCpu : undefined;
  await open?.close();
  child.kill("SIGTERM");
  await child.status;
  const measured = outcomes - start.outcomes;
  const cpu = cpuShares(start.sample, done, measured);
  return {
    rate: measured / ((done.at - start.sample.at) / 1000),
    cpuMsPerTask: cpu.mainMs,
    cpu,
    rssMb,
    ...(viewerCpu === undefined ? {} : { browserCpuMsPerTask: (viewerCpu * 1000) / measured }),
  };
}

/** A viewer, launched: a browser, or (once shown a URL) curl on the live stream. */
interface OpenViewer {
  /** CPU seconds of all its processes so far. */
  cpuSeconds(): number;
  /** Open the console at `url`; resolves once the page has loaded (curl: once started). */
  show(url: string): Promise<void>;
  close(): Promise<void>;
}

/**
 * What looks at the runner during a run: nothing; a headless Chromium on a blank page (the
 * machine shared with a browser, the console off); the same browser on the console's Overview
 * (live over SSE); or `curl` on the console's live stream (`/api/events`), no browser.
 */
type Viewer = "none" | "blank" | "console" | "stream";

/**
 * Launch `viewer` (not "none"). A browser is driven from a process of its own
 * (bench/console_viewer.ts), so that puppeteer's traffic cannot slow the bench's reading of the
 * runner's output.
 */
async function openViewer(viewer: Exclude<Viewer, "none">): Promise<OpenViewer> {
  if (viewer === "stream") {
    let curl: Deno.ChildProcess | undefined;
    return {
      cpuSeconds: () => curl ? treeCpuSeconds(curl.pid) : 0,
      show: (url) => {
        curl = new Deno.Command("curl", { args: ["-sN", `${url}api/events`], stdout: "null" })
          .spawn();
        return Promise.resolve();
      },
      close: async () => {
        curl?.kill();
        await curl?.status;
      },
    };
  }
  const viewerArgs = ["run", "-A", fileURLToPath(new URL("./console_viewer.ts", import.meta.url))];
  const process = new Deno.Command(values["browser-idle"] ? "chrt" : Deno.execPath(), {
    args: [...(values["browser-idle"] ? ["--idle", "0", Deno.execPath()] : []), ...viewerArgs],
    stdin: "piped",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = process.stdout.pipeThrough(new TextDecoderStream()).getReader();
  const expect = async (word: string) => {
    const { value } = await reader.read();
    if (!value?.startsWith(word)) throw new Error(`the console viewer did not say "${word}"`);
  };
  await expect("ready");
  const stdin = process.stdin.getWriter();
  return {
    cpuSeconds: () => treeCpuSeconds(process.pid),
    show: async (url) => {
      await stdin.write(new TextEncoder().encode(`${url}\n`));
      await expect("open");
    },
    close: async () => {
      await stdin.close();
      await reader.cancel();
      await process.status;
    },
  };
}

/** Top frames by self time in the newest .cpuprofile of `dir`. */
function topFrames(dir: string, n = 10): string[] {
  const files = [...Deno.readDirSync(dir)].filter((f) => f.name.endsWith(".cpuprofile"));
  const newest =
    files.map((f) => `${dir}/${f.name}`).sort((a, b) =>
      Deno.statSync(b).mtime!.getTime() - Deno.statSync(a).mtime!.getTime()
    )[0];
  const profile = JSON.parse(Deno.readTextFileSync(newest)) as {
    nodes: Array<
      { id: number; callFrame: { functionName: string; url: string; lineNumber: number } }
    >;
    samples: number[];
  };
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const self = new Map<string, number>();
  for (const id of profile.samples) {
    const { functionName, url, lineNumber } = byId.get(id)!.callFrame;
    const where = url
      ? `${
        url.replace(/^.*\/(node_modules|npm|registry\.npmjs\.org)\//, "").replace(
          `file://${ROOT}`,
          "",
        )
      }:${lineNumber + 1}`
      : "";
    const key = `${functionName || "(anonymous)"} ${where}`.trim();
    self.set(key, (self.get(key) ?? 0) + 1);
  }
  const total = profile.samples.length;
  return [...self].sort((a, b) => b[1] - a[1]).slice(0, n).map(([frame, count]) =>
    `${fmt((100 * count) / total).padStart(5)}%  ${frame}`
  );
}

const brokers = await benchBrokers();
console.log(
  `function mode bench: deno ${Deno.version.deno}, ${navigator.hardwareConcurrency} cores, ` +
    `${TASKS} no-op tasks, warm.concurrency ${CONCURRENCY}, cap ${CAP}, broker ${brokers}`,
);
const free = await kafkaFree(TASKS);
const e2e = await endToEnd(brokers, TASKS, values.profile);
const reference = await referenceBridge({
  brokers,
  count: TASKS,
  file: `${FUNCTIONS}noop.ts`,
  produce: (topic, count) => produce(brokers, topic, count),
});
const row = (label: string, value: string) => console.log(`${label.padEnd(58)} ${value}`);
row("Kafka-free warm rate (WarmSandboxes, same settings)", `${fmt(free.rate)} tasks/s`);
row("end to end, the runner (function mode, log level info)", `${fmt(e2e.rate)} tasks/s`);
row("ratio end to end / Kafka-free (target >= 0.7)", fmt(e2e.rate / free.rate, 2));
row("runner CPU per task (user+sys / tasks)", `${fmt(e2e.cpuMsPerTask, 3)} ms`);
row("runner peak RSS", `${fmt(e2e.rssMb)} MB`);
row("reference bridge (eachBatch → one warm process, no ledger)", `${fmt(reference)} tasks/s`);
row("ratio runner / reference bridge", fmt(e2e.rate / reference, 2));
// Where the machine's CPU goes, per task, in both: what bounds the end-to-end rate.
const shares = (c: CpuShares, main: string) =>
  `${main} ${fmt(c.mainMs, 3)} + warm processes ${fmt(c.childrenMs, 3)}` +
  (c.brokerMs === null ? "" : ` + broker ${fmt(c.brokerMs, 3)}`) +
  ` = ${fmt(c.mainMs + c.childrenMs + (c.brokerMs ?? 0), 3)} ms; machine ` +
  `${fmt(100 * c.machineBusy, 0)}% busy`;
row("CPU per task, Kafka-free", shares(free.cpu, "bench"));
row("CPU per task, end to end", shares(e2e.cpu, "runner"));
if (CONCURRENCY !== 1) {
  // The default warm.concurrency (1): one process per task in flight, 100 at the cap.
  const free1 = await kafkaFree(TASKS, 1);
  const e2e1 = await endToEnd(brokers, TASKS, undefined, "none", 1);
  console.log(`\n== the same with warm.concurrency 1 (the default): ${CAP} warm processes ==`);
  row("Kafka-free warm rate", `${fmt(free1.rate)} tasks/s`);
  row("end to end, the runner", `${fmt(e2e1.rate)} tasks/s`);
  row("ratio end to end / Kafka-free (target >= 0.7)", fmt(e2e1.rate / free1.rate, 2));
  row("runner peak RSS (target < 150 MB)", `${fmt(e2e1.rssMb)} MB`);
  row("CPU per task, Kafka-free", shares(free1.cpu, "bench"));
  row("CPU per task, end to end", shares(e2e1.cpu, "runner"));
}
if (values.console) {
  // Rounds in alternating order (forward, then backward), so that a drift over the runs (the
  // broker's topics pile up; the machine warms) weighs on every viewer alike.
  const ROUNDS = Number(values.rounds);
  const viewers: Viewer[] = ["none", "blank", "console", "stream"];
  const runs = new Map<Viewer, EndToEnd[]>(viewers.map((v) => [v, []]));
  for (let round = 0; round < ROUNDS; round++) {
    for (const viewer of round % 2 === 0 ? viewers : [...viewers].reverse()) {
      runs.get(viewer)!.push(await endToEnd(brokers, CONSOLE_TASKS, undefined, viewer));
    }
  }
  const median = (xs: number[]) => percentile([...xs].sort((a, b) => a - b), 50);
  const of = (viewer: Viewer, figure: (r: EndToEnd) => number) =>
    median(runs.get(viewer)!.map(figure));
  const figures = (v: Viewer) =>
    `${fmt(of(v, (r) => r.rate))} tasks/s, ${fmt(of(v, (r) => r.cpuMsPerTask), 3)} ms CPU/task, ` +
    `${fmt(Math.max(...runs.get(v)!.map((r) => r.rssMb)))} MB`;
  const perRound = (a: Viewer, b: Viewer) =>
    runs.get(a)!.map((r, i) => fmt(r.rate / runs.get(b)![i].rate, 2)).join(", ");
  console.log(
    `\n== the console's cost: ${ROUNDS} rounds of ${CONSOLE_TASKS} tasks; median tasks/s and ` +
      `runner CPU per task, highest runner peak RSS ==`,
  );
  row("console off, nothing else running", figures("none"));
  row("console off, a headless Chromium on about:blank", figures("blank"));
  row("console on, that Chromium on its Overview (live)", figures("console"));
  row("console on, curl on its live stream, no browser", figures("stream"));
  row("ratio console Overview / Chromium on about:blank, per round", perRound("console", "blank"));
  row("ratio curl on the stream / nothing, per round", perRound("stream", "none"));
  row("ratio Chromium on about:blank / nothing, per round", perRound("blank", "none"));
  row(
    "the browser's CPU per task, about:blank / Overview",
    `${fmt(of("blank", (r) => r.browserCpuMsPerTask!), 3)} / ` +
      `${fmt(of("console", (r) => r.browserCpuMsPerTask!), 3)} ms`,
  );
}
/** The broker's `group.coordinator.append.linger.ms`, as it reports it. */
async function commitLinger(brokers: string): Promise<string> {
  const admin = createKafka({ brokers: brokers.split(","), clientId: "bench" }).admin();
  await admin.connect();
  try {
    const { brokers: nodes } = await admin.describeCluster();
    const { resources } = await admin.describeConfigs({
      includeSynonyms: false,
      resources: [{
        type: ConfigResourceTypes.BROKER,
        name: String(nodes[0].nodeId),
        configNames: ["group.coordinator.append.linger.ms"],
      }],
    });
    return resources[0]?.configEntries[0]?.configValue ?? "?";
  } finally {
    await admin.disconnect();
  }
}

/** The latency rows for one broker. */
async function latencyRows(on: string): Promise<void> {
  const linger = await commitLinger(on);
  const l = await commitLatency({ brokers: on });
  const p = (xs: number[]) => `${fmt(percentile(xs, 50), 2)} / ${fmt(percentile(xs, 99), 2)} ms`;
  console.log(
    `\n== at-most-once latency, broker ${on}, group.coordinator.append.linger.ms ${linger} ==`,
  );
  row("commit round trip p50 / p99", p(l.commit));
  row("fetched → task handed to its warm process p50 / p99", p(l.handover));
  row(
    "target: handover p50 <= commit p50 + 1.5 ms",
    `${fmt(percentile(l.handover, 50), 2)} vs ${fmt(percentile(l.commit, 50) + 1.5, 2)} ms`,
  );
  row("produce → handler start p50 / p99 (1 ms steps)", p(l.produceToStart));
}

await latencyRows(brokers);
if (!values["no-default-linger"]) {
  const port = "39192";
  const kafkaSh = (command: string) =>
    new Deno.Command("bash", {
      args: [`${ROOT}broker/kafka.sh`, command],
      env: { BROKER_PORT: port, BROKER_COMMIT_LINGER_MS: "5" },
      stdout: "null",
      stderr: "inherit",
    }).output();
  if ((await kafkaSh("start")).code !== 0) throw new Error("the linger-5 broker did not start");
  try {
    await latencyRows(`127.0.0.1:${port}`);
  } finally {
    await kafkaSh("stop");
  }
}

if (values.profile) {
  console.log(`\ntop 10 frames of the runner by self time (${values.profile}):`);
  for (const line of topFrames(values.profile)) console.log(`  ${line}`);
}
