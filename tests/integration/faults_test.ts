/**
 * Faults made for real: kill -9 of the runner mid-burst, a broker restart under load, and a
 * member of a two-runner group killed. Handlers leave one marker file per run, so the counts
 * (lost, duplicated) come from what actually ran.
 */
import { assert, assertEquals } from "../helpers/assert.ts";
import { FIXTURES, kafkaClients, ROOT, RunnerProcess, unique } from "../helpers/harness.ts";

interface Burst {
  topic: string;
  dir: string;
  config: string;
  /** Produce the tasks. */
  produce(): Promise<void>;
  env: (extra?: Record<string, string>) => Record<string, string>;
  [Symbol.asyncDispose](): Promise<void>;
}

async function burst(delivery: string, total: number, partitions = 4): Promise<Burst> {
  const topic = unique(`fault_${delivery.replaceAll("-", "")}`);
  const dir = await Deno.makeTempDir();
  const config = await Deno.makeTempFile({ suffix: ".json" });
  await Deno.writeTextFile(
    config,
    JSON.stringify({ functions: { marks: { delivery, allowWrite: [dir] } } }),
  );
  const kafka = await kafkaClients();
  await kafka.admin.createTopics({
    topics: [{ topic, numPartitions: partitions }],
    waitForLeaders: true,
  });
  const value = JSON.stringify({ dir, ms: 100 });
  const produce = async () => {
    for (let i = 0; i < total; i += 250) {
      await kafka.producer.send({
        topic,
        messages: Array.from({ length: Math.min(250, total - i) }, (_, j) => ({
          key: `k${i + j}`,
          value,
          headers: { php_worker: "marks" },
        })),
      });
    }
  };
  return {
    topic,
    dir,
    config,
    produce,
    env: (extra = {}) => ({
      TASK_TOPIC: topic,
      GROUP_ID: topic,
      FUNCTIONS_DIR: FIXTURES,
      FUNCTIONS_CONFIG: config,
      MAX_RUNNING: "20",
      SESSION_TIMEOUT_MS: "6000",
      ...extra,
    }),
    async [Symbol.asyncDispose]() {
      await kafka[Symbol.asyncDispose]();
      await Deno.remove(dir, { recursive: true });
      await Deno.remove(config);
    },
  };
}

/** Runs per task (partition-offset) from the marker files. */
async function runsPerTask(dir: string): Promise<Map<string, number>> {
  const runs = new Map<string, number>();
  for await (const entry of Deno.readDir(dir)) {
    const task = entry.name.split("-").slice(0, 2).join("-");
    runs.set(task, (runs.get(task) ?? 0) + 1);
  }
  return runs;
}

function okTasks(runner: RunnerProcess): Set<string> {
  return new Set(
    runner.outcomes().filter((o) => o.outcome === "ok").map((o) => `${o.partition}-${o.offset}`),
  );
}

Deno.test("at-least-once: kill -9 mid-burst, restart: every task ran, duplicates counted", async () => {
  const total = 300;
  await using b = await burst("at-least-once", total);
  await b.produce();
  await using first = new RunnerProcess(b.env());
  await first.waitForOutcomes(80);
  first.kill("SIGKILL");
  await first.exited;
  const doneBefore = okTasks(first);

  await using second = new RunnerProcess(b.env());
  await second.waitFor("every task to have run", () => {
    const done = new Set([...doneBefore, ...okTasks(second)]);
    return done.size >= total || undefined;
  }, 120_000);
  const runs = await runsPerTask(b.dir);
  assertEquals(runs.size, total, "every task ran at least once");
  const duplicates = [...runs.values()].filter((n) => n > 1).length;
  console.log(
    `at-least-once after kill -9: ${total} tasks, ${doneBefore.size} done before the kill, ` +
      `${duplicates} ran twice (in flight at the kill or finished but not yet committed)`,
  );
  assert(duplicates <= 20 + 20, `duplicates ${duplicates} are bounded by what was in flight`);
});

Deno.test("at-most-once: kill -9 mid-burst, restart: no task ran twice; the lost ones are named", async () => {
  const total = 300;
  await using b = await burst("at-most-once", total);
  await b.produce();
  await using first = new RunnerProcess(b.env());
  await first.waitForOutcomes(80);
  first.kill("SIGKILL");
  await first.exited;

  await using second = new RunnerProcess(b.env());
  const skipped = () =>
    new Set(
      second.lines.filter((l) => l.message.startsWith("Skipped"))
        .map((l) => `${l.properties.partition}-${l.properties.offset}`),
    );
  const handled = () => new Set([...okTasks(first), ...okTasks(second), ...skipped()]);
  await second.waitFor(
    "the rest of the burst",
    () => handled().size >= total || undefined,
    120_000,
  );
  const runs = await runsPerTask(b.dir);
  const twice = [...runs].filter(([, n]) => n > 1);
  assertEquals(twice, [], "no task ran twice");
  // A skipped task was started once by the killed runner (its child may have died before the
  // handler wrote its marker, or finished before its end was committed): at most one run.
  for (const task of skipped()) {
    assert((runs.get(task) ?? 0) <= 1, `skipped ${task} ran once at most`);
  }
  const done = new Set([...okTasks(first), ...okTasks(second)]);
  const lost = [...handled()].filter((task) => !done.has(task));
  assertEquals(lost.filter((task) => !skipped().has(task)), [], "every lost task is named");
  console.log(
    `at-most-once after kill -9: ${total} tasks, ${runs.size} ran, 0 twice, ` +
      `${lost.length} lost (in flight at the kill), ${skipped().size} named as skipped after the restart`,
  );
  assert(lost.length <= 20, `lost ${lost.length} <= the cap`);
});

Deno.test("at-least-once across a broker restart under load: nothing lost, runner still up", async () => {
  const [, port] = Deno.env.get("KAFKA_BROKERS")!.split(":");
  const broker = (command: string) =>
    new Deno.Command("bash", {
      args: [`${ROOT}broker/kafka.sh`, command],
      env: { BROKER_PORT: port },
    })
      .output();
  assert(
    (await broker("status")).success,
    `the test broker on ${port} must be ours (broker/kafka.sh)`,
  );
  const total = 300;
  await using b = await burst("at-least-once", total);
  await b.produce();
  await using runner = new RunnerProcess(b.env());
  await runner.waitForOutcomes(60);
  assert((await broker("stop")).success);
  assert((await broker("start")).success);
  await runner.waitFor("every task", () => okTasks(runner).size >= total || undefined, 180_000);
  const runs = await runsPerTask(b.dir);
  assertEquals(runs.size, total);
  const duplicates = [...runs.values()].filter((n) => n > 1).length;
  console.log(
    `at-least-once across a broker restart: ${total} tasks, all ran, ${duplicates} twice`,
  );
  await kafkaClients().then((k) => k[Symbol.asyncDispose]()); // the broker answers again
  const status = await Promise.race([
    runner.exited.then(() => "exited"),
    Promise.resolve("running"),
  ]);
  assertEquals(status, "running");
});

Deno.test("two runners, 8 partitions, one killed mid-burst: the other takes over, nothing lost", async () => {
  const total = 400;
  await using b = await burst("at-least-once", total, 8);
  await using a = new RunnerProcess(b.env());
  await using c = new RunnerProcess(b.env());
  const share = (runner: RunnerProcess) => {
    const joined = runner.lines.filter((l) => l.message.startsWith("Joined group")).at(-1);
    return joined
      ? Object.values(joined.properties.assignment as Record<string, number[]>).flat()
      : [];
  };
  // Both members share the partitions before the burst, so that the dead one leaves work behind.
  const aShare = await a.waitFor("a's share", () => {
    const mine = share(a);
    return mine.length > 0 && mine.length + share(c).length === 8 ? mine : undefined;
  }, 60_000).catch((error) => {
    // The other member's side of the story, for a group that did not settle.
    const joins = (r: RunnerProcess) =>
      r.lines.filter((l) => /Joined group|rebalanc|ERROR/i.test(l.message + l.level))
        .map((l) => l.message).join("\n  ");
    throw new Error(`${error.message}\na's joins:\n  ${joins(a)}\nc's joins:\n  ${joins(c)}`);
  });
  await b.produce();
  await a.waitFor("a's first tasks", () => a.outcomes().length > 20 || undefined, 60_000);
  a.kill("SIGKILL");
  await a.exited;
  const killedAt = c.outcomes().length;
  await c.waitFor(
    "every task",
    () => new Set([...okTasks(a), ...okTasks(c)]).size >= total || undefined,
    180_000,
  );
  const runs = await runsPerTask(b.dir);
  assertEquals(runs.size, total);
  const afterKill = c.outcomes().slice(killedAt).map((o) => o.partition as number);
  assert(
    afterKill.some((p) => aShare.includes(p)),
    `the survivor ran tasks of the dead member's partitions ${aShare}`,
  );
  assertEquals(share(c).length, 8, "the survivor holds every partition");
  const duplicates = [...runs.values()].filter((n) => n > 1).length;
  console.log(
    `two runners, one killed: ${total} tasks, all ran, ${duplicates} twice, ` +
      `${okTasks(a).size} by the killed one`,
  );
});
