/**
 * Every kind of ending, through the runner: failures, timeouts, OOM, and each rejection.
 * The runner keeps going after all of them.
 */
import { assertEquals, assertMatch } from "../helpers/assert.ts";
import { kcatProduce, RunnerProcess, unique } from "../helpers/harness.ts";

Deno.test("failed, timeout and out-of-memory outcomes, then the runner goes on", async () => {
  const topic = unique("fail");
  await using runner = RunnerProcess.onTopic(topic, {
    TASK_TIMEOUT_MS: "1500",
    KILL_GRACE_MS: "500",
    TASK_MEMORY_MB: "32",
    TOPIC_PARTITIONS: "1",
  });
  await runner.ready();
  for (
    const handler of [
      "throws",
      "exits_nonzero",
      "hangs",
      "ignores_sigterm",
      "oom",
      "no_default",
      "echo",
    ]
  ) {
    await kcatProduce(topic, "{}", { headers: { php_worker: handler } });
  }
  const outcomes = await runner.waitForOutcomes(7);
  const by = Object.fromEntries(outcomes.map((o) => [o.handler as string, o]));
  assertEquals(by.throws.outcome, "failed");
  assertMatch(String(by.throws.reason), /exit 1: handler threw/);
  assertEquals(by.exits_nonzero.outcome, "failed");
  assertEquals(by.exits_nonzero.reason, "exit 3");
  assertEquals(by.hangs.outcome, "timeout");
  assertEquals(by.hangs.reason, "killed by SIGTERM after timeout 1500 ms");
  assertEquals(by.ignores_sigterm.outcome, "timeout");
  assertEquals(by.ignores_sigterm.reason, "killed by SIGKILL after timeout 1500 ms");
  assertEquals(by.oom.outcome, "failed");
  assertMatch(String(by.oom.reason), /out of memory/);
  assertEquals(by.no_default.outcome, "failed");
  assertMatch(String(by.no_default.reason), /no default export function/);
  assertEquals(by.echo.outcome, "ok");
  // The throwing handler's stack reached the log at warning level, tagged with its task.
  const stderr = runner.lines.find((l) =>
    l.properties?.handler === "throws" && l.properties?.stream === "stderr"
  );
  assertEquals(stderr?.level, "WARN");
  assertMatch(String(stderr?.properties.line), /boom from throws\.ts/);
});

Deno.test("each rejection kind is logged with its reason and position", async () => {
  const topic = unique("reject");
  await using runner = RunnerProcess.onTopic(topic, {
    MAX_PAYLOAD_BYTES: "64",
    TOPIC_PARTITIONS: "1",
  });
  await runner.ready();
  const cases: Array<[Record<string, string>, string, RegExp]> = [
    [{}, "{}", /missing header "php_worker"/],
    [{ php_worker: "../../etc/passwd" }, "{}", /invalid handler name/],
    [{ php_worker: "has-dash" }, "{}", /invalid handler name/],
    [{ php_worker: "x".repeat(101) }, "{}", /invalid handler name/],
    [{ php_worker: "does_not_exist" }, "{}", /unknown handler does_not_exist/],
    [{ php_worker: "echo" }, "{not json", /payload is not valid JSON/],
    [
      { php_worker: "echo" },
      JSON.stringify({ big: "y".repeat(100) }),
      /payload of \d+ bytes is over the limit of 64/,
    ],
  ];
  for (const [headers, value] of cases) await kcatProduce(topic, value, { headers });
  await kcatProduce(topic, "{}", { headers: { php_worker: "echo" } });
  const outcomes = await runner.waitForOutcomes(cases.length + 1);
  for (const [i, [, , reason]] of cases.entries()) {
    assertEquals(outcomes[i].outcome, "rejected", `case ${i}`);
    assertEquals(outcomes[i].offset, String(i));
    assertEquals(outcomes[i].partition, 0);
    assertEquals(outcomes[i].topic, topic);
    assertMatch(String(outcomes[i].reason), reason);
  }
  assertEquals(outcomes[cases.length].outcome, "ok");
});
