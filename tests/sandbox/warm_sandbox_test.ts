/**
 * Warm sandboxes with real `deno run` processes, no broker: one process serving many tasks,
 * recycling (tasks, age, file change, heap, idle), task mode's sandbox, close() and options.
 */
import { assert, assertEquals, assertMatch } from "../helpers/assert.ts";
import { SpawnError } from "../../runner/errors.ts";
import { sandboxArgs } from "../../runner/sandbox/permissions.ts";
import { WarmSandboxes } from "../../runner/sandbox/warm_sandbox.ts";
import {
  alive,
  assertDenied,
  FIXTURES,
  gone,
  run,
  send,
  until,
  withWarm,
} from "../helpers/warm_harness.ts";

// --- reuse and recycling -------------------------------------------------------------------

Deno.test("one warm process serves many tasks and keeps its module state", async () => {
  await withWarm({}, async (warm, pids) => {
    const results = [];
    for (let i = 0; i < 20; i++) results.push(await run(warm, "counts_calls"));
    assertEquals(new Set(results.map((r) => r.pid)).size, 1);
    assertEquals(
      results.map((r) => JSON.parse(r.result!).calls),
      [...Array(20).keys()].map((i) => i + 1),
    );
    assertEquals(results[4].stdout, [`call 5 in pid ${results[4].pid}`]);
    assertEquals(results[4].outcome, "ok");
    assertEquals(pids.size, 1);
  });
});

Deno.test("with concurrency 2, two tasks share a process; with 1 they do not", async () => {
  await withWarm({ concurrency: 2 }, async (warm) => {
    const [a, b] = await Promise.all([
      run(warm, "sleeps", { ms: 100 }),
      run(warm, "sleeps", { ms: 100 }),
    ]);
    assertEquals([a.outcome, b.outcome], ["ok", "ok"]);
    assertEquals(a.pid, b.pid);
  });
  await withWarm({ concurrency: 1 }, async (warm) => {
    const [a, b] = await Promise.all([
      run(warm, "sleeps", { ms: 100 }),
      run(warm, "sleeps", { ms: 100 }),
    ]);
    assert(a.pid !== b.pid);
  });
});

Deno.test("recycled after maxTasks: the next task gets a fresh process", async () => {
  await withWarm({ maxTasks: 3 }, async (warm, pids, recycles) => {
    const calls = [];
    for (let i = 0; i < 7; i++) {
      calls.push(JSON.parse((await run(warm, "counts_calls")).result!).calls);
    }
    assertEquals(calls, [1, 2, 3, 1, 2, 3, 1]);
    assertEquals(pids.size, 3);
    assertEquals(recycles.maxTasks, 2);
  });
});

Deno.test("recycled after maxAgeMs, checked when a task is sent", async () => {
  await withWarm({ maxAgeMs: 300 }, async (warm, _pids, recycles) => {
    const first = await run(warm, "counts_calls");
    await new Promise((r) => setTimeout(r, 400));
    const second = await run(warm, "counts_calls");
    assert(first.pid !== second.pid);
    assertEquals(recycles.maxAge, 1);
  });
});

Deno.test("recycled when the handler file changes; the old process ends", async () => {
  const dir = await Deno.makeTempDir();
  const file = `${dir}/counts_calls.ts`;
  await Deno.copyFile(`${FIXTURES}counts_calls.ts`, file);
  try {
    await withWarm({}, async (warm, _pids, recycles) => {
      const a = await run(warm, "counts_calls", {}, { file });
      const b = await run(warm, "counts_calls", {}, { file });
      assertEquals(a.pid, b.pid);
      const source = await Deno.readTextFile(file);
      await Deno.writeTextFile(file, source.replace("call ${calls}", "v2 call ${calls}"));
      const c = await run(warm, "counts_calls", {}, { file });
      assert(c.pid !== a.pid);
      assertMatch(c.stdout[0], /^v2 call 1 in pid/);
      assertEquals(recycles.fileChanged, 1);
      assert(await gone(a.pid), `pid ${a.pid} is still alive`);
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("recycled when the heap used passes maxHeapMb", async () => {
  await withWarm({ maxHeapMb: 24 }, async (warm, _pids, recycles) => {
    const runs = [];
    for (let i = 0; i < 6; i++) runs.push(await run(warm, "hoards_memory", { mb: 8 }));
    assert(runs.every((r) => r.outcome === "ok"), runs.map((r) => r.reason).join(", "));
    const calls = runs.map((r) => JSON.parse(r.result!).calls);
    assert(calls.includes(1) && calls.lastIndexOf(1) > 0, `calls: ${calls}`);
    assert(new Set(runs.map((r) => r.pid)).size >= 2);
    assert((recycles.heap ?? 0) >= 1);
  });
});

Deno.test("an idle process ends after idleTimeoutMs", async () => {
  await withWarm({ idleTimeoutMs: 200 }, async (warm, _pids, recycles) => {
    const r = await run(warm, "counts_calls");
    assertEquals(warm.processes, 1);
    assert(await until(() => warm.processes === 0), "the idle process is still there");
    assertEquals(recycles.idle, 1);
    assertEquals(alive(r.pid), false);
  });
});

// --- the same sandbox as task mode ---------------------------------------------------------

Deno.test("a warm process has task mode's arguments and an emptied environment", async () => {
  await withWarm({}, async (warm) => {
    const task = send(warm, "sleeps", { ms: 600 });
    await new Promise((r) => setTimeout(r, 300));
    const environ = await Deno.readTextFile(`/proc/${task.pid}/environ`);
    const cmdline = (await Deno.readTextFile(`/proc/${task.pid}/cmdline`)).split("\0");
    const names = environ.split("\0").filter(Boolean).map((kv) => kv.split("=")[0]).sort();
    assertEquals(names, ["DENO_DIR", "DENO_NO_UPDATE_CHECK", "NO_COLOR"]);
    assertMatch(environ, /(^|\0)DENO_DIR=[^\0]*\/task-runner-sandbox\0/); // not the runner's
    const expected = sandboxArgs({ file: `${FIXTURES}sleeps.ts`, memoryMb: 64 }, "LOADER");
    assertEquals(cmdline.slice(1, expected.length), expected.slice(0, -1));
    // Then the import map that closes node:v8 and node:inspector (see child/introspection.ts).
    assertMatch(cmdline[expected.length], /^--import-map=data:application\/json,.*node:v8/);
    assertMatch(cmdline[expected.length + 1], /runner\/sandbox\/child\/warm_loader\.ts$/);
    assertEquals((await task.ran).outcome, "ok");
  });
});

const RUNTIME_DENIALS: [string, unknown, RegExp][] = [
  ["reads_passwd", {}, /NotCapable: Requires read access to "\/etc\/passwd"/],
  ["reads_other_function", {}, /NotCapable: Requires read access to .*echo\.ts/],
  ["writes_file", { path: "/tmp/task-runner-warm-denied" }, /NotCapable: Requires write access/],
  ["reads_env", {}, /NotCapable: Requires env access/],
  ["uses_net", { url: "http://127.0.0.1:65001/" }, /NotCapable: Requires net access/],
  ["runs_subprocess", {}, /NotCapable: Requires run access/],
  ["uses_ffi", {}, /NotCapable: Requires ffi access/],
  ["reads_sys", {}, /NotCapable: Requires sys access/],
  ["imports_outside_dynamic", {}, /Requires read access to .*runner\/config\.ts/],
];

for (const [handler, payload, what] of RUNTIME_DENIALS) {
  Deno.test(`denied in a task, the process lives on: ${handler}`, async () => {
    await withWarm({}, async (warm) => {
      const a = await run(warm, handler, payload);
      assertDenied(a, what);
      const b = await run(warm, handler, payload);
      assertDenied(b, what);
      assertEquals(b.pid, a.pid);
    });
    assertEquals(
      await Deno.stat("/tmp/task-runner-warm-denied").then(() => true, () => false),
      false,
    );
  });
}

const LOAD_DENIALS: [string, RegExp][] = [
  ["imports_remote", /cannot load handler imports_remote/],
  ["imports_npm", /npm specifiers were requested; but --no-npm is specified/],
  ["imports_outside", /Requires read access to .*runner\/config\.ts/],
];

for (const [handler, what] of LOAD_DENIALS) {
  Deno.test(`denied at import, every task of the function fails: ${handler}`, async () => {
    await withWarm({ concurrency: 2 }, async (warm) => {
      const runs = await Promise.all([1, 2, 3].map(() => run(warm, handler)));
      for (const r of runs) {
        assertDenied(r, what);
        assertEquals(r.code, 65);
        assertMatch(r.reason, /^exit 65: handler failed to load/);
      }
    });
  });
}

Deno.test("granted: only granted variables are readable, as in task mode", async () => {
  await withWarm({}, async (warm, pids) => {
    const names = ["SECRET_TOKEN", "MODE", "OTHER"];
    assertDenied(
      await run(warm, "env_visible", { names }),
      /Requires env access to "SECRET_TOKEN"/,
    );
    const grants = { allowEnv: ["SECRET_TOKEN", "OTHER"], env: { MODE: "x" } };
    const granted = await run(warm, "env_visible", { names }, { grants });
    assertEquals(granted.outcome, "ok");
    assertEquals(JSON.parse(granted.stdout[0]), { SECRET_TOKEN: "s3cr3t", MODE: "x" });
    assertEquals(pids.size, 2); // other grants, other process
  });
});

// --- lifecycle and options ------------------------------------------------------------------

Deno.test("close() fails running tasks, leaves no process, and is idempotent", async () => {
  const warm = new WarmSandboxes({ killGraceMs: 500, concurrency: 3 });
  const tasks = [1, 2, 3].map(() => send(warm, "sleeps", { ms: 10_000 }));
  await new Promise((r) => setTimeout(r, 300));
  const closing = warm.close();
  assert(warm.close() === closing);
  await closing;
  for (const t of tasks) {
    const r = await t.ran;
    assertEquals(r.outcome, "failed");
    assertMatch(r.reason, /the warm sandboxes were closed while the task ran/);
    assertEquals(alive(t.pid), false);
  }
  let refused: unknown;
  try {
    send(warm, "sleeps");
  } catch (error) {
    refused = error;
  }
  assert(refused instanceof SpawnError);
});

Deno.test("a warm process does not outlive a runner killed by SIGKILL", async () => {
  const module = new URL("../../runner/sandbox/warm_sandbox.ts", import.meta.url).href;
  const script = `
    const { WarmSandboxes } = await import(${JSON.stringify(module)});
    const child = new WarmSandboxes().spawn({
      handler: "sleeps", file: ${JSON.stringify(`${FIXTURES}sleeps.ts`)}, task: {},
      payload: new TextEncoder().encode('{"ms":60000}'), timeoutMs: 120000, memoryMb: 64,
    });
    console.log(child.pid);
    await child.done;`;
  const runner = new Deno.Command(Deno.execPath(), {
    args: ["eval", script],
    stdout: "piped",
  }).spawn();
  const reader = runner.stdout.pipeThrough(new TextDecoderStream()).getReader();
  const warmPid = Number((await reader.read()).value);
  await new Promise((r) => setTimeout(r, 300));
  assert(alive(warmPid));
  runner.kill("SIGKILL");
  await runner.status;
  await reader.cancel();
  assert(await gone(warmPid), `warm pid ${warmPid} outlived its runner`);
});

Deno.test("options are validated with a message naming the option", () => {
  for (
    const [options, message] of [
      [
        { maxTasks: 0 },
        'Cannot create warm sandboxes: "maxTasks" must be a positive integer, got 0',
      ],
      [{ concurrency: 1.5 }, '"concurrency" must be a positive integer, got 1.5'],
      [{ killGraceMs: -1 }, '"killGraceMs" must be an integer >= 0, got -1'],
      [{ maxHeapMb: 0 }, '"maxHeapMb" must be a positive number, got 0'],
    ] as const
  ) {
    let error: unknown;
    try {
      new WarmSandboxes(options);
    } catch (e) {
      error = e;
    }
    assert(error instanceof RangeError);
    assert(error.message.includes(message), error.message);
  }
});
