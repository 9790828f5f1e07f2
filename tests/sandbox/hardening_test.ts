/**
 * Sandbox hardening (issue 17), in task mode and warm mode with real children: no persistent
 * web storage, no loading from the runner's npm cache, no outliving the runner.
 */
import { assert, assertEquals, assertMatch } from "../helpers/assert.ts";
import { join } from "node:path";
import { Sandbox } from "../../runner/sandbox/task_sandbox.ts";
import { alive, FIXTURES, gone, run as runWarm, withWarm } from "../helpers/warm_harness.ts";

const ENCODER = new TextEncoder();

/** Run `handler` once in task mode; its outcome and stdout lines. */
async function runTask(sandbox: Sandbox, handler: string, payload: unknown = {}) {
  const stdout: string[] = [];
  const stderr: string[] = [];
  const child = sandbox.spawn({
    handler,
    file: `${FIXTURES}${handler}.ts`,
    task: {},
    payload: ENCODER.encode(JSON.stringify(payload)),
    timeoutMs: 15_000,
    memoryMb: 64,
    onOutput: (stream, line) => (stream === "stdout" ? stdout : stderr).push(line),
  });
  const result = await child.done;
  return { ...result, stdout, stderr };
}

/** Every path under `dir` whose name is `name` (Deno's web storage lives in `location_data`). */
function findNamed(dir: string, name: string): string[] {
  const found: string[] = [];
  for (const entry of Deno.readDirSync(dir)) {
    const path = join(dir, entry.name);
    if (entry.name === name) found.push(path);
    if (entry.isDirectory) found.push(...findNamed(path, name));
  }
  return found;
}

/** The runner's own Deno cache: where `deno install` put kafkajs. */
function runnerDenoDir(): string {
  return Deno.env.get("DENO_DIR") ?? join(Deno.env.get("HOME") ?? "/root", ".cache", "deno");
}

/**
 * Absolute paths of two of the runner's own packages in its npm cache (there whenever the
 * runner has run: its imports in deno.json), checked to be there.
 */
function cachedPackages(): string[] {
  const registry = join(runnerDenoDir(), "npm", "registry.npmjs.org");
  const { imports } = JSON.parse(
    Deno.readTextFileSync(new URL("../../deno.json", import.meta.url)),
  ) as { imports: Record<string, string> };
  const paths = ["kafkajs", "prom-client"].map((name) => {
    const version = imports[name].slice(`npm:${name}@`.length);
    return join(registry, name, version, "index.js");
  });
  for (const path of paths) assert(Deno.statSync(path).isFile, `${path} is in the npm cache`);
  return paths;
}

const NO_STORAGE = "localStorage:undefined sessionStorage:undefined caches:undefined " +
  "CacheStorage:undefined";

Deno.test("task mode: two functions cannot pass data through web storage, nothing is on disk", async () => {
  const denoDir = Deno.makeTempDirSync({ prefix: "task-runner-deno-dir-" });
  try {
    const sandbox = new Sandbox({ killGraceMs: 500, denoDir });
    const stored = await runTask(sandbox, "stores_web_data", { secret: "tenant-A card 4111" });
    assertEquals(stored.outcome, "ok", stored.stderr.join("\n"));
    const read = await runTask(sandbox, "reads_web_data");
    assertEquals(read.outcome, "ok", read.stderr.join("\n"));
    assertEquals(read.stdout, [JSON.stringify({ stored: null, cached: null })]);
    assertEquals(stored.stdout, [NO_STORAGE]);
    assertEquals(findNamed(denoDir, "location_data"), [], "no web storage on disk");
  } finally {
    Deno.removeSync(denoDir, { recursive: true });
  }
});

Deno.test("warm mode: two functions cannot pass data through web storage, nothing is on disk", async () => {
  const denoDir = Deno.makeTempDirSync({ prefix: "task-runner-deno-dir-" });
  try {
    await withWarm({ denoDir }, async (warm) => {
      const stored = await runWarm(warm, "stores_web_data", { secret: "tenant-A card 4111" });
      assertEquals(stored.outcome, "ok", stored.stderr.join("\n"));
      const read = await runWarm(warm, "reads_web_data");
      assertEquals(read.outcome, "ok", read.stderr.join("\n"));
      assertEquals(read.stdout, [JSON.stringify({ stored: null, cached: null })]);
      assertEquals(stored.stdout, [NO_STORAGE]);
    });
    assertEquals(findNamed(denoDir, "location_data"), [], "no web storage on disk");
  } finally {
    Deno.removeSync(denoDir, { recursive: true });
  }
});

/** Each specifier was refused for want of a read grant: nothing was loaded. */
function assertRequireRefused(stdout: string[], specifiers: string[]) {
  assertEquals(stdout.length, specifiers.length + 1, stdout.join("\n"));
  for (const line of stdout) {
    assertMatch(line, /^refused \S+: .*(Requires read access|Cannot find module)/);
  }
}

Deno.test("task mode: require() cannot load a package from the runner's npm cache", async () => {
  const paths = cachedPackages();
  const specifiers = ["kafkajs", ...paths];
  const sandbox = new Sandbox({ killGraceMs: 500, denoDir: Deno.env.get("DENO_DIR") });
  const r = await runTask(sandbox, "requires_cached", { specifiers });
  assertEquals(r.outcome, "ok", r.stderr.join("\n"));
  assertRequireRefused(r.stdout, paths);
});

Deno.test("warm mode: require() cannot load a package from the runner's npm cache", async () => {
  const paths = cachedPackages();
  const specifiers = ["kafkajs", ...paths];
  await withWarm({ denoDir: Deno.env.get("DENO_DIR") }, async (warm) => {
    const r = await runWarm(warm, "requires_cached", { specifiers });
    assertEquals(r.outcome, "ok", r.stderr.join("\n"));
    assertRequireRefused(r.stdout, paths);
  });
});

/**
 * Start a runner-like parent (`deno eval` of `script`, which prints the child's pid), kill it
 * with SIGKILL once the child runs, and return whether the child went away on its own.
 */
async function childOutlivesKill9(script: string): Promise<boolean> {
  const parent = new Deno.Command(Deno.execPath(), {
    args: ["eval", "--ext=ts", script],
    stdout: "piped",
    stderr: "null",
  }).spawn();
  const reader = parent.stdout.pipeThrough(new TextDecoderStream()).getReader();
  const pid = Number((await reader.read()).value);
  try {
    assert(pid > 0 && alive(pid), `the child runs (pid ${pid})`);
    await new Promise((r) => setTimeout(r, 500)); // its handler is running, listeners set
    parent.kill("SIGKILL");
    await parent.status;
    await reader.cancel();
    return !(await gone(pid));
  } finally {
    try {
      // A child that outlived the parent must not outlive the test (never -0 or -NaN: that
      // would be this process group).
      if (pid > 0) Deno.kill(-pid, "SIGKILL");
    } catch {
      // already gone: what the test wants
    }
  }
}

const MODULES = {
  task: new URL("../../runner/sandbox/task_sandbox.ts", import.meta.url).href,
  warm: new URL("../../runner/sandbox/warm_sandbox.ts", import.meta.url).href,
};
const TASK = `{ handler: "survives_lifeline", file: ${
  JSON.stringify(`${FIXTURES}survives_lifeline.ts`)
}, task: {}, payload: new TextEncoder().encode("{}"), timeoutMs: 120000, memoryMb: 64 }`;

Deno.test("task mode: a handler that swallows rejections and spins on unload dies with its runner", async () => {
  const script = `
    const { Sandbox } = await import(${JSON.stringify(MODULES.task)});
    const child = new Sandbox().spawn(${TASK});
    console.log(child.pid);
    await child.done;`;
  assertEquals(await childOutlivesKill9(script), false, "the child outlived its runner");
});

Deno.test("task mode, prewarmed: the same handler dies with its runner", async () => {
  const script = `
    const { Sandbox } = await import(${JSON.stringify(MODULES.task)});
    const task = ${TASK};
    const started = new Sandbox().prewarm(task, { importHandler: true });
    await new Promise((r) => setTimeout(r, 300));
    const child = started.attach(task);
    console.log(child.pid);
    await child.done;`;
  assertEquals(await childOutlivesKill9(script), false, "the child outlived its runner");
});

Deno.test("warm mode: a handler that swallows rejections and spins on unload dies with its runner", async () => {
  const script = `
    const { WarmSandboxes } = await import(${JSON.stringify(MODULES.warm)});
    const child = new WarmSandboxes().spawn(${TASK});
    console.log(child.pid);
    await child.done;`;
  assertEquals(await childOutlivesKill9(script), false, "the child outlived its runner");
});
