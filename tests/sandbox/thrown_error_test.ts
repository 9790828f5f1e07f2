/**
 * What a handler threw reaches the runner as its class, its message (bounded) and its first
 * stack frames, in task mode, prewarmed and in function (warm) mode alike.
 */
import { assert, assertEquals, assertMatch } from "../helpers/assert.ts";
import { fileURLToPath } from "node:url";
import { ConcurrencyCap } from "../../runner/dispatch/concurrency_cap.ts";
import { MAX_ERROR_MESSAGE_CHARS } from "../../runner/sandbox/child/protocol.ts";
import { Prewarmer } from "../../runner/sandbox/prewarm.ts";
import type { ChildResult, SandboxTask } from "../../runner/sandbox/process_source.ts";
import { Sandbox } from "../../runner/sandbox/task_sandbox.ts";
import { run as runWarm, withWarm } from "../helpers/warm_harness.ts";

const FIXTURES = fileURLToPath(new URL("../fixtures/functions/", import.meta.url));
const sandbox = new Sandbox({ killGraceMs: 500 });

function taskOf(payload: unknown): SandboxTask {
  return {
    handler: "declines",
    file: `${FIXTURES}declines.ts`,
    memoryMb: 64,
    task: { headers: {}, key: null, topic: "t", partition: 0, offset: "7" },
    payload: new TextEncoder().encode(JSON.stringify(payload)),
    timeoutMs: 15_000,
  };
}

function assertDeclined(r: ChildResult, prefix: string): void {
  assertEquals(r.outcome, "failed");
  assertEquals(r.code, 1);
  assertEquals(r.reason, `${prefix}handler threw CardDeclined: card declined: insufficient funds`);
  assertEquals(r.error?.name, "CardDeclined");
  assertEquals(r.error?.message, "card declined: insufficient funds");
  assert(r.error!.stack.length >= 1 && r.error!.stack.length <= 5, `stack ${r.error?.stack}`);
  assertMatch(r.error!.stack[0], /^at .*declines\.ts:\d+:\d+/);
}

Deno.test("task mode: the reason carries the thrown class and message", async () => {
  assertDeclined(await sandbox.spawn(taskOf({})).done, "exit 1: ");
});

Deno.test("task mode: a huge message is cut to the bound", async () => {
  const r = await sandbox.spawn(taskOf({ long: true })).done;
  assertEquals(r.error!.message.length, MAX_ERROR_MESSAGE_CHARS + 1);
  assert(r.error!.message.endsWith("…"));
  assert(r.reason.length < MAX_ERROR_MESSAGE_CHARS + 100, `reason of ${r.reason.length}`);
});

Deno.test("prewarmed: the reason carries the thrown class and message", async () => {
  let ready = 0;
  const prewarmer = new Prewarmer({
    sandbox,
    pool: new ConcurrencyCap(2),
    functions: [{
      scope: { handler: "declines", file: `${FIXTURES}declines.ts`, memoryMb: 64 },
      count: 1,
    }],
    onEvent: (event) => event.kind === "ready" && ready++,
  });
  try {
    prewarmer.start();
    const deadline = Date.now() + 20_000;
    while (ready === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    assertEquals(ready, 1, "a prewarmed child is ready");
    assertDeclined(await prewarmer.spawn(taskOf({})).done, "exit 1: ");
  } finally {
    await prewarmer.close();
  }
});

Deno.test("function mode: the reason carries the thrown class and message", async () => {
  await withWarm({}, async (warm) => {
    assertDeclined(await runWarm(warm, "declines"), "");
    const long = await runWarm(warm, "declines", { long: true });
    assertEquals(long.error!.message.length, MAX_ERROR_MESSAGE_CHARS + 1);
  });
});
