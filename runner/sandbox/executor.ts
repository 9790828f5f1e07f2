/**
 * Runs a job's task in a process: chooses, once per function, where its processes come from
 * (a fresh task-mode process, a prewarmed one, or the function's warm processes) and logs
 * their output with the task's context.
 * @module
 */
import type { Executor, Job } from "../dispatch/job.ts";
import type { ConcurrencyCap } from "../dispatch/concurrency_cap.ts";
import { SpawnError } from "../errors.ts";
import type { GrantsTable } from "../function_config.ts";
import { logger } from "../report/logging.ts";
import { contextOf, type TaskObserver } from "../report/task_reporter.ts";
import { logPrewarmEvent, prewarmedFunctions, Prewarmer } from "./prewarm.ts";
import {
  type ChildResult,
  type ProcessScope,
  type RunningChild,
  Sandbox,
  type StartedProcess,
} from "./task_sandbox.ts";
import { WarmSandboxes } from "./warm_sandbox.ts";

/** Options of a {@link TaskExecutor}. */
export interface TaskExecutorOptions {
  /** The cap: prewarmed children hold reservations in it. */
  cap: ConcurrencyCap;
  /** Per-function configuration (functions.json). */
  functions: GrantsTable;
  /** Folder of handlers (for the files of functions prewarmed from start-up). */
  functionsDir: string;
  /** Default per-task timeout, in ms. */
  taskTimeoutMs: number;
  /** Default V8 heap cap per process, in MiB. */
  memoryMb: number;
  /** Grace between SIGTERM and SIGKILL, in ms. */
  killGraceMs: number;
  /** Nice value of handler processes. */
  taskNice: number;
  /** Idle prewarmed children per function after its first task (PREWARM). */
  prewarm: number;
  /** The runner's environment, from which grants copy variables. */
  hostEnv: Record<string, string>;
  /** The runner's DENO_DIR, if set. @default none */
  denoDir?: string;
  /** The task-mode sandbox. @default a Sandbox with the settings above */
  sandbox?: Sandbox;
  /** Told of spawn failures. @default none */
  observer?: TaskObserver;
}

/** Runs tasks: task mode (fresh or prewarmed processes) or function mode (warm processes). */
export class TaskExecutor implements Executor {
  readonly #options: TaskExecutorOptions;
  readonly #sandbox: Sandbox;
  readonly #prewarm: Prewarmer;
  /** Warm processes of functions with `isolation: "function"`, one set per function. */
  readonly #warm = new Map<string, WarmSandboxes>();
  /** Processes started for jobs whose commit is on its way (see {@link prepare}). */
  readonly #prepared = new Map<Job, { process: StartedProcess; at: number }>();
  readonly #live = new Set<RunningChild>();
  readonly #active = new Set<Promise<unknown>>();
  readonly #taskLog = logger("task");
  #closed: Promise<void> | null = null;

  constructor(options: TaskExecutorOptions) {
    this.#options = options;
    this.#sandbox = options.sandbox ?? new Sandbox({
      killGraceMs: options.killGraceMs,
      nice: options.taskNice,
      hostEnv: options.hostEnv,
      denoDir: options.denoDir,
    });
    this.#prewarm = new Prewarmer({
      sandbox: this.#sandbox,
      pool: options.cap,
      count: options.prewarm,
      functions: prewarmedFunctions(options.functions, options),
      onEvent: logPrewarmEvent,
    });
  }

  /** Start the prewarmed children of functions with `prewarm` set. */
  start(): void {
    this.#prewarm.start();
  }

  /** Idle prewarmed children now, over all functions. */
  get prewarmedIdle(): number {
    return this.#prewarm.idle;
  }

  /** Warm processes alive now, over all functions. */
  get warmProcesses(): number {
    let n = 0;
    for (const warm of this.#warm.values()) n += warm.stats().processes;
    return n;
  }

  /**
   * Start a task-mode process for `job` while its commit is on its way; {@link execute} gives
   * it the task. Functions with prewarmed children or warm processes have theirs ready already.
   */
  prepare(job: Job): void {
    const scope = this.#scopeOf(job);
    if (scope.grants?.isolation === "function" || this.#prewarm.prewarms(scope.handler)) return;
    try {
      const process = this.#sandbox.start(scope);
      this.#prepared.set(job, { process, at: performance.now() });
    } catch {
      // `execute` starts it again and reports the failure as the task's outcome.
    }
  }

  discard(job: Job): void {
    this.#prepared.get(job)?.process.kill();
    this.#prepared.delete(job);
  }

  execute(job: Job): Promise<ChildResult> {
    const run = this.#execute(job);
    this.#active.add(run);
    run.finally(() => this.#active.delete(run));
    return run;
  }

  /**
   * Stop every live child now (SIGTERM, then SIGKILL after the grace; with `force`, SIGKILL at
   * once), recording why. Resolves when they have all exited.
   */
  async kill(why: string, force = false): Promise<void> {
    for (const child of this.#live) child.stop(why, force);
    while (this.#active.size > 0) await Promise.allSettled([...this.#active]);
  }

  /** Idle prewarmed children first (they hold no task); warm processes once tasks ended. */
  closePrewarmed(): Promise<void> {
    return this.#prewarm.close();
  }

  /** Close prewarmed children and warm processes. Idempotent. */
  close(): Promise<void> {
    this.#closed ??= (async () => {
      await this.#prewarm.close();
      await Promise.all([...this.#warm.values()].map((warm) => warm.close()));
    })();
    return this.#closed;
  }

  /** The task-mode sandbox (through the prewarmer), or the function's warm sandboxes. */
  #sandboxFor(handler: string): Pick<Sandbox, "spawn"> {
    const grants = this.#options.functions.get(handler);
    if (grants?.isolation !== "function") return this.#prewarm;
    let warm = this.#warm.get(handler);
    if (!warm) {
      warm = new WarmSandboxes({
        killGraceMs: this.#options.killGraceMs,
        nice: this.#options.taskNice,
        hostEnv: this.#options.hostEnv,
        denoDir: this.#options.denoDir,
        ...grants.warm,
        onSandboxOutput: (output) =>
          this.#taskLog.warn("{handler} warm sandbox pid {pid} {stream}: {line}", { ...output }),
      });
      this.#warm.set(handler, warm);
    }
    return warm;
  }

  /** What decides which process may run `job`: handler, file, heap cap and grants. */
  #scopeOf(job: Job): ProcessScope {
    const { handler, file } = job.task;
    const grants = this.#options.functions.get(handler);
    return { handler, file, memoryMb: grants?.memoryMb ?? this.#options.memoryMb, grants };
  }

  async #execute(job: Job): Promise<ChildResult> {
    const context = contextOf(job);
    const scope = this.#scopeOf(job);
    const prepared = this.#prepared.get(job);
    this.#prepared.delete(job);
    const started = prepared?.at ?? performance.now();
    let child: RunningChild;
    try {
      const task = {
        ...scope,
        task: { ...job.task.fields, attempt: job.attempt },
        payload: job.task.payload,
        timeoutMs: scope.grants?.timeoutMs ?? this.#options.taskTimeoutMs,
        onOutput: (stream: "stdout" | "stderr", line: string, truncated: boolean) => {
          const props = { ...context, stream, line, truncated };
          if (stream === "stdout") this.#taskLog.info("{handler} {stream}: {line}", props);
          else this.#taskLog.warn("{handler} {stream}: {line}", props);
        },
      };
      child = prepared
        ? prepared.process.attach(task)
        : this.#sandboxFor(job.task.handler).spawn(task);
    } catch (error) {
      this.#options.observer?.spawnFailed(job.task.handler);
      const reason = error instanceof SpawnError ? error.message : String(error);
      return {
        outcome: "failed",
        reason: `spawn failed: ${reason}`,
        code: -1,
        signal: null,
        droppedBytes: 0,
      };
    }
    this.#live.add(child);
    this.#taskLog.debug("Started {handler} pid {pid}, {running} running", {
      ...context,
      pid: child.pid,
      attempt: job.attempt,
      running: this.#options.cap.running,
      // Runner overhead from slot to spawn, from slot to the task handed over (an at-most-once
      // commit included), and time spent waiting for a slot.
      dispatchMs: (prepared?.at ?? performance.now()) - job.readyAt,
      handoverMs: performance.now() - job.readyAt,
      queuedMs: job.readyAt - job.fetchedAt,
    });
    const result = await child.done;
    this.#live.delete(child);
    return { ...result, durationMs: performance.now() - started };
  }
}
