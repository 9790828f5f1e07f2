/**
 * The test helper for handler authors (runner/testing.ts) with real sandboxed children: the
 * production sandbox (a read it was not granted fails), functions.json grants, schemas,
 * rejections before any process, results, and warm state kept between tasks of one invoker.
 */
import { fileURLToPath } from "node:url";
import { resolveConfig } from "../runner/config.ts";
import { parseFunctionConfig } from "../runner/function_config.ts";
import { invoke, LocalInvoker } from "../runner/testing.ts";
import { assert, assertEquals, assertMatch } from "./helpers/assert.ts";

const FIXTURES = fileURLToPath(new URL("./fixtures/functions/", import.meta.url));
const settings = {
  ...resolveConfig({}, {}),
  functionsDir: FIXTURES,
  functionsConfig: "/nonexistent/functions.json",
  taskNice: 0,
  taskTimeoutMs: 10_000,
};

Deno.test("invoke runs the handler in the production sandbox: an ungranted read fails", async () => {
  const denied = await invoke("reads_passwd", {}, { settings });
  assertEquals(denied.outcome, "failed");
  assertMatch(
    denied.output.map((o) => o.line).join("\n"),
    /NotCapable: Requires read access to "\/etc\/passwd"/,
  );
  const granted = await invoke("reads_passwd", {}, {
    settings,
    functions: parseFunctionConfig(
      { functions: { reads_passwd: { allowRead: ["/etc/passwd"] } } },
      "t",
    ),
  });
  assertEquals(granted.outcome, "ok", granted.reason);
  assert(granted.output.some((o) => o.line.startsWith("root:")));
});

Deno.test("invoke returns the handler's result, the task's key and headers reach it", async () => {
  const run = await invoke("returns_value", { n: 21 }, { settings });
  assertEquals(run.outcome, "ok", run.reason);
  assertEquals(run.result, { doubled: 42, note: "ünïcode" });
  assert(run.durationMs > 0);
  const echo = await invoke("echo", { a: 1 }, { settings, key: "k1", headers: { trace: "t-9" } });
  const task = JSON.parse(echo.output[0].line);
  assertEquals([task.key, task.headers.trace, task.payload], ["k1", "t-9", { a: 1 }]);
});

Deno.test("invoke rejects like the runner: unknown handler, schema mismatch, no process", async () => {
  const unknown = await invoke("no_such_handler", {}, { settings });
  assertEquals(unknown.outcome, "rejected");
  assertMatch(unknown.reason, /^unknown handler no_such_handler: no file /);
  const functions = parseFunctionConfig({
    functions: { echo: { schema: { type: "object", properties: { to: { type: "string" } } } } },
  }, "t");
  const bad = await invoke("echo", { to: 1 }, { settings, functions });
  assertEquals(bad, {
    outcome: "rejected",
    reason: "payload does not match the schema of echo: payload/to: must be string",
    output: [],
    durationMs: 0,
  });
});

Deno.test("invoke kills a handler at its timeout", async () => {
  const run = await invoke("hangs", {}, { settings: { ...settings, taskTimeoutMs: 500 } });
  assertEquals(run.outcome, "timeout");
  assertEquals(run.reason, "killed by SIGTERM after timeout 500 ms");
});

Deno.test("one invoker keeps a warm process between tasks with isolation function", async () => {
  const warm = await LocalInvoker.create("counts_calls", { settings, isolation: "function" });
  const runs = [await warm.invoke({}), await warm.invoke({}), await warm.invoke({})];
  await warm.close();
  assertEquals(runs.map((r) => (r.result as { calls: number }).calls), [1, 2, 3]);
  const cold = await LocalInvoker.create("counts_calls", { settings });
  const coldRuns = [await cold.invoke({}), await cold.invoke({})];
  await cold.close();
  assertEquals(coldRuns.map((r) => (r.result as { calls: number }).calls), [1, 1]);
});

Deno.test("invoke runs a command function (an unchanged PHP worker) as production does", async () => {
  const php = fileURLToPath(new URL("./fixtures/php/", import.meta.url));
  const functions = parseFunctionConfig({
    functions: {
      word_count: { command: ["php", `${php}start.php`, "{name}.php", "offset={offset}"] },
    },
  }, "t");
  const run = await invoke("word_count", { text: "a b a" }, {
    settings,
    functions,
    hostEnv: { PATH: Deno.env.get("PATH") ?? "/usr/bin" },
  });
  assertEquals(run.outcome, "ok", run.reason);
  assertEquals(run.output.map((o) => JSON.parse(o.line)), [{ words: 3, distinct: 2, offset: "0" }]);
});
