/**
 * `command` functions with real programs (Debian's php-cli, sh), no broker: payload on stdin,
 * task fields in an otherwise empty environment, placeholders, exit words, the timeout with
 * its kill escalation on the whole process group, output limits, and a missing program as a
 * `failed` outcome naming it (through the executor, as the dispatcher calls it).
 */
import { fileURLToPath } from "node:url";
import { ConcurrencyCap } from "../../runner/dispatch/concurrency_cap.ts";
import { deliveryPolicy } from "../../runner/dispatch/delivery_policy.ts";
import type { Job } from "../../runner/dispatch/job.ts";
import type { FunctionConfig } from "../../runner/function_config.ts";
import { CommandSource } from "../../runner/sandbox/command_source.ts";
import { TaskExecutor } from "../../runner/sandbox/executor.ts";
import type { ChildResult } from "../../runner/sandbox/process_source.ts";
import { assert, assertEquals, assertMatch } from "../helpers/assert.ts";

const PHP = fileURLToPath(new URL("../fixtures/php/", import.meta.url));
const START = ["php", `${PHP}start.php`, "{name}.php", "offset={offset}"];
const HOST_ENV = {
  PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin",
  SECRET_TOKEN: "s3cr3t",
  LANG: "C",
};
const TASK = { topic: "tasks", partition: 2, offset: "41", key: "k-1", attempt: 1, headers: {} };

/** True once `pid` is gone or a zombie (killed, not yet reaped by init), within 2 s. */
async function goneSoon(pid: number): Promise<boolean> {
  for (let i = 0; i < 40; i++) {
    try {
      const status = await Deno.readTextFile(`/proc/${pid}/status`);
      if (/^State:\s+Z/m.test(status)) return true;
    } catch {
      return true;
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return false;
}

interface Ran extends ChildResult {
  stdout: string[];
  stderr: string[];
  ms: number;
}

async function run(
  handler: string,
  payload: unknown,
  grants: FunctionConfig,
  options: { timeoutMs?: number; source?: CommandSource } = {},
): Promise<Ran> {
  const source = options.source ?? new CommandSource({ killGraceMs: 500, hostEnv: HOST_ENV });
  const stdout: string[] = [];
  const stderr: string[] = [];
  const started = performance.now();
  const child = source.spawn({
    handler,
    file: `/nonexistent/${handler}.ts`,
    memoryMb: 64,
    task: TASK,
    payload: new TextEncoder().encode(JSON.stringify(payload)),
    timeoutMs: options.timeoutMs ?? 15_000,
    grants,
    onOutput: (stream, line) => (stream === "stdout" ? stdout : stderr).push(line),
  });
  const result = await child.done;
  return { ...result, stdout, stderr, ms: performance.now() - started };
}

Deno.test("an unchanged PHP worker gets its payload on stdin and its offset in argv", async () => {
  const r = await run("word_count", { text: "to be or not to be" }, { command: START });
  assertEquals(r.stderr, []);
  assertEquals(r.outcome, "ok");
  assertEquals(r.reason, "exit 0");
  assertEquals(JSON.parse(r.stdout[0]), { words: 6, distinct: 4, offset: "41" });
});

Deno.test("a command's environment holds the task's fields and its grants only", async () => {
  const r = await run("env_dump", { a: 1 }, {
    command: START,
    allowEnv: ["LANG"],
    env: { APP_ENV: "migration" },
  });
  assertEquals(r.outcome, "ok", r.stderr.join("\n"));
  const seen = JSON.parse(r.stdout[0]);
  assertEquals(seen.env, {
    LANG: "C",
    APP_ENV: "migration",
    TASK_HANDLER: "env_dump",
    TASK_TOPIC: "tasks",
    TASK_PARTITION: "2",
    TASK_OFFSET: "41",
    TASK_KEY: "k-1",
    TASK_ATTEMPT: "1",
  });
  assertEquals(seen.argv.slice(1), ["env_dump.php", "offset=41"]);
  assertEquals(seen.task.payload, { a: 1 });
});

Deno.test("a command that exits non-zero fails with its code and its stderr", async () => {
  const r = await run("word_count", { text: 5 }, { command: START });
  assertEquals(r.outcome, "failed");
  assertEquals(r.reason, "exit 1");
  assertEquals(r.stderr, ["word_count: payload.text must be a string"]);
});

Deno.test("a command that ignores SIGTERM is killed with its process group after the grace", async () => {
  const pidFile = await Deno.makeTempFile();
  const r = await run("sleeps_in_child", { pidFile }, { command: START }, { timeoutMs: 800 });
  assertEquals(r.outcome, "timeout");
  assertEquals(r.signal, "SIGKILL");
  assertEquals(r.reason, "killed by SIGKILL after timeout 800 ms");
  assert(r.ms < 5000, `took ${r.ms} ms`);
  assertEquals(r.stdout, ["sleeping"]);
  const sleeper = Number((await Deno.readTextFile(pidFile)).trim());
  assert(sleeper > 0, "the worker did not start its child");
  assert(await goneSoon(sleeper), `its child ${sleeper} outlived the task`);
  await Deno.remove(pidFile);
});

Deno.test("a command's output is bounded like a handler's", async () => {
  const source = new CommandSource({
    hostEnv: HOST_ENV,
    output: { maxLineBytes: 100, maxTotalBytes: 4096 },
  });
  const r = await run("lots", {}, { command: ["sh", "-c", "yes abcdefgh | head -c 1000000"] }, {
    source,
  });
  assertEquals(r.outcome, "ok");
  assert(r.stdout.length < 500, `${r.stdout.length} lines passed on`);
  assert(r.droppedBytes > 900_000, `dropped ${r.droppedBytes}`);
});

Deno.test("a command whose program is not found is a failed outcome naming it", async () => {
  const functions = new Map([["legacy", { command: ["php-does-not-exist", "w.php"] }]]);
  const executor = new TaskExecutor({
    settings: {
      functionsDir: "/nonexistent",
      killGraceMs: 500,
      memoryMb: 64,
      prewarm: 0,
      taskNice: 0,
      taskTimeoutMs: 5000,
    },
    functions,
    cap: new ConcurrencyCap(2),
    hostEnv: HOST_ENV,
  });
  const job = {
    topic: "tasks",
    partition: 0,
    message: { offset: "1" },
    task: {
      handler: "legacy",
      file: "/nonexistent/legacy.ts",
      payload: new TextEncoder().encode("{}"),
      json: {},
      fields: TASK,
    },
    policy: deliveryPolicy(functions.get("legacy")),
    attempt: 1,
    slot: null,
    fetchedAt: performance.now(),
    readyAt: performance.now(),
  } as unknown as Job;
  const result = await executor.execute(job);
  assertEquals(result.outcome, "failed");
  assertMatch(
    result.reason,
    /^spawn failed: command program "php-does-not-exist" of handler legacy was not found/,
  );
  await executor.close();
});
