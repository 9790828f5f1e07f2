/**
 * The sandbox with real `deno run` children, no broker: outcomes, limits and denials.
 */
import { assert, assertEquals, assertMatch } from "../helpers/assert.ts";
import type { FunctionConfig } from "../../runner/function_config.ts";
import type {
  ChildResult,
  RunningChild,
  SandboxTask,
} from "../../runner/sandbox/process_source.ts";
import { Sandbox } from "../../runner/sandbox/task_sandbox.ts";
import { signalGroup } from "../../runner/sandbox/process_group.ts";

import { FIXTURES } from "../helpers/fixtures.ts";

interface Ran extends ChildResult {
  stdout: string[];
  stderr: string[];
  ms: number;
}

/** Spawn the fixture `handler` with an empty task and payload `{}`, unless `task` says otherwise. */
function spawnFixture(
  sandbox: Sandbox,
  handler: string,
  task: Partial<SandboxTask> = {},
): RunningChild {
  return sandbox.spawn({
    handler,
    file: `${FIXTURES}${handler}.ts`,
    task: {},
    payload: new TextEncoder().encode("{}"),
    timeoutMs: 10_000,
    memoryMb: 64,
    ...task,
  });
}

async function run(
  handler: string,
  payload: unknown = {},
  options: { grants?: FunctionConfig; timeoutMs?: number; memoryMb?: number; sandbox?: Sandbox } =
    {},
): Promise<Ran> {
  const sandbox = options.sandbox ??
    new Sandbox({ killGraceMs: 500, hostEnv: { SECRET_TOKEN: "s3cr3t" } });
  const stdout: string[] = [];
  const stderr: string[] = [];
  const started = performance.now();
  const child = spawnFixture(sandbox, handler, {
    task: {
      headers: { php_worker: handler },
      key: null,
      topic: "t",
      partition: 0,
      offset: "7",
      timestamp: "",
    },
    payload: new TextEncoder().encode(JSON.stringify(payload)),
    timeoutMs: options.timeoutMs ?? 15_000,
    memoryMb: options.memoryMb ?? 64,
    grants: options.grants,
    onOutput: (stream, line) => (stream === "stdout" ? stdout : stderr).push(line),
  });
  const result = await child.done;
  return { ...result, stdout, stderr, ms: performance.now() - started };
}

function assertDenied(r: Ran, what: RegExp) {
  assertEquals(r.outcome, "failed", `expected a failure, got ${r.outcome}: ${r.stdout.join("\n")}`);
  assertMatch(r.stderr.join("\n"), what);
}

Deno.test("a handler gets its payload, headers and position on stdin", async () => {
  const r = await run("echo", { to: "world", n: [1, 2] });
  assertEquals(r.outcome, "ok");
  assertEquals(r.reason, "exit 0");
  const task = JSON.parse(r.stdout[0]);
  assertEquals(task.payload, { to: "world", n: [1, 2] });
  assertEquals(task.headers.php_worker, "echo");
  assertEquals(task.offset, "7");
});

Deno.test("a throwing handler fails with its stack on stderr", async () => {
  const r = await run("throws");
  assertEquals(r.outcome, "failed");
  assertEquals(r.code, 1);
  assertMatch(r.reason, /handler threw/);
  assertMatch(r.stderr.join("\n"), /boom from throws\.ts/);
});

Deno.test("a non-zero exit is a failure with its code", async () => {
  const r = await run("exits_nonzero");
  assertEquals(r.outcome, "failed");
  assertEquals(r.reason, "exit 3");
  assertEquals(r.stderr, ["about to exit 3"]);
});

Deno.test("a module without a default export function fails clearly", async () => {
  const r = await run("no_default");
  assertEquals(r.outcome, "failed");
  assertEquals(r.code, 64);
  assertMatch(r.stderr.join("\n"), /no default export function/);
});

Deno.test("a hanging handler is killed by SIGTERM at its timeout", async () => {
  const r = await run("hangs", {}, { timeoutMs: 700 });
  assertEquals(r.outcome, "timeout");
  assertEquals(r.signal, "SIGTERM");
  assertEquals(r.reason, "killed by SIGTERM after timeout 700 ms");
});

Deno.test("a handler that ignores SIGTERM is killed by SIGKILL after the grace", async () => {
  const r = await run("ignores_sigterm", {}, { timeoutMs: 1000 });
  assertEquals(r.outcome, "timeout");
  assertEquals(r.signal, "SIGKILL");
  assert(r.stdout.includes("ignoring SIGTERM"), `stdout: ${r.stdout}`);
});

Deno.test("a handler over its heap cap dies of out-of-memory", async () => {
  const r = await run("oom", {}, { memoryMb: 32 });
  assertEquals(r.outcome, "failed");
  assertEquals(r.signal, "SIGTRAP");
  assertMatch(r.reason, /out of memory/);
});

Deno.test("output is passed on line by line but bounded", async () => {
  const sandbox = new Sandbox({ output: { maxLineBytes: 1000, maxTotalBytes: 64 * 1024 } });
  const r = await run("prints_lots", { mb: 20 }, { sandbox });
  assertEquals(r.outcome, "ok");
  assert(r.stdout.length <= 65, `passed on ${r.stdout.length} lines`);
  assert(r.stdout.every((l) => l.length <= 1000));
  assert(r.droppedBytes > 20 * 1024 * 1024, `dropped ${r.droppedBytes}`);
});

// --- denials -----------------------------------------------------------------------------

Deno.test("denied: reading /etc/passwd", async () => {
  assertDenied(await run("reads_passwd"), /NotCapable: Requires read access to "\/etc\/passwd"/);
});

Deno.test("denied: reading another function's file", async () => {
  assertDenied(await run("reads_other_function"), /NotCapable: Requires read access to .*echo\.ts/);
});

Deno.test("denied: writing a file", async () => {
  const path = await Deno.makeTempFile();
  await Deno.remove(path);
  assertDenied(await run("writes_file", { path }), /NotCapable: Requires write access/);
  assertEquals(await Deno.stat(path).then(() => true, () => false), false);
});

Deno.test("denied: reading environment variables", async () => {
  assertDenied(await run("reads_env"), /NotCapable: Requires env access/);
});

Deno.test("denied: network", async () => {
  assertDenied(
    await run("uses_net", { url: "http://127.0.0.1:65001/" }),
    /NotCapable: Requires net access/,
  );
});

Deno.test("denied: running a subprocess", async () => {
  assertDenied(await run("runs_subprocess"), /NotCapable: Requires run access/);
});

Deno.test("denied: FFI", async () => {
  assertDenied(await run("uses_ffi"), /NotCapable: Requires ffi access/);
});

Deno.test("denied: system information", async () => {
  assertDenied(await run("reads_sys"), /NotCapable: Requires sys access/);
});

Deno.test("denied: remote import", async () => {
  const r = await run("imports_remote");
  assertDenied(r, /cannot load handler imports_remote/);
  assertEquals(r.code, 65);
});

Deno.test("denied: npm import", async () => {
  assertDenied(
    await run("imports_npm"),
    /npm specifiers were requested; but --no-npm is specified/,
  );
});

Deno.test("denied: static import of a file outside functions/", async () => {
  assertDenied(await run("imports_outside"), /Requires read access to .*runner\/config\.ts/);
});

Deno.test("denied: dynamic import of a file outside functions/", async () => {
  assertDenied(
    await run("imports_outside_dynamic"),
    /Requires read access to .*runner\/config\.ts/,
  );
});

Deno.test("a type-only import needs no read permission", async () => {
  const r = await run("reads_task_types", { n: 5 });
  assertEquals(r.outcome, "ok");
  assertEquals(r.stdout, ["n=5"]);
});

// --- grants ------------------------------------------------------------------------------

Deno.test("the child's process environment is emptied", async () => {
  const sandbox = new Sandbox({ hostEnv: { SECRET_TOKEN: "s3cr3t" } });
  const child = spawnFixture(sandbox, "hangs");
  await new Promise((r) => setTimeout(r, 300));
  const environ = await Deno.readTextFile(`/proc/${child.pid}/environ`);
  child.stop("test over", true);
  await child.done;
  const names = environ.split("\0").filter(Boolean).map((kv) => kv.split("=")[0]).sort();
  assertEquals(names, ["DENO_DIR", "DENO_NO_UPDATE_CHECK", "NO_COLOR"]);
  assertMatch(environ, /(^|\0)DENO_DIR=[^\0]*\/task-runner-sandbox\0/); // not the runner's
});

Deno.test("granted: only granted variables are passed and readable", async () => {
  const names = ["SECRET_TOKEN", "MODE", "OTHER"];
  const none = await run("env_visible", { names });
  assertDenied(none, /Requires env access to "SECRET_TOKEN"/);
  const granted = await run("env_visible", { names }, {
    grants: { allowEnv: ["SECRET_TOKEN", "OTHER"], env: { MODE: "x" } },
  });
  assertEquals(granted.outcome, "ok");
  assertEquals(JSON.parse(granted.stdout[0]), { SECRET_TOKEN: "s3cr3t", MODE: "x" });
});

Deno.test("granted: net to one host works, another host stays denied", async () => {
  await using server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    () => new Response("pong"),
  );
  const url = `http://127.0.0.1:${server.addr.port}/`;
  const ok = await run("uses_net", { url }, {
    grants: { allowNet: [`127.0.0.1:${server.addr.port}`] },
  });
  assertEquals(ok.outcome, "ok");
  assertEquals(ok.stdout, ["status 200: pong"]);
  const other = await run("uses_net", { url: "http://127.0.0.1:65001/" }, {
    grants: { allowNet: [`127.0.0.1:${server.addr.port}`] },
  });
  assertDenied(other, /Requires net access to "127\.0\.0\.1:65001"/);
});

Deno.test("granted: write to one directory works", async () => {
  const dir = await Deno.makeTempDir();
  const r = await run("writes_file", { path: `${dir}/out.txt` }, { grants: { allowWrite: [dir] } });
  assertEquals(r.outcome, "ok");
  assertEquals(await Deno.readTextFile(`${dir}/out.txt`), "written");
  await Deno.remove(dir, { recursive: true });
});

Deno.test("a handler's JSON return value comes back, apart from its output", async () => {
  const r = await run("returns_value", { n: 21 });
  assertEquals(r.outcome, "ok");
  assertEquals(JSON.parse(r.result!), { doubled: 42, note: "ünïcode" });
  assertEquals(r.stderr, []);
  const none = await run("echo", {});
  assertEquals(none.result, undefined);
});

/** ppid, process group, session and nice value of `pid`, from /proc (comm may hold spaces). */
function processIds(
  pid: number,
): { ppid: number; pgrp: number; session: number; nice: number } | null {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    const [state, ppid, pgrp, session] = fields;
    const nice = Number(fields[16]);
    return state === "Z"
      ? null
      : { ppid: Number(ppid), pgrp: Number(pgrp), session: Number(session), nice };
  } catch {
    return null; // gone (a zombie counts as gone: this machine's PID 1 may not reap)
  }
}

Deno.test("a child is deno itself in its own session at the given nice value, and stopping it reaches its subprocesses", async () => {
  const sandbox = new Sandbox({ killGraceMs: 500, nice: 7 });
  const stdout: string[] = [];
  const child = spawnFixture(sandbox, "starts_sleeper", {
    timeoutMs: 3000,
    grants: { allowRun: ["/bin/sleep"] },
    onOutput: (stream, line) => stream === "stdout" && stdout.push(line),
  });
  const deadline = Date.now() + 10_000;
  while (stdout.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  const sleeper = Number(stdout[0]);
  assert(sleeper > 0, `the handler printed no subprocess pid: ${JSON.stringify(stdout)}`);
  // The pid we signal is the deno process (no wrapper in between), child of the runner.
  assertEquals(Deno.realPathSync(`/proc/${child.pid}/exe`), Deno.realPathSync(Deno.execPath()));
  assertEquals(processIds(child.pid), {
    ppid: Deno.pid,
    pgrp: child.pid,
    session: child.pid,
    nice: 7,
  });
  assertEquals(processIds(sleeper)?.pgrp, child.pid);
  assertEquals(processIds(sleeper)?.nice, 7); // inherited by what the handler starts
  const result = await child.done;
  assertEquals(result.outcome, "timeout");
  assertEquals(processIds(sleeper), null, "the handler's subprocess outlived the stop");
});

Deno.test("signalGroup: a live process not yet leading its group is signalled alone; an exited one never", async () => {
  // A plain child is in our process group, not a group of its own: like a sandboxed process in
  // the instant before `setsid` has run.
  const spawnSleeper = () => new Deno.Command("/bin/sleep", { args: ["30"] }).spawn();
  const exited = spawnSleeper();
  signalGroup(exited.pid, "SIGTERM", false);
  const stillThere = await Promise.race([
    exited.status.then(() => false),
    new Promise<boolean>((r) => setTimeout(() => r(true), 300)),
  ]);
  assertEquals(stillThere, true, "a process said to have exited was signalled by pid");
  exited.kill("SIGKILL");
  await exited.status;

  const live = spawnSleeper();
  signalGroup(live.pid, "SIGTERM", true);
  assertEquals((await live.status).signal, "SIGTERM");
});

Deno.test("a nice value outside 0-19 is refused with the option named", () => {
  for (const nice of [-1, 20, 1.5]) {
    let error: unknown;
    try {
      new Sandbox({ nice });
    } catch (e) {
      error = e;
    }
    assert(error instanceof RangeError, `nice ${nice} was accepted`);
    assertEquals(
      error.message,
      `Cannot create sandbox: "nice" must be an integer from 0 to 19, got ${nice}`,
    );
  }
});
