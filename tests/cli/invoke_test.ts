/**
 * `main.ts invoke` as a real subprocess, with no broker reachable: output lines and outcome,
 * exit status per outcome, payload from the argument, a file or stdin, headers and key,
 * --repeat with --isolation function, and clear errors for bad input.
 */
import { fileURLToPath } from "node:url";
import { assertEquals, assertMatch } from "../helpers/assert.ts";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const FIXTURES = `${ROOT}tests/fixtures/functions`;
const ENV = {
  FUNCTIONS_DIR: FIXTURES,
  FUNCTIONS_CONFIG: "/nonexistent/functions.json",
  KAFKA_BROKERS: "127.0.0.1:1", // nothing listens there: invoke must not need it
  TASK_NICE: "0",
};

async function invoke(args: string[], stdin?: string, env: Record<string, string> = {}) {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", `${ROOT}main.ts`, "invoke", ...args],
    env: { ...ENV, ...env },
    cwd: ROOT,
    stdin: stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  if (stdin !== undefined) {
    const w = child.stdin.getWriter();
    await w.write(new TextEncoder().encode(stdin));
    await w.close();
  }
  const out = await child.output();
  const text = new TextDecoder();
  return { code: out.code, stdout: text.decode(out.stdout), stderr: text.decode(out.stderr) };
}

Deno.test("invoke prints the task's output and outcome and exits 0 when ok", async () => {
  const r = await invoke(["echo", '{"to":"world"}', "--key", "k7", "--header", "trace=abc"]);
  assertEquals(r.code, 0, r.stderr);
  const [line, outcome] = r.stdout.trim().split("\n");
  const task = JSON.parse(line.replace(/^stdout \| /, ""));
  assertEquals([task.payload, task.key, task.headers.trace], [{ to: "world" }, "k7", "abc"]);
  assertMatch(outcome, /^echo: ok in \d+ ms \(exit 0\)$/);
});

Deno.test("invoke's exit status is the outcome: failed 1, timeout 124, rejected 3", async () => {
  const failed = await invoke(["exits_nonzero"]);
  assertEquals(failed.code, 1);
  assertMatch(
    failed.stdout,
    /stderr \| about to exit 3\nexits_nonzero: failed in \d+ ms \(exit 3\)/,
  );
  const timeout = await invoke(["hangs", "--task-timeout-ms", "400"]);
  assertEquals(timeout.code, 124);
  assertMatch(
    timeout.stdout,
    /hangs: timeout in \d+ ms \(killed by SIGTERM after timeout 400 ms\)/,
  );
  const config = await Deno.makeTempFile({ suffix: ".json" });
  await Deno.writeTextFile(
    config,
    JSON.stringify({ functions: { echo: { schema: { required: ["to"] } } } }),
  );
  const rejected = await invoke(["echo", "{}"], undefined, { FUNCTIONS_CONFIG: config });
  assertEquals(rejected.code, 3);
  assertMatch(rejected.stdout, /echo: rejected .*payload: must have required property 'to'/);
  await Deno.remove(config);
});

Deno.test("invoke reads the payload from a file or from stdin", async () => {
  const file = await Deno.makeTempFile();
  await Deno.writeTextFile(file, JSON.stringify({ n: 4 }));
  const fromFile = await invoke(["returns_value", "--payload-file", file]);
  assertEquals(fromFile.code, 0, fromFile.stderr);
  assertMatch(fromFile.stdout, /result \| \{"doubled":8,"note":"ünïcode"\}/);
  const fromStdin = await invoke(["returns_value", "-"], '{"n": 5}');
  assertMatch(fromStdin.stdout, /result \| \{"doubled":10/);
  await Deno.remove(file);
});

Deno.test("invoke --repeat with --isolation function keeps one warm process", async () => {
  const r = await invoke(["counts_calls", "--repeat", "3", "--isolation", "function", "--json"]);
  assertEquals(r.code, 0, r.stderr);
  const runs = r.stdout.trim().split("\n").map((l) => JSON.parse(l));
  assertEquals(runs.map((run) => run.result.calls), [1, 2, 3]);
  assertEquals(new Set(runs.map((run) => run.result.pid)).size, 1);
});

Deno.test("invoke refuses bad input clearly: unknown name, invalid JSON (where), bad flags", async () => {
  const unknown = await invoke(["ech0"]);
  assertEquals(unknown.code, 2);
  assertMatch(
    unknown.stderr,
    /unknown handler "ech0": no file .*ech0\.ts \(handlers there: .*echo,/,
  );
  const json = await invoke(["echo", '{"to": world}']);
  assertEquals(json.code, 2);
  assertMatch(
    json.stderr,
    /the payload is not valid JSON: .*\n {2}\{"to": world\}\n {9}\^ here \(line 1, column 8\)/,
  );
  const isolation = await invoke(["echo", "--isolation", "warm"]);
  assertEquals(isolation.code, 2);
  assertMatch(isolation.stderr, /--isolation must be task or function, got "warm"/);
  const repeat = await invoke(["echo", "--repeat", "0"]);
  assertMatch(repeat.stderr, /--repeat must be a positive integer, got "0"/);
});
