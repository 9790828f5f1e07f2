/**
 * The executor: where a job gets its process and runs to its outcome. It picks one process
 * source per function, once ({@link ProcessSource}: task mode, prewarmed, or warm), starts a
 * task-mode process while the job's commit is on its way (`prepare`), hands the task over
 * (`execute`), passes the task's output lines to the task log, and stops live children on
 * demand (`kill`). The dispatcher keeps the task slots; the executor uses the cap only for
 * the prewarmer's reservations.
 * @module
 */
import type { RunnerConfig } from "../config.ts";
import type { ConcurrencyCap } from "../dispatch/concurrency_cap.ts";
import type { Job } from "../dispatch/job.ts";
import { SpawnError } from "../errors.ts";
import type { FunctionConfig, FunctionConfigTable } from "../function_config.ts";
import { handlerPath } from "../handler_name.ts";
import { logger } from "../report/logging.ts";
import { contextOf, type TaskObserver } from "../report/task_reporter.ts";
import { type PrewarmedFunction, Prewarmer, type PrewarmEvent } from "./prewarm.ts";
import { CommandSource } from "./command_source.ts";
import type { ChildResult, ProcessScope, ProcessSource, RunningChild } from "./process_source.ts";
import { type SpawnSettings, spawnSettings } from "./spawn_settings.ts";
import { type PrewarmedProcess, Sandbox } from "./task_sandbox.ts";
import { WarmSandboxes } from "./warm_sandbox.ts";

/** Options of a {@link TaskExecutor}. */
export interface TaskExecutorOptions {
  /** The runner settings the executor reads. */
  settings: Pick<
    RunnerConfig,
    "functionsDir" | "killGraceMs" | "memoryMb" | "prewarm" | "taskNice" | "taskTimeoutMs"
  >;
  /** Per-function configuration (functions.json). @default none */
  functions?: FunctionConfigTable;
  /** The cap: the prewarmer's idle children hold reservations in it. */
  cap: ConcurrencyCap;
  /** Environment the granted `allowEnv` variables are copied from. @default Deno.env.toObject() */
  hostEnv?: Readonly<Record<string, string>>;
  /** Told when a task's process cannot start. @default none */
  observer?: Pick<TaskObserver, "spawnFailed">;
  /**
   * Told of each output line of a job's task, besides the task log (`invoke` prints them).
   * @default none
   */
  onOutput?: (job: Job, stream: "stdout" | "stderr", line: string, truncated: boolean) => void;
}

/**
 * Runs jobs in sandboxed processes; the runner makes one and the dispatcher calls it.
 *
 * @example
 * ```ts
 * const executor = new TaskExecutor({ settings, functions, cap });
 * executor.start(); // prewarm the functions that have their own count
 * executor.prepare(job); // while the job's commit is on its way
 * const result = await executor.execute(job); // after it
 * await executor.close();
 * ```
 */
export class TaskExecutor {
  readonly #settings: TaskExecutorOptions["settings"];
  readonly #functions: FunctionConfigTable;
  readonly #cap: ConcurrencyCap;
  readonly #spawn: SpawnSettings;
  readonly #observer: TaskExecutorOptions["observer"];
  readonly #onOutput: TaskExecutorOptions["onOutput"];
  /** Task mode: one fresh process per task. */
  readonly #sandbox: Sandbox;
  /** Functions with a `command`: one process of that program per task, outside Deno's sandbox. */
  readonly #commands: CommandSource;
  /** Task mode from processes started before their task (PREWARM, functions.json `prewarm`). */
  readonly #prewarmer: Prewarmer;
  /** Each function's process source, chosen at its first task. */
  readonly #sources = new Map<string, ProcessSource>();
  /** Warm processes of functions with `isolation: "function"`, one set per function. */
  readonly #warm = new Map<string, WarmSandboxes>();
  /** Processes prewarmed for jobs whose commit is on its way (see {@link prepare}). */
  readonly #prewarmed = new Map<Job, { process: PrewarmedProcess; at: number }>();
  readonly #live = new Set<RunningChild>();
  readonly #taskLog = logger("task");
  #closed: Promise<void> | null = null;

  constructor(options: TaskExecutorOptions) {
    this.#settings = options.settings;
    this.#functions = options.functions ?? new Map();
    this.#cap = options.cap;
    this.#observer = options.observer;
    this.#onOutput = options.onOutput;
    this.#spawn = spawnSettings({
      killGraceMs: options.settings.killGraceMs,
      nice: options.settings.taskNice,
      hostEnv: options.hostEnv ?? Deno.env.toObject(),
      denoDir: Deno.env.get("DENO_DIR"),
    }, "sandbox");
    this.#sandbox = new Sandbox(this.#spawn);
    this.#commands = new CommandSource(this.#spawn);
    this.#prewarmer = new Prewarmer({
      sandbox: this.#sandbox,
      pool: this.#cap,
      count: this.#settings.prewarm,
      functions: this.#prewarmedFunctions(),
      onEvent: logPrewarmEvent,
    });
  }

  /** Idle prewarmed children now, over all functions. */
  get prewarmedIdle(): number {
    return this.#prewarmer.idle;
  }

  /** Warm processes alive now, over all functions. */
  get warmProcesses(): number {
    let n = 0;
    for (const warm of this.#warm.values()) n += warm.processes;
    return n;
  }

  /** Tasks running in a process now. */
  get live(): number {
    return this.#live.size;
  }

  /** Prewarm the functions that have their own `prewarm` count, as free slots allow. */
  start(): void {
    this.#prewarmer.start();
  }

  /**
   * The job is about to be committed, then executed: a task-mode process may start now, as
   * long as the task reaches it only in {@link execute}, after the commit. Functions with
   * prewarmed children or warm processes have theirs ready already. Never throws.
   */
  prepare(job: Job): void {
    const scope = this.#scopeOf(job.task.handler, job.task.file);
    if (this.#sourceFor(scope.handler, scope.grants) !== this.#sandbox) return;
    try {
      this.#prewarmed.set(job, { process: this.#sandbox.prewarm(scope), at: performance.now() });
    } catch {
      // `execute` starts it again and reports the failure as the task's outcome.
    }
  }

  /** The job's commit failed, so it will not be executed: stop what {@link prepare} started. */
  discard(job: Job): void {
    this.#prewarmed.get(job)?.process.kill();
    this.#prewarmed.delete(job);
  }

  /** Run the job's task to its outcome. Never rejects. */
  async execute(job: Job): Promise<ChildResult> {
    const context = contextOf(job);
    const scope = this.#scopeOf(job.task.handler, job.task.file);
    const prewarmed = this.#prewarmed.get(job);
    this.#prewarmed.delete(job);
    const started = prewarmed?.at ?? performance.now();
    let child: RunningChild;
    try {
      const task = {
        ...scope,
        task: { ...job.task.fields, attempt: job.attempt },
        payload: job.task.payload,
        fileVersion: job.task.fileVersion,
        timeoutMs: scope.grants?.timeoutMs ?? this.#settings.taskTimeoutMs,
        onOutput: (stream: "stdout" | "stderr", line: string, truncated: boolean) => {
          const props = { ...context, stream, line, truncated };
          // The line itself only in `line`: the formatters write it once (logging.ts).
          if (stream === "stdout") this.#taskLog.info("{handler} {stream}", props);
          else this.#taskLog.warn("{handler} {stream}", props);
          this.#onOutput?.(job, stream, line, truncated);
        },
      };
      child = prewarmed
        ? prewarmed.process.attach(task)
        : this.#sourceFor(scope.handler, scope.grants).spawn(task);
    } catch (error) {
      this.#observer?.spawnFailed(job.task.handler);
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
    const handedAt = performance.now();
    // Lazy: at the default level this line is not written, and its fields cost nothing.
    this.#taskLog.debug("Started {handler} pid {pid}, {running} running", () => ({
      ...context,
      pid: child.pid,
      attempt: job.attempt,
      running: this.#cap.running,
      // Runner overhead from slot to spawn, from slot to the task handed over (an at-most-once
      // commit included), and time spent waiting for a slot.
      dispatchMs: (prewarmed?.at ?? handedAt) - job.readyAt,
      handoverMs: handedAt - job.readyAt,
      queuedMs: job.readyAt - job.fetchedAt,
    }));
    const result = await child.done;
    this.#live.delete(child);
    return { ...result, durationMs: performance.now() - started };
  }

  /**
   * Stop every live child now (SIGTERM, then SIGKILL after the grace; with `force`, SIGKILL at
   * once), recording why. Resolves when they have all exited.
   */
  async kill(why: string, force = false): Promise<void> {
    const children = [...this.#live];
    for (const child of children) child.stop(why, force);
    await Promise.all(children.map((child) => child.done));
  }

  /**
   * Kill the idle prewarmed children and prewarm no more (the first step of a drain: they hold
   * no task); later tasks start cold. Resolves when they have exited. Idempotent.
   */
  stopPrewarming(): Promise<void> {
    return this.#prewarmer.close();
  }

  /**
   * End every process the executor keeps: prewarmed and warm ones (tasks still running in a
   * warm process fail, so call it after the drain). Idempotent.
   */
  close(): Promise<void> {
    this.#closed ??= (async () => {
      for (const job of [...this.#prewarmed.keys()]) this.discard(job);
      await Promise.all([
        this.#prewarmer.close(),
        ...[...this.#warm.values()].map((w) => w.close()),
      ]);
    })();
    return this.#closed;
  }

  /** What decides which process may run a task of `handler`: its file, heap cap and grants. */
  #scopeOf(handler: string, file: string): ProcessScope {
    const grants = this.#functions.get(handler);
    return { handler, file, memoryMb: grants?.memoryMb ?? this.#settings.memoryMb, grants };
  }

  /** The function's process source: chosen at its first task, kept from then on. */
  #sourceFor(handler: string, grants: FunctionConfig | undefined): ProcessSource {
    let source = this.#sources.get(handler);
    if (source) return source;
    if (grants?.command) {
      source = this.#commands;
    } else if (grants?.isolation === "function") {
      const warm = new WarmSandboxes({
        ...this.#spawn,
        ...grants.warm,
        onSandboxOutput: (output) =>
          this.#taskLog.warn("{handler} warm sandbox pid {pid} {stream}", { ...output }),
        onRecycle: (recycled) =>
          warmLog.debug("Warm {handler} pid {pid} recycled: {reason}", { ...recycled }),
      });
      this.#warm.set(handler, warm);
      source = warm;
    } else {
      source = this.#prewarmer.prewarms(handler) ? this.#prewarmer : this.#sandbox;
    }
    this.#sources.set(handler, source);
    return source;
  }

  /** The task-mode functions with their own `prewarm` count, prewarmed from `start()` on. */
  #prewarmedFunctions(): PrewarmedFunction[] {
    return [...this.#functions]
      .filter(([, g]) => g.prewarm !== undefined && g.isolation !== "function")
      .map(([handler, g]) => ({
        scope: this.#scopeOf(handler, handlerPath(this.#settings.functionsDir, handler)),
        count: g.prewarm!,
      }));
  }
}

const prewarmLog = logger("prewarm");
const warmLog = logger("warm");

/** Log a prewarmer event: starts and kills at debug, idle exits and failures at warning. */
function logPrewarmEvent(event: PrewarmEvent): void {
  switch (event.kind) {
    case "started":
      return prewarmLog.debug("Prewarmed {handler} pid {pid}", { ...event });
    case "ready":
      return prewarmLog.debug("Prewarmed {handler} pid {pid} ready", { ...event });
    case "killed":
      return prewarmLog.debug("Prewarmed {handler} pid {pid} killed: {why}", { ...event });
    case "died":
      return prewarmLog.warn(
        "Prewarmed {handler} pid {pid} exited while idle ({reason}); not prewarming {handler} " +
          "until its file changes, its tasks start cold. Its stderr: {stderr}",
        { ...event, reason: event.exit.reason, stderr: event.exit.stderr.join("\n") },
      );
    case "stuck":
      return prewarmLog.warn(
        "Prewarmed {handler} pid {pid} did not import its handler within {readyTimeoutMs} ms " +
          "(its top-level code never finishes, or spins); killed it; not prewarming {handler} " +
          "until its file changes, its tasks start cold",
        { ...event },
      );
    case "failed":
      return prewarmLog.warn(
        "Cannot prewarm {handler}: {error}; not prewarming it until its file changes",
        { ...event },
      );
  }
}
