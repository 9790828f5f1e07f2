/**
 * Helpers of the warm sandbox tests: send a task and collect its output; a WarmSandboxes that
 * is always closed and leaves no process behind.
 */
import { assertEquals, assertMatch } from "./assert.ts";
import type { FunctionConfig } from "../../runner/function_config.ts";
import type { ChildResult } from "../../runner/sandbox/process_source.ts";
import {
  type RecycleReason,
  WarmSandboxes,
  type WarmSandboxesOptions,
} from "../../runner/sandbox/warm_sandbox.ts";

import { FIXTURES } from "./fixtures.ts";
export { FIXTURES };
export { alive, gone, until } from "./process.ts";
import { alive } from "./process.ts";
const ENCODER = new TextEncoder();

/** A task's result with its pid and output. */
export interface Ran extends ChildResult {
  pid: number;
  stdout: string[];
  stderr: string[];
}

/** Where and how to send a task. */
export interface Options {
  file?: string;
  grants?: FunctionConfig;
  timeoutMs?: number;
  memoryMb?: number;
  /** Every output line of every task, in arrival order, as `stream line`. */
  all?: string[];
}

/** Send one task; resolves with its result and its own output. */
export function send(
  warm: WarmSandboxes,
  handler: string,
  payload: unknown = {},
  options: Options = {},
): { pid: number; ran: Promise<Ran>; stop: (why: string) => void } {
  const stdout: string[] = [];
  const stderr: string[] = [];
  const child = warm.spawn({
    handler,
    file: options.file ?? `${FIXTURES}${handler}.ts`,
    task: { headers: { php_worker: handler }, key: null, topic: "t", partition: 0, offset: "7" },
    payload: ENCODER.encode(JSON.stringify(payload)),
    timeoutMs: options.timeoutMs ?? 15_000,
    memoryMb: options.memoryMb ?? 64,
    grants: options.grants,
    onOutput: (stream, line) => {
      (stream === "stdout" ? stdout : stderr).push(line);
      options.all?.push(`${stream} ${line}`);
    },
  });
  return {
    pid: child.pid,
    ran: child.done.then((r) => ({ ...r, pid: child.pid, stdout, stderr })),
    stop: (why) => child.stop(why),
  };
}

/** Send one task and wait for its result. */
export const run = (warm: WarmSandboxes, handler: string, payload: unknown = {}, o: Options = {}) =>
  send(warm, handler, payload, o).ran;

/** Recycles seen through `onRecycle`, by reason. */
export type Recycles = Partial<Record<RecycleReason, number>>;

/**
 * A WarmSandboxes for the test body, always closed, with no process left behind. The body gets
 * the pids of the processes that ran its tasks and the recycles seen so far.
 */
export async function withWarm(
  options: WarmSandboxesOptions,
  body: (warm: WarmSandboxes, pids: Set<number>, recycles: Recycles) => Promise<void>,
): Promise<void> {
  const recycles: Recycles = {};
  const warm = new WarmSandboxes({
    killGraceMs: 500,
    hostEnv: { SECRET_TOKEN: "s3cr3t" },
    ...options,
    onRecycle: (recycled) => {
      recycles[recycled.reason] = (recycles[recycled.reason] ?? 0) + 1;
      options.onRecycle?.(recycled);
    },
  });
  const pids = new Set<number>();
  const spawn = warm.spawn.bind(warm);
  warm.spawn = (task) => {
    const child = spawn(task);
    pids.add(child.pid);
    return child;
  };
  try {
    await body(warm, pids, recycles);
  } finally {
    await warm.close();
  }
  assertEquals(warm.processes, 0);
  for (const pid of pids) assertEquals(alive(pid), false, `pid ${pid} is still alive`);
}

/** The task failed with `what` on its stderr. */
export function assertDenied(r: Ran, what: RegExp) {
  assertEquals(r.outcome, "failed", `expected a failure, got ${r.outcome}: ${r.stdout.join("\n")}`);
  assertMatch(r.stderr.join("\n"), what);
}
