/**
 * A handler's return value has its own budget in both modes (issue 17 item 4): output that
 * spends the output limit does not lose the result, and a result over the limit is a failure
 * that names the limit, never a silent ok.
 */
import { assert, assertEquals, assertMatch } from "../helpers/assert.ts";
import { MAX_RESULT_BYTES } from "../../runner/sandbox/child/protocol.ts";
import type { ChildResult } from "../../runner/sandbox/process_source.ts";
import { Sandbox } from "../../runner/sandbox/task_sandbox.ts";
import { FIXTURES, run as runWarm, withWarm } from "../helpers/warm_harness.ts";

const MIB = 1_048_576;

async function runTask(payload: unknown): Promise<ChildResult & { stderr: string[] }> {
  const stderr: string[] = [];
  const child = new Sandbox({ killGraceMs: 500 }).spawn({
    handler: "returns_after_output",
    file: `${FIXTURES}returns_after_output.ts`,
    task: {},
    payload: new TextEncoder().encode(JSON.stringify(payload)),
    timeoutMs: 20_000,
    memoryMb: 128,
    onOutput: (stream, line) => stream === "stderr" && stderr.push(line),
  });
  return { ...(await child.done), stderr };
}

/** Run `payload` in task mode and in a warm process; `check` each result. */
async function bothModes(payload: unknown, check: (r: ChildResult, mode: string) => void) {
  check(await runTask(payload), "task");
  await withWarm({}, async (warm) => {
    check(await runWarm(warm, "returns_after_output", payload, { memoryMb: 128 }), "warm");
  });
}

Deno.test("a result survives output that spent the whole output budget", async () => {
  await bothModes({ stderrBytes: 1.2 * MIB, resultBytes: 100 }, (r, mode) => {
    assertEquals(r.outcome, "ok", `${mode}: ${r.reason}`);
    assert(r.droppedBytes > 0, `${mode}: the output limit was reached`);
    assertEquals(JSON.parse(r.result ?? "null")?.big?.length, 90, mode);
  });
});

Deno.test("a result just under the limit comes back whole, after a flood of output", async () => {
  await bothModes({ stderrBytes: 1.2 * MIB, resultBytes: MAX_RESULT_BYTES - 100 }, (r, mode) => {
    assertEquals(r.outcome, "ok", `${mode}: ${r.reason}`);
    assertEquals(r.result?.length, MAX_RESULT_BYTES - 100, mode);
  });
});

Deno.test("a result over the limit fails, naming the limit", async () => {
  await bothModes({ resultBytes: MAX_RESULT_BYTES + 100 }, (r, mode) => {
    assertEquals([r.outcome, r.result], ["failed", undefined], `${mode}: ${r.reason}`);
    assertMatch(r.reason, new RegExp(`over ${MAX_RESULT_BYTES} bytes as JSON`), mode);
  });
});
