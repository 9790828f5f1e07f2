/**
 * What every way of getting a process for a task has in common: a task goes in, a
 * {@link RunningChild} comes out, and it ends in one {@link ChildResult}. The executor picks
 * one source per function: `Sandbox` (task mode, one fresh process per task), `Prewarmer`
 * (task mode from processes started before their task) or `WarmSandboxes` (function mode).
 * @module
 */
import type { FunctionConfig } from "../function_config.ts";
import type { SandboxScope } from "./permissions.ts";
import type { ThrownError } from "./child/protocol.ts";

/** The parts of a task that decide which process may run it: handler, file, heap cap, grants. */
export interface ProcessScope extends SandboxScope {
  /** Handler name (validated). */
  handler: string;
}

/** One task to run. */
export interface SandboxTask extends ProcessScope {
  /** Task fields passed to the handler, without the payload. */
  task: Record<string, unknown>;
  /** The raw JSON payload, passed on as it came. */
  payload: Uint8Array;
  /** Time the task may run. */
  timeoutMs: number;
  /**
   * The handler file's fingerprint from when the task was decoded (`versionOf` of
   * handler_name.ts): warm sandboxes use it instead of a stat of their own. @default taken now
   */
  fileVersion?: string;
  /** Operator grants for this function. */
  grants?: Readonly<FunctionConfig>;
  /** Called for each output line of the task. */
  onOutput?: (stream: "stdout" | "stderr", line: string, truncated: boolean) => void;
}

/** How a task's process ended, or the task in it. */
export interface ChildResult {
  outcome: "ok" | "failed" | "timeout";
  /** The exit status in words. */
  reason: string;
  code: number;
  signal: Deno.Signal | null;
  /** Output bytes dropped because a stream went over its budget. */
  droppedBytes: number;
  /** The handler's return value as JSON text, if it returned one (and exited 0). */
  result?: string;
  /** What the handler threw (class, message and first frames, bounded), when it threw. */
  error?: ThrownError;
  /** Time from spawn to exit, when the caller measured it. */
  durationMs?: number;
}

/** A task that is running. */
export interface RunningChild {
  readonly pid: number;
  /** Settles when the task has ended and its output has been read. Never rejects. */
  readonly done: Promise<ChildResult>;
  /**
   * Stop the task (SIGTERM, then SIGKILL after the grace), recording why. With `force`, send
   * SIGKILL at once, even if a stop is already under way.
   */
  stop(why: string, force?: boolean): void;
}

/** Where a function's tasks get their process. */
export interface ProcessSource {
  /**
   * Run `task`. Throws `SpawnError` only if no process can take it; every later failure is
   * reported through `done`.
   */
  spawn(task: SandboxTask): RunningChild;
  /**
   * Start no more processes and end those the source keeps: idle ones, and warm ones (the
   * tasks still running in a warm process fail). Resolves when they have exited. Idempotent.
   */
  close(): Promise<void>;
}
