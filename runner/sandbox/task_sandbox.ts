/**
 * Task mode: one restricted `deno run` child per task.
 *
 * Each child gets `--no-prompt`, no config or lock file, no remote and no npm imports, read
 * access to its own handler file only, an emptied environment, a V8 heap cap and its own
 * process group; whatever an operator granted in the functions config is added on top
 * (`permissions.ts`).
 *
 * A child is prewarmed for a scope ({@link Sandbox.prewarm}: handler, file, heap cap, grants),
 * then given its one task ({@link PrewarmedProcess.attach}). `spawn` does both at once; the
 * prewarmer and the executor prewarm children ahead of their task and attach it later, so
 * every path shares the task's input, timeout, kill escalation, output and result code.
 * @module
 */
import { fileURLToPath as fromFileUrl, pathToFileURL as toFileUrl } from "node:url";
import { SpawnError } from "../errors.ts";
import { type Envelope, EXIT } from "./child/protocol.ts";
import { describeExit, describeStatus } from "./exit_words.ts";
import { ChildOutput } from "./child_output.ts";
import { KillEscalation, spawnSandboxed, TaskStop } from "./process_group.ts";
import type {
  ChildResult,
  ProcessScope,
  ProcessSource,
  RunningChild,
  SandboxTask,
} from "./process_source.ts";
import { type SpawnOptions, type SpawnSettings, spawnSettings } from "./spawn_settings.ts";

// The dispatcher and the reporter name a task's result after this module.

const LOADER = fromFileUrl(new URL("./child/task_loader.ts", import.meta.url));
const ENCODER = new TextEncoder();

/** A process started for a scope before its one task (see {@link Sandbox.prewarm}). */
export interface PrewarmedProcess {
  readonly pid: number;
  /** What the process may do: it serves only a task of this handler, file, heap cap and grants. */
  readonly scope: ProcessScope;
  /** False once the process has been seen to exit: then it takes no task. */
  readonly alive: boolean;
  /**
   * Resolves when the handler has been imported (the process printed its ready line); never
   * for a process prewarmed without `importHandler`, or one that exits first.
   */
  readonly ready: Promise<void>;
  /**
   * Settles when the process has exited without a task (killed, or ended on its own) and its
   * output has been read. Stays pending once a task is attached: `done` reports that exit.
   */
  readonly idleExit: Promise<IdleExit>;
  /**
   * Give the process its one task: from here it is a {@link RunningChild}, with the task's
   * timeout, kill escalation, output and result. Throws {@link SpawnError} when the process
   * already has a task or has exited.
   */
  attach(task: SandboxTask): RunningChild;
  /** Kill the process group now (SIGKILL), if no task was attached; else do nothing. */
  kill(): void;
}

/** How a process without a task ended. */
export interface IdleExit {
  /** The exit status in words. */
  reason: string;
  code: number;
  signal: Deno.Signal | null;
  /** Its stderr lines (e.g. why the handler failed to load), within the output limits. */
  stderr: string[];
}

/** Options of {@link Sandbox.prewarm}. */
export interface PrewarmOptions {
  /**
   * Import the handler now, while the process waits for its task (the prewarmer's idle
   * children); an import that fails ends the process at once, before any task. Without it the
   * process reads its task first, then imports the handler. @default false
   */
  importHandler?: boolean;
}

/**
 * Spawns sandboxed task-mode processes, one per task.
 *
 * @example
 * ```ts
 * const sandbox = new Sandbox({ killGraceMs: 5000 });
 * const result = await sandbox.spawn(task).done; // task: a SandboxTask
 * ```
 */
export class Sandbox implements ProcessSource {
  readonly #settings: SpawnSettings;

  constructor(options: SpawnOptions = {}) {
    this.#settings = spawnSettings(options, "sandbox");
  }

  /**
   * Start a child for `task` and give it the task. Throws {@link SpawnError} only if the
   * process cannot start; every later failure is reported through `done`.
   */
  spawn(task: SandboxTask): RunningChild {
    return this.prewarm(task).attach(task);
  }

  /** Nothing to end: every process this source started belongs to its task. */
  close(): Promise<void> {
    return Promise.resolve();
  }

  /**
   * Start a sandboxed process for `scope`, waiting for its one task on stdin (see
   * {@link PrewarmedProcess.attach}). Throws {@link SpawnError} if the process cannot start.
   *
   * @example
   * ```ts
   * const process = sandbox.prewarm(scope, { importHandler: true });
   * // ... later, when the task is there:
   * const result = await process.attach(task).done;
   * ```
   */
  prewarm(scope: ProcessScope, options: PrewarmOptions = {}): PrewarmedProcess {
    const readyToken = options.importHandler ? crypto.randomUUID() : null;
    // Script arguments grant nothing: the handler knows its own name and URL anyway, and with
    // the token could only hide a line of its own or look ready early.
    const loaderArgs = readyToken === null
      ? []
      : [scope.handler, toFileUrl(scope.file).href, readyToken];
    const process = spawnSandboxed(this.#settings, scope, {
      loader: LOADER,
      loaderArgs,
      what: `handler ${scope.handler}`,
    });
    const pid = process.pid;
    const output = new ChildOutput(process, this.#settings.output, readyToken);
    let attached = false;
    let alive = true;
    const kill = new KillEscalation(pid, this.#settings.killGraceMs, () => alive);
    const leftovers = (scope.grants?.allowRun?.length ?? 0) > 0;
    const idleExit = process.status.then(async (status): Promise<IdleExit> => {
      alive = false;
      if (attached) return new Promise<never>(() => {}); // `done` reports this exit
      kill.ended(leftovers);
      await process.stdin.close().catch(() => {}); // the child is gone: nothing to tell it
      await output.ended;
      const { code, signal } = status;
      return { reason: describeExit(code, signal), code, signal, stderr: output.keptStderr };
    });
    return {
      pid,
      scope,
      get alive() {
        return alive;
      },
      ready: output.ready,
      idleExit,
      attach: (task) => {
        const unfit = attached
          ? "it already has a task"
          : !alive
          ? "it has exited"
          : task.handler !== scope.handler || task.file !== scope.file
          ? `it was started for ${scope.handler} (${scope.file})`
          : null;
        if (unfit) {
          throw new SpawnError(`cannot run handler ${task.handler} in pid ${pid}: ${unfit}`);
        }
        attached = true;
        return run(process, output, kill, task);
      },
      kill: () => {
        if (!attached && alive) kill.kill();
      },
    };
  }
}

/** Hand `task` to a started process: input, timeout, kill escalation, output and result. */
function run(
  process: Deno.ChildProcess,
  output: ChildOutput,
  kill: KillEscalation,
  task: SandboxTask,
): RunningChild {
  const stopper = new TaskStop(kill, task.timeoutMs);

  const nonce = crypto.randomUUID();
  const envelope: Envelope = {
    nonce,
    handler: task.handler,
    url: toFileUrl(task.file).href,
    timeoutMs: task.timeoutMs,
    payloadBytes: task.payload.length,
    task: task.task,
  };
  // stdin stays open while the child runs: its end tells the child the runner is gone.
  const writer = process.stdin.getWriter();
  const writeInput = async () => {
    try {
      await writer.write(ENCODER.encode(JSON.stringify(envelope) + "\n"));
      await writer.write(task.payload);
      await process.status;
      await writer.close();
    } catch {
      // The child exited before reading all its input; its exit status says why.
    }
  };
  output.attach(nonce, task.onOutput ?? (() => {}));
  const done = Promise.all([
    writeInput(),
    output.ended,
    process.status,
  ]).then(([, droppedBytes, status]): ChildResult => {
    const stopReason = stopper.ended();
    kill.ended((task.grants?.allowRun?.length ?? 0) > 0);
    const signal = status.signal;
    const base = { code: status.code, signal, droppedBytes };
    if (stopReason) {
      const how = signal ? `killed by ${signal}` : describeExit(status.code, null);
      return { ...base, outcome: stopReason.outcome, reason: `${how} ${stopReason.why}` };
    }
    if (status.success && output.resultCut) {
      return { ...base, outcome: "failed", reason: describeStatus(EXIT.resultTooBig) };
    }
    const thrown = output.thrown;
    return {
      ...base,
      outcome: status.success ? "ok" : "failed",
      reason: describeExit(status.code, signal, "task", thrown),
      result: status.success ? output.result : undefined,
      ...(thrown && !status.success ? { error: thrown } : {}),
    };
  });
  return {
    pid: process.pid,
    done,
    stop: (why, force = false) => stopper.stop("failed", why, force),
  };
}
