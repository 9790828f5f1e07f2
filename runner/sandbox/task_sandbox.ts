/**
 * The runner side of the sandbox: one restricted `deno run` child per task.
 *
 * Each child gets `--no-prompt`, no config or lock file, no remote and no npm imports, read
 * access to its own handler file only, an emptied environment, a V8 heap cap and its own
 * process group; whatever an operator granted in the functions config is added on top.
 *
 * A child is started for a scope ({@link Sandbox.start}: handler, file, heap cap, grants),
 * then given its one task ({@link StartedProcess.attach}). `spawn` does both at once; the
 * prewarmer (`prewarm.ts`) starts children ahead of time and attaches tasks later, so both
 * paths share the task's input, timeout, kill escalation, output and result code.
 * @module
 */
import { fileURLToPath as fromFileUrl, pathToFileURL as toFileUrl } from "node:url";
import { SpawnError } from "../errors.ts";
import { describeExit } from "./exit_words.ts";
import type { FunctionGrants } from "../function_config.ts";
import { ChildOutput } from "./child_output.ts";
import type { PumpLimits } from "./output_lines.ts";
import {
  findSetsid,
  niceValue,
  sandboxArgs,
  sandboxEnv,
  type SandboxScope,
  signalGroup,
  spawnSandboxed,
} from "./permissions.ts";

/** Options of a {@link Sandbox}. */
export interface SandboxOptions {
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
  /** Deno's cache folder for children (transpiled handlers are kept there). @default the runner's DENO_DIR, if set */
  denoDir?: string;
  /** Time between SIGTERM and SIGKILL. @default 5000 */
  killGraceMs?: number;
  /** Environment the granted `allowEnv` variables are copied from. @default {} */
  hostEnv?: Readonly<Record<string, string>>;
  /** Output limits per stream. @default {} (see {@link PumpLimits}) */
  output?: PumpLimits;
}

/** One task to run. */
export interface SandboxTask {
  /** Handler name (validated). */
  handler: string;
  /** Absolute path of the handler file. */
  file: string;
  /** Task fields passed to the handler, without the payload. */
  task: Record<string, unknown>;
  /** The raw JSON payload, passed on as it came. */
  payload: Uint8Array;
  /** Time the task may run. */
  timeoutMs: number;
  /** V8 heap cap in MiB. */
  memoryMb: number;
  /** Operator grants for this function. */
  grants?: Readonly<FunctionGrants>;
  /** Called for each output line of the child. */
  onOutput?: (stream: "stdout" | "stderr", line: string, truncated: boolean) => void;
}

/** How a child ended. */
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
  /** Time from spawn to exit, when the caller measured it. */
  durationMs?: number;
}

/** A child that is running. */
export interface RunningChild {
  readonly pid: number;
  /** Settles when the child has exited and its output has been read. Never rejects. */
  readonly done: Promise<ChildResult>;
  /**
   * Stop the child (SIGTERM, then SIGKILL after the grace), recording why. With `force`, send
   * SIGKILL at once, even if a stop is already under way.
   */
  stop(why: string, force?: boolean): void;
}

const LOADER = fromFileUrl(new URL("./child/task_loader.ts", import.meta.url));
const ENCODER = new TextEncoder();

/** A process started for a scope (see {@link Sandbox.start}), before or after its one task. */
export interface StartedProcess {
  readonly pid: number;
  /** What the process may do: it serves only a task of this handler, file, heap cap and grants. */
  readonly scope: ProcessScope;
  /** False once the process has been seen to exit: then it takes no task. */
  readonly alive: boolean;
  /**
   * Resolves when a preloaded handler has been imported (the process printed its ready line);
   * never for a process started without `preload`, or one that exits first.
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

/** Options of {@link Sandbox.start}. */
export interface StartOptions {
  /**
   * Import the handler now, while the process waits for its task (a prewarmed process); an
   * import that fails ends the process at once, before any task. @default false
   */
  preload?: boolean;
}

/** The parts of a task that decide which process may run it. */
export type ProcessScope = SandboxScope & Pick<SandboxTask, "handler">;

/** Spawns sandboxed handler processes. */
export class Sandbox {
  readonly #deno: string;
  readonly #setsid: string | null;
  readonly #nice: number;
  readonly #denoDir: string | undefined;
  readonly #grace: number;
  readonly #hostEnv: Readonly<Record<string, string>>;
  readonly #output: PumpLimits;

  constructor(options: SandboxOptions = {}) {
    const grace = options.killGraceMs ?? 5000;
    if (!Number.isSafeInteger(grace) || grace < 0) {
      throw new RangeError(
        `Cannot create sandbox: "killGraceMs" must be an integer >= 0, got ${grace}`,
      );
    }
    this.#deno = options.denoPath ?? Deno.execPath();
    this.#setsid = options.setsidPath === undefined ? findSetsid() : options.setsidPath;
    this.#nice = niceValue(options.nice, "sandbox");
    this.#denoDir = options.denoDir;
    this.#grace = grace;
    this.#hostEnv = options.hostEnv ?? {};
    this.#output = options.output ?? {};
  }

  /**
   * The `deno run` arguments for a scope: exactly what the child is allowed. With a
   * `readyToken`, the process preloads its handler and prints the token once it is imported.
   */
  args(scope: ProcessScope, readyToken: string | null = null): string[] {
    const args = sandboxArgs(scope, LOADER);
    // Script arguments grant nothing: the handler knows its own name and URL anyway, and with
    // the token could only hide a line of its own or look ready early.
    if (readyToken !== null) args.push(scope.handler, toFileUrl(scope.file).href, readyToken);
    return args;
  }

  /** The child's whole environment: nothing from the runner unless granted. */
  env(scope: Pick<SandboxScope, "grants">): Record<string, string> {
    return sandboxEnv(scope, { denoDir: this.#denoDir, hostEnv: this.#hostEnv });
  }

  /**
   * Start a child for `task` and give it the task. Throws {@link SpawnError} only if the
   * process cannot start; every later failure is reported through `done`.
   */
  spawn(task: SandboxTask): RunningChild {
    return this.start(task).attach(task);
  }

  /**
   * Start a sandboxed process for `scope`, waiting for its one task on stdin (see
   * {@link StartedProcess.attach}). Throws {@link SpawnError} if the process cannot start.
   *
   * @example
   * ```ts
   * const started = sandbox.start(task, { preload: true }); // task: a SandboxTask
   * // ... later, when the task is there:
   * const result = await started.attach(task).done;
   * ```
   */
  start(scope: ProcessScope, options: StartOptions = {}): StartedProcess {
    const readyToken = options.preload ? crypto.randomUUID() : null;
    const process = spawnSandboxed({
      deno: this.#deno,
      args: this.args(scope, readyToken),
      env: this.env(scope),
      what: `handler ${scope.handler}`,
      setsid: this.#setsid,
      nice: this.#nice,
    });
    const pid = process.pid;
    const output = new ChildOutput(process, this.#output, readyToken);
    let attached = false;
    let alive = true;
    const idleExit = process.status.then(async (status): Promise<IdleExit> => {
      alive = false;
      if (attached) return new Promise<never>(() => {}); // `done` reports this exit
      // Leftovers of granted subprocesses would hold the pipes open.
      if (scope.grants?.allowRun?.length) signalGroup(pid, "SIGKILL", false);
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
        return this.#run(process, output, task, () => alive);
      },
      kill: () => {
        if (!attached && alive) signalGroup(pid, "SIGKILL", alive);
      },
    };
  }

  /** Hand `task` to a started process: input, timeout, kill escalation, output and result. */
  #run(
    process: Deno.ChildProcess,
    output: ChildOutput,
    task: SandboxTask,
    isAlive: () => boolean,
  ): RunningChild {
    const pid = process.pid;
    let stopReason: { outcome: "failed" | "timeout"; why: string } | null = null;
    let killTimer: ReturnType<typeof setTimeout> | undefined;

    const stop = (outcome: "failed" | "timeout", why: string) => {
      if (stopReason) return;
      stopReason = { outcome, why };
      signalGroup(pid, "SIGTERM", isAlive());
      killTimer = setTimeout(() => signalGroup(pid, "SIGKILL", isAlive()), this.#grace);
    };
    const timeoutTimer = setTimeout(
      () => stop("timeout", `after timeout ${task.timeoutMs} ms`),
      task.timeoutMs,
    );

    const nonce = crypto.randomUUID();
    const envelope = JSON.stringify({
      nonce,
      handler: task.handler,
      url: toFileUrl(task.file).href,
      timeoutMs: task.timeoutMs,
      payloadBytes: task.payload.length,
      task: task.task,
    });
    // stdin stays open while the child runs: its end tells the child the runner is gone.
    const writer = process.stdin.getWriter();
    const writeInput = async () => {
      try {
        await writer.write(ENCODER.encode(envelope + "\n"));
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
      clearTimeout(timeoutTimer);
      clearTimeout(killTimer);
      const signal = status.signal;
      // Leftovers of granted subprocesses.
      if (task.grants?.allowRun?.length) signalGroup(pid, "SIGKILL", false);
      const base = { code: status.code, signal, droppedBytes };
      if (stopReason) {
        const how = signal ? `killed by ${signal}` : describeExit(status.code, null);
        return { ...base, outcome: stopReason.outcome, reason: `${how} ${stopReason.why}` };
      }
      return {
        ...base,
        outcome: status.success ? "ok" : "failed",
        reason: describeExit(status.code, signal),
        result: status.success ? output.result : undefined,
      };
    });
    return {
      pid,
      done,
      stop: (why, force = false) => {
        stop("failed", why);
        if (force) signalGroup(pid, "SIGKILL", isAlive());
      },
    };
  }
}
