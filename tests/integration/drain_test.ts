/**
 * SIGTERM drains: running tasks finish (or are killed at the drain timeout), the runner exits
 * 0, and no child process is left behind.
 */
import { assert, assertEquals, assertMatch } from "../helpers/assert.ts";
import { alive, kcatProduce, RunnerProcess, unique } from "../helpers/harness.ts";

function startedPids(runner: RunnerProcess): number[] {
  return runner.lines.filter((l) => l.message.startsWith("Started")).map((l) =>
    l.properties.pid as number
  );
}

Deno.test("SIGTERM lets running tasks finish, then exits 0 with no child left", async () => {
  const topic = unique("drain");
  await using runner = RunnerProcess.onTopic(topic);
  await runner.ready();
  for (let i = 0; i < 3; i++) {
    await kcatProduce(topic, '{"ms": 1500}', { headers: { php_worker: "sleeps" } });
  }
  await runner.waitFor("3 starts", () => startedPids(runner).length === 3 || undefined);
  const pids = startedPids(runner);
  assert(pids.every(alive));
  runner.kill("SIGTERM");
  const status = await runner.exited;
  assertEquals(status.code, 0);
  assertEquals(runner.outcomes().map((o) => o.outcome), ["ok", "ok", "ok"]);
  assertEquals(pids.filter(alive), []);
});

Deno.test("at the drain timeout, stragglers are killed (SIGTERM, then SIGKILL) and logged", async () => {
  const topic = unique("drain_to");
  await using runner = RunnerProcess.onTopic(topic, {
    DRAIN_TIMEOUT_MS: "500",
    KILL_GRACE_MS: "500",
  });
  await runner.ready();
  await kcatProduce(topic, "{}", { headers: { php_worker: "hangs" } });
  await kcatProduce(topic, "{}", { headers: { php_worker: "ignores_sigterm" } });
  await runner.waitFor("2 starts", () => startedPids(runner).length === 2 || undefined);
  // ignores_sigterm prints "ready" once its SIGTERM listener is installed.
  await runner.waitFor(
    "the SIGTERM listener",
    () => runner.output("ignores_sigterm").includes("ready") || undefined,
  );
  const pids = startedPids(runner);
  runner.kill("SIGTERM");
  const status = await runner.exited;
  assertEquals(status.code, 0);
  const by = Object.fromEntries(runner.outcomes().map((o) => [o.handler as string, o]));
  assertEquals(by.hangs.outcome, "failed");
  assertMatch(
    String(by.hangs.reason),
    /killed by SIGTERM at shutdown, after the drain timeout of 500 ms/,
  );
  assertMatch(String(by.ignores_sigterm.reason), /killed by SIGKILL at shutdown/);
  assertEquals(pids.filter(alive), []);
});

Deno.test("a second SIGTERM forces: children are killed at once", async () => {
  const topic = unique("force");
  await using runner = RunnerProcess.onTopic(topic);
  await runner.ready();
  await kcatProduce(topic, "{}", { headers: { php_worker: "ignores_sigterm" } });
  await runner.waitFor(
    "the SIGTERM listener",
    () => runner.output("ignores_sigterm").includes("ready") || undefined,
  );
  const pids = startedPids(runner);
  runner.kill("SIGTERM");
  await runner.waitFor(
    "drain to begin",
    () => runner.lines.find((l) => l.message.startsWith("Stopping")),
  );
  runner.kill("SIGTERM");
  const status = await runner.exited;
  assertEquals(status.code, 1);
  const [outcome] = runner.outcomes();
  assertMatch(String(outcome.reason), /killed by SIGKILL forced by a second SIGTERM/);
  assertEquals(pids.filter(alive), []);
});

Deno.test("kill -9 of the runner leaves no orphans: children see their stdin close and exit", async () => {
  const topic = unique("orphan");
  await using runner = RunnerProcess.onTopic(topic);
  await runner.ready();
  await kcatProduce(topic, "{}", { headers: { php_worker: "hangs" } });
  await kcatProduce(topic, "{}", { headers: { php_worker: "hangs" } });
  await runner.waitFor("2 starts", () => startedPids(runner).length === 2 || undefined);
  const pids = startedPids(runner);
  assert(pids.every(alive));
  runner.kill("SIGKILL");
  await runner.exited;
  // The children are in their own sessions, so only the lifeline can end them; give it time.
  const deadline = Date.now() + 5000;
  while (pids.some(alive) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  assertEquals(pids.filter(alive), []);
});
