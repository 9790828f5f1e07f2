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
import type { PumpLimits } from "./output_lines.ts";
import type { RunningChild, SandboxTask } from "./task_sandbox.ts";
import { fileVersion, findSetsid, niceValue } from "./permissions.ts";
import { type RecycleReason, type SandboxOutput, WarmProcess } from "./warm_process.ts";

export type { RecycleReason, SandboxOutput } from "./warm_process.ts";

/** Options of {@link WarmSandboxes}. */
export interface WarmSandboxesOptions {
  /** The Deno executable that runs handlers. @default Deno.execPath() */
  denoPath?: string;
  /**
   * util-linux's `setsid`, which gives each process its own session and process group at a
   * fraction of the cost of Deno's `detached` spawn (see `spawnSandboxed`); null uses
   * `detached`. @default the first of /usr/bin/setsid and /bin/setsid that exists, else null
   */
  setsidPath?: string | null;
  /**
   * Nice value handler processes are lowered to (0: the runner's), so that the runner and the
   * broker keep the CPU when many handlers run. @default 0
   */
  nice?: number;
  /** Deno's cache folder for children. @default the runner's DENO_DIR, if set */
  denoDir?: string;
  /** Environment the granted `allowEnv` variables are copied from. @default {} */
  hostEnv?: Readonly<Record<string, string>>;
  /**
   * Time between SIGTERM and SIGKILL, and how long a process whose input was closed may take
   * to exit before it is sent SIGTERM. @default 5000
   */
  killGraceMs?: number;
  /** Output limits per task and stream (unattributed output: per process). @default {} */
  output?: PumpLimits;
  /** Tasks one process runs at the same time. @default 1 */
  concurrency?: number;
  /** Tasks one process serves before it is recycled. @default 1000 */
  maxTasks?: number;
  /** Age after which a process takes no new task (checked when a task is sent). @default 300000 */
  maxAgeMs?: number;
  /** Heap used after a task (MiB) above which the process is recycled. @default 0.75 × memoryMb */
  maxHeapMb?: number;
  /** An idle process ends after this long without a task. @default 60000 */
  idleTimeoutMs?: number;
  /** Lines a process printed outside of any task (see {@link SandboxOutput}). @default dropped */
  onSandboxOutput?: (output: SandboxOutput) => void;
}

/** Counters of {@link WarmSandboxes}, for metrics. */
export interface WarmStats {
  /** Warm processes alive now, recycling ones included. */
  processes: number;
  /** Processes started since creation. */
  started: number;
  /** Tasks running now. */
  inFlight: number;
  /** Tasks sent to warm processes since creation. */
  tasksServed: number;
  /** Processes recycled, by reason. */
  recycles: Record<RecycleReason, number>;
}

const REASONS: readonly RecycleReason[] = [
  "maxTasks",
  "maxAge",
  "heap",
  "fileChanged",
  "timeout",
  "crash",
  "stopped",
  "idle",
];

/**
 * Runs tasks in warm processes, one pool per (function, file, heap cap, grants). `spawn` has
 * the contract of `Sandbox.spawn`, so a runner can route a function here instead.
 *
 * @example
 * ```ts
 * const warm = new WarmSandboxes({ concurrency: 4, maxTasks: 500 });
 * const child = warm.spawn(task); // task: a SandboxTask, as for Sandbox.spawn
 * const result = await child.done; // { outcome: "ok", reason: "returned (warm pid 4242)", ... }
 * await warm.close();
 * ```
 */
export class WarmSandboxes {
  readonly #deno: string;
  readonly #setsid: string | null;
  readonly #nice: number;
  readonly #denoDir: string | undefined;
  readonly #hostEnv: Readonly<Record<string, string>>;
  readonly #grace: number;
  readonly #maxLineBytes: number;
  readonly #maxTotalBytes: number;
  readonly #concurrency: number;
  readonly #maxTasks: number;
  readonly #maxAgeMs: number;
  readonly #maxHeapMb: number | undefined;
  readonly #idleTimeoutMs: number;
  readonly #onSandboxOutput: ((output: SandboxOutput) => void) | undefined;
  /** Processes taking tasks, by pool key. */
  readonly #pools = new Map<string, WarmProcess[]>();
  /** Every process not yet exited, recycling ones included. */
  readonly #all = new Set<WarmProcess>();
  readonly #recycles = Object.fromEntries(REASONS.map((r) => [r, 0])) as Record<
    RecycleReason,
    number
  >;
  #started = 0;
  #served = 0;
  #closed: Promise<void> | null = null;

  constructor(options: WarmSandboxesOptions = {}) {
    const check = (name: keyof WarmSandboxesOptions, value: number, min: number) => {
      if (!Number.isSafeInteger(value) || value < min) {
        const must = min === 0 ? "an integer >= 0" : "a positive integer";
        throw new RangeError(
          `Cannot create warm sandboxes: "${name}" must be ${must}, got ${value}`,
        );
      }
      return value;
    };
    this.#grace = check("killGraceMs", options.killGraceMs ?? 5000, 0);
    this.#concurrency = check("concurrency", options.concurrency ?? 1, 1);
    this.#maxTasks = check("maxTasks", options.maxTasks ?? 1000, 1);
    this.#maxAgeMs = check("maxAgeMs", options.maxAgeMs ?? 300_000, 1);
    this.#idleTimeoutMs = check("idleTimeoutMs", options.idleTimeoutMs ?? 60_000, 1);
    if (
      options.maxHeapMb !== undefined &&
      !(Number.isFinite(options.maxHeapMb) && options.maxHeapMb > 0)
    ) {
      const got = options.maxHeapMb;
      throw new RangeError(
        `Cannot create warm sandboxes: "maxHeapMb" must be a positive number, got ${got}`,
      );
    }
    this.#maxHeapMb = options.maxHeapMb;
    this.#maxLineBytes = options.output?.maxLineBytes ?? 8192;
    this.#maxTotalBytes = options.output?.maxTotalBytes ?? 1_048_576;
    this.#deno = options.denoPath ?? Deno.execPath();
    this.#setsid = options.setsidPath === undefined ? findSetsid() : options.setsidPath;
    this.#nice = niceValue(options.nice, "warm sandboxes");
    this.#denoDir = options.denoDir;
    this.#hostEnv = options.hostEnv ?? {};
    this.#onSandboxOutput = options.onSandboxOutput;
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
    for (const process of [...(this.#pools.get(key) ?? [])]) {
      if (process.version !== version) process.retire("fileChanged");
      else if (now - process.startedAt >= this.#maxAgeMs) process.retire("maxAge");
      else if (process.load < this.#concurrency && (!best || process.load < best.load)) {
        best = process;
      }
    }
    best ??= this.#start(task, key, version);
    this.#served++;
    return best.run(task);
  }

  /** Counters for metrics. */
  stats(): WarmStats {
    let inFlight = 0;
    for (const process of this.#all) inFlight += process.load;
    return {
      processes: this.#all.size,
      started: this.#started,
      inFlight,
      tasksServed: this.#served,
      recycles: { ...this.#recycles },
    };
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
      deno: this.#deno,
      setsid: this.#setsid,
      nice: this.#nice,
      denoDir: this.#denoDir,
      hostEnv: this.#hostEnv,
      killGraceMs: this.#grace,
      concurrency: this.#concurrency,
      maxTasks: this.#maxTasks,
      maxHeapBytes: (this.#maxHeapMb ?? 0.75 * task.memoryMb) * 1_048_576,
      idleTimeoutMs: this.#idleTimeoutMs,
      maxLineBytes: this.#maxLineBytes,
      maxTotalBytes: this.#maxTotalBytes,
      version,
      onSandboxOutput: this.#onSandboxOutput,
      onRetire: (retired, reason) => {
        this.#recycles[reason]++;
        const pool = this.#pools.get(key)?.filter((p) => p !== retired) ?? [];
        if (pool.length > 0) this.#pools.set(key, pool);
        else this.#pools.delete(key);
      },
    });
    this.#started++;
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
  const { version, error } = fileVersion(task.file);
  if (error) {
    throw new SpawnError(`cannot run handler ${task.handler}: ${task.file}: ${error.message}`);
  }
  return version;
}
