/**
 * Prewarmed sandboxes with real `deno run` children, no broker: a prewarmed child serves one
 * task, the cap holds with reservations and eviction, stale children are recycled, a failing
 * import is not retried in a loop, nothing is left behind, and every denial still holds.
 */
import { FIXTURES } from "../helpers/fixtures.ts";
import { alive, waitUntil } from "../helpers/process.ts";
import { assert, assertEquals, assertMatch } from "../helpers/assert.ts";
import { fileURLToPath } from "node:url";
import type { FunctionConfig } from "../../runner/function_config.ts";
import { ConcurrencyCap } from "../../runner/dispatch/concurrency_cap.ts";
import {
  type PrewarmedFunction,
  Prewarmer,
  type PrewarmEvent,
} from "../../runner/sandbox/prewarm.ts";
import type {
  ChildResult,
  ProcessScope,
  SandboxTask,
} from "../../runner/sandbox/process_source.ts";
import { Sandbox } from "../../runner/sandbox/task_sandbox.ts";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const sandbox = new Sandbox({ killGraceMs: 500, hostEnv: { SECRET_TOKEN: "s3cr3t" } });

interface Ran extends ChildResult {
  pid: number;
  stdout: string[];
  stderr: string[];
  /** The child exited before it was given its task (prewarmed children only). */
  idle?: boolean;
}

interface Where {
  file?: string;
  grants?: FunctionConfig;
}

const scopeOf = (handler: string, where: Where = {}): ProcessScope => ({
  handler,
  file: where.file ?? `${FIXTURES}${handler}.ts`,
  memoryMb: 64,
  grants: where.grants,
});

function taskOf(handler: string, payload: unknown, where: Where, out: Ran): SandboxTask {
  return {
    ...scopeOf(handler, where),
    task: { headers: { php_worker: handler }, key: null, topic: "t", partition: 0, offset: "7" },
    payload: new TextEncoder().encode(JSON.stringify(payload)),
    timeoutMs: 15_000,
    onOutput: (stream, line) => (stream === "stdout" ? out.stdout : out.stderr).push(line),
  };
}

/** Run one task through `spawner` (a Prewarmer or a Sandbox). */
async function run(
  spawner: Pick<Sandbox, "spawn">,
  handler: string,
  payload: unknown = {},
  where: Where = {},
): Promise<Ran> {
  const out = { stdout: [], stderr: [] } as unknown as Ran;
  const child = spawner.spawn(taskOf(handler, payload, where, out));
  return { ...(await child.done), pid: child.pid, stdout: out.stdout, stderr: out.stderr };
}

function delay(ms: number): { done: Promise<null>; cancel(): void } {
  let timer: ReturnType<typeof setTimeout>;
  const done = new Promise<null>((resolve) => (timer = setTimeout(() => resolve(null), ms)));
  return { done, cancel: () => clearTimeout(timer) };
}

function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}

/** A prewarmer on its own pool, its events recorded, the cap invariant checked at each. */
function prewarmer(functions: PrewarmedFunction[], capacity = 10, count = 0) {
  const pool = new ConcurrencyCap(capacity);
  const events: PrewarmEvent[] = [];
  const prewarmer = new Prewarmer({
    sandbox,
    pool,
    count,
    functions,
    onEvent: (event) => {
      events.push(event);
      assert(pool.running + pool.reserved <= capacity, `over the cap at ${event.kind}`);
    },
  });
  const of = <K extends PrewarmEvent["kind"]>(kind: K) =>
    events.filter((e): e is Extract<PrewarmEvent, { kind: K }> => e.kind === kind);
  return {
    pool,
    prewarmer,
    events,
    of,
    /** Pids of every child the prewarmer started. */
    pids: () => of("started").map((e) => e.pid),
    async [Symbol.asyncDispose]() {
      await prewarmer.close();
    },
  };
}

Deno.test("a prewarmed child serves one task: started and its handler imported before it", async () => {
  const dir = await Deno.makeTempDir();
  const mark = `${dir}/loaded`;
  const where = { grants: { allowWrite: [dir], env: { LOAD_MARK: mark } } };
  await using h = prewarmer([{ scope: scopeOf("marks_load", where), count: 1 }]);
  h.prewarmer.start();
  await waitUntil("the child to be ready", () => h.of("ready").length === 1);
  const [pid] = h.pids();
  assert(exists(mark), "its top-level code ran");
  const before = Date.now();
  const r = await run(h.prewarmer, "marks_load", { to: "world" }, where);
  assertEquals([r.outcome, r.reason], ["ok", "exit 0"]);
  assertEquals(r.pid, pid, "the task ran in the child started before it");
  const seen = JSON.parse(r.stdout[0]);
  assertEquals(seen.payload, { to: "world" });
  assertEquals([seen.headers.php_worker, seen.offset], ["marks_load", "7"]);
  assert(seen.loadedAt <= before, "the handler was imported before the task came");
  assert(seen.ranAt >= before);
  await waitUntil("a replacement", () => h.pids().length === 2 && h.prewarmer.idle === 1);
  assertEquals(alive(pid), false, "the child served one task and exited");
  await Deno.remove(dir, { recursive: true });
});

Deno.test("cap: idle children hold slots; a task on a full pool evicts the oldest instead of waiting", async () => {
  await using h = prewarmer([
    { scope: scopeOf("echo"), count: 2 },
    { scope: scopeOf("returns_value"), count: 2 },
  ], 3);
  h.prewarmer.start();
  await waitUntil("three children", () => h.pids().length === 3);
  const settle = delay(300);
  await settle.done;
  assertEquals([h.pids().length, h.pool.reserved, h.pool.free], [3, 3, 0], "no more than the cap");
  const [oldest] = h.pids();
  assertEquals(
    h.of("started").map((e) => e.handler),
    ["echo", "returns_value", "echo"],
    "each function in turn, not one count after the other",
  );
  const echo = h.of("started").filter((e) => e.handler === "echo").map((e) => e.pid)[1];

  const slot = h.pool.tryAcquire(); // as the dispatcher does
  assert(slot, "a task gets a slot at once");
  assertEquals(h.of("killed").map((e) => [e.pid, e.why]), [[oldest, "evicted"]]);
  assertEquals([h.pool.running, h.pool.reserved], [1, 2]);
  const r = await run(h.prewarmer, "echo", { n: 1 });
  assertEquals([r.outcome, r.pid], ["ok", echo]);
  slot.release();
  await waitUntil("refilled to the cap", () => h.pool.reserved === 3);
  await waitUntil("the evicted child to be gone", () => !alive(oldest));
  assertEquals(h.pool.running + h.pool.reserved, 3);
});

Deno.test("pace: at most half the cores' worth of children import at a time", async () => {
  const most = Math.max(1, Math.floor(navigator.hardwareConcurrency / 2));
  await using h = prewarmer([{ scope: scopeOf("echo"), count: 6 }]);
  let starting = 0;
  let peak = 0;
  h.prewarmer.start();
  await waitUntil("six ready children", () => {
    starting = h.pids().length - h.of("ready").length;
    peak = Math.max(peak, starting);
    return h.of("ready").length === 6;
  });
  assert(peak >= 1 && peak <= most, `${peak} starting at once, at most ${most}`);
});

Deno.test("after an eviction, nothing starts while more than half the slots run tasks", async () => {
  await using h = prewarmer([{ scope: scopeOf("echo"), count: 4 }], 4);
  h.prewarmer.start();
  await waitUntil("four ready children", () => h.of("ready").length === 4);
  // Two tasks of other functions, and one of echo: 3 of 4 slots run tasks.
  const slots = [h.pool.tryAcquire(), h.pool.tryAcquire(), h.pool.tryAcquire()];
  assert(slots.every((slot) => slot !== null));
  assertEquals([h.of("killed").length, h.pool.running, h.pool.reserved], [3, 3, 1]);
  const r = await run(h.prewarmer, "echo"); // takes the last child: its slot frees
  assertEquals([r.outcome, r.pid], ["ok", h.pids()[3]]);
  const quiet = delay(400);
  await quiet.done;
  assertEquals([h.pids().length, h.pool.reserved], [4, 0], "no child started under pressure");
  slots[2]!.release(); // the echo task ended: 2 of 4 slots run tasks
  await waitUntil("prewarming to resume at half the slots", () => h.pool.reserved === 2);
  slots[0]!.release();
  slots[1]!.release();
  await waitUntil("all four slots prewarmed again", () => h.pool.reserved === 4);
});

Deno.test("recycled when the handler file or the grants change: the stale child is killed, the task starts cold", async () => {
  const dir = await Deno.makeTempDir();
  const file = `${dir}/echo.ts`;
  await Deno.copyFile(`${FIXTURES}echo.ts`, file);
  await using h = prewarmer([{ scope: scopeOf("echo", { file }), count: 1 }]);
  h.prewarmer.start();
  await waitUntil("the child to start", () => h.pids().length === 1);
  const [stale] = h.pids();
  await Deno.writeTextFile(
    file,
    'export default (task: { payload: unknown }) => console.log("v2", JSON.stringify(task.payload));\n',
  );
  const cold = await run(h.prewarmer, "echo", { n: 1 }, { file });
  assertEquals([cold.outcome, cold.stdout], ["ok", ['v2 {"n":1}']]);
  assert(cold.pid !== stale, "the stale child was not used");
  assertEquals(h.of("killed").map((e) => [e.pid, e.why]), [[stale, "file changed"]]);
  await waitUntil("a fresh child", () => h.pids().length === 2);
  const fresh = h.pids()[1];
  const warm = await run(h.prewarmer, "echo", { n: 2 }, { file });
  assertEquals([warm.pid, warm.stdout], [fresh, ['v2 {"n":2}']]);

  await waitUntil("its replacement", () => h.pids().length === 3);
  const other = await run(h.prewarmer, "echo", { n: 3 }, { file, grants: { allowEnv: ["X"] } });
  assertEquals(other.outcome, "ok");
  assert(!h.pids().includes(other.pid), "other grants: a new process");
  assertEquals(h.of("killed").at(-1)?.why, "scope changed");
  await Deno.remove(dir, { recursive: true });
});

Deno.test("a handler whose import fails is not prewarmed in a loop nor given a task, until its file changes", async () => {
  const dir = await Deno.makeTempDir();
  const file = `${dir}/no_default.ts`;
  await Deno.copyFile(`${FIXTURES}no_default.ts`, file);
  await using h = prewarmer([{ scope: scopeOf("no_default", { file }), count: 2 }]);
  h.prewarmer.start();
  await waitUntil("the child to die", () => h.of("died").length === 1);
  const [died] = h.of("died");
  assertEquals(died.exit.code, 64);
  assertMatch(died.exit.stderr.join("\n"), /handler no_default has no default export function/);
  const quiet = delay(500);
  await quiet.done;
  assertEquals([h.pids().length, h.pool.reserved, h.prewarmer.idle], [1, 0, 0], "no restart loop");

  const cold = await run(h.prewarmer, "no_default", {}, { file });
  assert(!h.pids().includes(cold.pid), "the task ran in a new process");
  assertEquals(cold.code, 64);
  assertMatch(cold.stderr.join("\n"), /no default export function/);
  const still = delay(300);
  await still.done;
  assertEquals(h.pids().length, 1, "a task does not restart prewarming of an unchanged file");

  await Deno.writeTextFile(file, (await Deno.readTextFile(file)) + "// changed\n");
  await run(h.prewarmer, "no_default", {}, { file });
  await waitUntil("the new version to be tried once", () => h.of("died").length === 2);
  const again = delay(300);
  await again.done;
  assertEquals(h.pids().length, 2);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("close kills the idle children and waits for them; a running task is left alone", async () => {
  const h = prewarmer([{ scope: scopeOf("echo"), count: 2 }, {
    scope: scopeOf("hangs"),
    count: 1,
  }]);
  h.prewarmer.start();
  await waitUntil("three children", () => h.pids().length === 3);
  const out = { stdout: [], stderr: [] } as unknown as Ran;
  const running = h.prewarmer.spawn(taskOf("hangs", {}, {}, out));
  assert(h.pids().includes(running.pid), "the hanging task took a prewarmed child");
  await waitUntil("its replacement", () => h.pids().length === 4);
  await h.prewarmer.close();
  await h.prewarmer.close(); // idempotent
  const idle = h.pids().filter((pid) => pid !== running.pid);
  assertEquals(idle.filter(alive), [], "no idle child is left");
  assertEquals([h.prewarmer.idle, h.pool.reserved], [0, 0]);
  assert(alive(running.pid), "the running task goes on");
  running.stop("test over", true);
  await running.done;
  const after = await run(h.prewarmer, "echo");
  assertEquals(after.outcome, "ok");
  assertEquals(h.pids().length, 4, "closed: tasks run cold, nothing is prewarmed");
});

Deno.test("kill -9 of the runner: an idle prewarmed child sees its stdin end and exits", async () => {
  const script = `
    import { Sandbox } from "${ROOT}runner/sandbox/task_sandbox.ts";
    const started = new Sandbox().prewarm(
      { handler: "echo", file: "${FIXTURES}echo.ts", memoryMb: 64 },
      { importHandler: true },
    );
    console.log(started.pid);
    await new Promise(() => {});
  `;
  const runner = new Deno.Command(Deno.execPath(), {
    args: ["eval", "--ext=ts", script],
    stdout: "piped",
    stderr: "null",
  }).spawn();
  const reader = runner.stdout.pipeThrough(new TextDecoderStream()).getReader();
  const pid = Number((await reader.read()).value);
  assert(pid > 0 && alive(pid), `the prewarmed child runs (pid ${pid})`);
  runner.kill("SIGKILL");
  await runner.status;
  await reader.cancel();
  await waitUntil("the orphan to exit", () => !alive(pid), 5000);
});

// --- the sandbox with a prewarmed handler -------------------------------------------------

/**
 * Start a prewarmed child, wait until it has imported its handler, then give it its task. A
 * child that exits before (its import failed) is reported with `idle: true`.
 */
async function runPrewarmed(handler: string, payload: unknown = {}, where: Where = {}) {
  const started = sandbox.prewarm(scopeOf(handler, where), { importHandler: true });
  const exit = await Promise.race([started.idleExit, started.ready.then(() => null)]);
  const out = { stdout: [], stderr: [] } as unknown as Ran;
  if (exit) return { ...out, ...exit, pid: started.pid, outcome: "failed", idle: true } as Ran;
  const child = started.attach(taskOf(handler, payload, where, out));
  return { ...(await child.done), pid: started.pid, stdout: out.stdout, stderr: out.stderr };
}

function assertDenied(r: Ran, what: RegExp) {
  assertEquals(r.outcome, "failed", `expected a failure, got ${r.outcome}: ${r.stdout.join("\n")}`);
  assertMatch(r.stderr.join("\n"), what);
}

const DENIED: Array<[string, unknown, RegExp]> = [
  ["reads_passwd", {}, /NotCapable: Requires read access to "\/etc\/passwd"/],
  ["reads_other_function", {}, /NotCapable: Requires read access to .*echo\.ts/],
  ["reads_env", {}, /NotCapable: Requires env access/],
  ["uses_net", { url: "http://127.0.0.1:65001/" }, /NotCapable: Requires net access/],
  ["runs_subprocess", {}, /NotCapable: Requires run access/],
  ["uses_ffi", {}, /NotCapable: Requires ffi access/],
  ["reads_sys", {}, /NotCapable: Requires sys access/],
  ["imports_remote", {}, /cannot load handler imports_remote/],
  ["imports_npm", {}, /npm specifiers were requested; but --no-npm is specified/],
  ["imports_outside", {}, /Requires read access to .*runner\/config\.ts/],
  ["imports_outside_dynamic", {}, /Requires read access to .*runner\/config\.ts/],
];

for (const [handler, payload, what] of DENIED) {
  Deno.test(`denied when prewarmed: ${handler}`, async () => {
    assertDenied(await runPrewarmed(handler, payload), what);
  });
}

Deno.test("denied when prewarmed: writing a file", async () => {
  const path = await Deno.makeTempFile();
  await Deno.remove(path);
  assertDenied(await runPrewarmed("writes_file", { path }), /NotCapable: Requires write access/);
  assertEquals(exists(path), false);
});

Deno.test("prewarmed: the environment is emptied, granted variables pass", async () => {
  const started = sandbox.prewarm(scopeOf("hangs"), { importHandler: true });
  await started.ready; // deno itself by now, not `setsid` on its way to exec it
  const environ = await Deno.readTextFile(`/proc/${started.pid}/environ`);
  started.kill();
  assertEquals((await started.idleExit).signal, "SIGKILL");
  const names = environ.split("\0").filter(Boolean).map((kv) => kv.split("=")[0]).sort();
  assertEquals(names, ["DENO_DIR", "DENO_NO_UPDATE_CHECK", "NO_COLOR"]); // DENO_DIR: its own
  const names3 = { names: ["SECRET_TOKEN", "MODE", "OTHER"] };
  assertDenied(await runPrewarmed("env_visible", names3), /Requires env access to "SECRET_TOKEN"/);
  const granted = await runPrewarmed("env_visible", names3, {
    grants: { allowEnv: ["SECRET_TOKEN", "OTHER"], env: { MODE: "x" } },
  });
  assertEquals(granted.outcome, "ok");
  assertEquals(JSON.parse(granted.stdout[0]), { SECRET_TOKEN: "s3cr3t", MODE: "x" });
});

Deno.test("prewarmed: a handler spying from its top-level code learns no nonce and forges no result", async () => {
  for (const r of [await runPrewarmed("spies_on_loader"), await run(sandbox, "spies_on_loader")]) {
    assertEquals([r.outcome, r.stdout], ["ok", ["found 0 candidate nonces"]]);
    assertEquals(r.result, undefined);
  }
});

Deno.test("prewarmed: same exit codes and words as cold, even when the task came before the import failed", async () => {
  for (const handler of ["no_default", "throws", "exits_nonzero", "returns_value"]) {
    const cold = await run(sandbox, handler, { n: 2 });
    const out = { stdout: [], stderr: [] } as unknown as Ran;
    const started = sandbox.prewarm(scopeOf(handler), { importHandler: true });
    const hot = await started.attach(taskOf(handler, { n: 2 }, {}, out)).done;
    assertEquals(
      [hot.outcome, hot.reason, hot.code, hot.result],
      [cold.outcome, cold.reason, cold.code, cold.result],
      handler,
    );
    assertEquals(out.stderr.at(-1), cold.stderr.at(-1), handler);
  }
});
