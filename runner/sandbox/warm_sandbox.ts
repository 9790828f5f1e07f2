/**
 * Warm sandboxes (`isolation: "function"`): long-lived restricted processes that each serve
 * many tasks of one function, so that a task does not pay a process start-up.
 *
 * A warm process gets exactly the permissions, heap cap and emptied environment of a task-mode
 * child ({@link sandboxArgs}, {@link sandboxEnv}); its main module is `warm_loader.ts`, which
 * imports the handler once and runs the tasks it is sent, up to `concurrency` at a time. Module
 * state persists from task to task, which is the point, and also why processes are recycled:
 * after `maxTasks` tasks, after `maxAgeMs`, when the heap passes `maxHeapMb`, when the handler
 * file changes, and after a task timed out or the process crashed. Idle processes end after
 * `idleTimeoutMs`.
 *
 * What a task can no longer expect, compared with task mode: a task timeout kills the whole
 * process, so the other tasks it was running fail as collateral (with a reason that says so);
 * a handler that exits the process or crashes it fails every task in flight there; output
 * written with `Deno.stdout`/`Deno.stderr` directly rather than `console` cannot be attributed
 * to a task and goes to `onSandboxOutput`.
 * @module
 */
import { SpawnError } from "../errors.ts";
import type { ProcessSource, RunningChild, SandboxTask } from "./process_source.ts";
import { fileVersion } from "./permissions.ts";
import { type SpawnOptions, type SpawnSettings, spawnSettings } from "./spawn_settings.ts";
import { type RecycleReason, type SandboxOutput, WarmProcess } from "./warm_process.ts";

export type { RecycleReason, SandboxOutput } from "./warm_process.ts";

/** Options of {@link WarmSandboxes}: how processes start (see {@link SpawnOptions}), and live. */
export interface WarmSandboxesOptions extends SpawnOptions {
  /** Tasks one process runs at the same time. @default 1 */
  concurrency?: number;
  /** Tasks one process serves before it is recycled. @default 10000 */
  maxTasks?: number;
  /** Age after which a process takes no new task (checked when a task is sent). @default 300000 */
  maxAgeMs?: number;
  /** Heap used after a task (MiB) above which the process is recycled. @default 0.75 × memoryMb */
  maxHeapMb?: number;
  /** An idle process ends after this long without a task. @default 60000 */
  idleTimeoutMs?: number;
  /** Lines a process printed outside of any task (see {@link SandboxOutput}). @default dropped */
  onSandboxOutput?: (output: SandboxOutput) => void;
  /** Told when a process stops taking tasks, with why (not when closed). @default none */
  onRecycle?: (recycled: { handler: string; pid: number; reason: RecycleReason }) => void;
}

/**
 * Runs tasks in warm processes, one pool per (function, file, heap cap, grants).
 *
 * @example
 * ```ts
 * const warm = new WarmSandboxes({ concurrency: 4, maxTasks: 500 });
 * const child = warm.spawn(task); // task: a SandboxTask, as for Sandbox.spawn
 * const result = await child.done; // { outcome: "ok", reason: "returned (warm pid 4242)", ... }
 * await warm.close();
 * ```
 */
export class WarmSandboxes implements ProcessSource {
  readonly #spawn: SpawnSettings;
  readonly #concurrency: number;
  readonly #maxTasks: number;
  readonly #maxAgeMs: number;
  readonly #maxHeapMb: number | undefined;
  readonly #idleTimeoutMs: number;
  readonly #onSandboxOutput: ((output: SandboxOutput) => void) | undefined;
  readonly #onRecycle: NonNullable<WarmSandboxesOptions["onRecycle"]>;
  /** Processes taking tasks, by pool key. */
  readonly #pools = new Map<string, WarmProcess[]>();
  /** Every process not yet exited, recycling ones included. */
  readonly #all = new Set<WarmProcess>();
  #closed: Promise<void> | null = null;

  constructor(options: WarmSandboxesOptions = {}) {
    const owner = "warm sandboxes";
    const check = (name: keyof WarmSandboxesOptions, value: number) => {
      if (!Number.isSafeInteger(value) || value < 1) {
        throw new RangeError(
          `Cannot create ${owner}: "${name}" must be a positive integer, got ${value}`,
        );
      }
      return value;
    };
    this.#spawn = spawnSettings(options, owner);
    this.#concurrency = check("concurrency", options.concurrency ?? 1);
    this.#maxTasks = check("maxTasks", options.maxTasks ?? 10_000);
    this.#maxAgeMs = check("maxAgeMs", options.maxAgeMs ?? 300_000);
    this.#idleTimeoutMs = check("idleTimeoutMs", options.idleTimeoutMs ?? 60_000);
    if (
      options.maxHeapMb !== undefined &&
      !(Number.isFinite(options.maxHeapMb) && options.maxHeapMb > 0)
    ) {
      const got = options.maxHeapMb;
      throw new RangeError(
        `Cannot create ${owner}: "maxHeapMb" must be a positive number, got ${got}`,
      );
    }
    this.#maxHeapMb = options.maxHeapMb;
    this.#onSandboxOutput = options.onSandboxOutput;
    this.#onRecycle = options.onRecycle ?? (() => {});
  }

  /** Warm processes alive now, recycling ones included. */
  get processes(): number {
    return this.#all.size;
  }

  /**
   * Run `task` in a warm process of its function, starting one if none has a free slot.
   * Throws {@link SpawnError} only if no process can take it (closed, file gone, spawn
   * failure); every later failure is reported through `done`.
   */
  spawn(task: SandboxTask): RunningChild {
    if (this.#closed) {
      throw new SpawnError(`cannot run handler ${task.handler}: the warm sandboxes are closed`);
    }
    const version = taskFileVersion(task);
    const key = poolKey(task);
    const now = Date.now();
    let best: WarmProcess | null = null;
    // Retiring one replaces the pool's array (onRetire), so this one can be walked as it is.
    for (const process of this.#pools.get(key) ?? []) {
      if (process.version !== version) process.retire("fileChanged");
      else if (now - process.startedAt >= this.#maxAgeMs) process.retire("maxAge");
      else if (process.load < this.#concurrency && (!best || process.load < best.load)) {
        best = process;
      }
    }
    best ??= this.#start(task, key, version);
    return best.run(task);
  }

  /**
   * End every warm process (stdin closed, then SIGTERM and SIGKILL to its process group if it
   * lingers); tasks still running fail. Resolves when all have exited. Idempotent. Call it at
   * shutdown, after the drain: otherwise idle processes live on until their idle timeout.
   */
  close(): Promise<void> {
    this.#closed ??= (async () => {
      this.#pools.clear();
      await Promise.all([...this.#all].map((process) => process.close()));
    })();
    return this.#closed;
  }

  #start(task: SandboxTask, key: string, version: string): WarmProcess {
    const process = new WarmProcess(task, {
      spawn: this.#spawn,
      concurrency: this.#concurrency,
      maxTasks: this.#maxTasks,
      maxHeapBytes: (this.#maxHeapMb ?? 0.75 * task.memoryMb) * 1_048_576,
      idleTimeoutMs: this.#idleTimeoutMs,
      version,
      onSandboxOutput: this.#onSandboxOutput,
      onRetire: (retired, reason) => {
        this.#onRecycle({ handler: retired.handler, pid: retired.pid, reason });
        const pool = this.#pools.get(key)?.filter((p) => p !== retired) ?? [];
        if (pool.length > 0) this.#pools.set(key, pool);
        else this.#pools.delete(key);
      },
    });
    this.#all.add(process);
    process.exited.then(() => this.#all.delete(process));
    const pool = this.#pools.get(key);
    if (pool) pool.push(process);
    else this.#pools.set(key, [process]);
    return process;
  }
}

/** What decides which processes may share tasks: same function, file, heap cap and grants. */
function poolKey(task: SandboxTask): string {
  return JSON.stringify([task.handler, task.file, task.memoryMb, task.grants ?? {}]);
}

/** A cheap fingerprint of the handler file: a new one means a new process. */
function taskFileVersion(task: SandboxTask): string {
  if (task.fileVersion !== undefined) return task.fileVersion;
  const { version, error } = fileVersion(task.file);
  if (error) {
    throw new SpawnError(`cannot run handler ${task.handler}: ${task.file}: ${error.message}`);
  }
  return version;
}
