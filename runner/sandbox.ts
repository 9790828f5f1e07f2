/**
 * The runner side of the sandbox: one restricted `deno run` child per task.
 *
 * Each child gets `--no-prompt`, no config or lock file, no remote and no npm imports, read
 * access to its own handler file only, an emptied environment, a V8 heap cap and its own
 * process group; whatever an operator granted in the functions config is added on top.
 * @module
 */
import { fileURLToPath as fromFileUrl, pathToFileURL as toFileUrl } from "node:url";
import { SpawnError } from "./errors.ts";
import { describeExit } from "./exit_words.ts";
import type { FunctionGrants } from "./grants.ts";
import { type PumpLimits, pumpLines } from "./output_lines.ts";

/** Options of a {@link Sandbox}. */
export interface SandboxOptions {
  /** The Deno executable that runs handlers. @default Deno.execPath() */
  denoPath?: string;
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

const LOADER = fromFileUrl(new URL("./sandbox_loader.ts", import.meta.url));
/** Largest return value carried back from a handler. */
const MAX_RESULT_BYTES = 1_048_576;
const ENCODER = new TextEncoder();

/** The parts of a task that decide what its process may do. */
export type SandboxScope = Pick<SandboxTask, "file" | "memoryMb" | "grants">;

/**
 * The `deno run` arguments of a sandboxed process whose main module is `mainModule`: read
 * access to the handler file only, plus the operator's grants, and the heap cap. Shared by
 * {@link Sandbox} and the warm sandboxes so that both modes allow exactly the same.
 */
export function sandboxArgs(scope: SandboxScope, mainModule: string): string[] {
  const g = scope.grants ?? {};
  const list = (flag: string, values: readonly string[] | undefined) =>
    values && values.length > 0 ? [`--${flag}=${values.join(",")}`] : [];
  const envNames = [...new Set([...(g.allowEnv ?? []), ...Object.keys(g.env ?? {})])];
  return [
    "run",
    "--no-prompt",
    "--no-config",
    "--no-lock",
    "--no-remote",
    "--no-npm",
    `--v8-flags=--max-old-space-size=${scope.memoryMb}`,
    `--allow-read=${[scope.file, ...(g.allowRead ?? [])].join(",")}`,
    ...list("allow-write", g.allowWrite),
    ...list("allow-net", g.allowNet),
    ...list("allow-env", envNames),
    ...list("allow-run", g.allowRun),
    ...list("allow-sys", g.allowSys),
    mainModule,
  ];
}

/**
 * The whole environment of a sandboxed process: nothing from the runner unless granted
 * (`allowEnv` copies from `hostEnv`, `env` sets fixed values).
 */
export function sandboxEnv(
  scope: Pick<SandboxScope, "grants">,
  from: { denoDir?: string; hostEnv: Readonly<Record<string, string>> },
): Record<string, string> {
  const env: Record<string, string> = { NO_COLOR: "1", DENO_NO_UPDATE_CHECK: "1" };
  if (from.denoDir) env.DENO_DIR = from.denoDir;
  for (const name of scope.grants?.allowEnv ?? []) {
    const value = from.hostEnv[name];
    if (value !== undefined) env[name] = value;
  }
  return { ...env, ...scope.grants?.env };
}

/** Spawns sandboxed handler processes. */
export class Sandbox {
  readonly #deno: string;
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
    this.#denoDir = options.denoDir;
    this.#grace = grace;
    this.#hostEnv = options.hostEnv ?? {};
    this.#output = options.output ?? {};
  }

  /** The `deno run` arguments for a task: exactly what the child is allowed. */
  args(task: SandboxTask): string[] {
    return sandboxArgs(task, LOADER);
  }

  /** The child's whole environment: nothing from the runner unless granted. */
  env(task: SandboxTask): Record<string, string> {
    return sandboxEnv(task, { denoDir: this.#denoDir, hostEnv: this.#hostEnv });
  }

  /**
   * Start a child for `task`. Throws {@link SpawnError} only if the process cannot start;
   * every later failure is reported through `done`.
   */
  spawn(task: SandboxTask): RunningChild {
    let process: Deno.ChildProcess;
    try {
      process = new Deno.Command(this.#deno, {
        args: this.args(task),
        clearEnv: true,
        env: this.env(task),
        stdin: "piped",
        stdout: "piped",
        stderr: "piped",
        detached: true, // own session and process group: signals reach the whole tree
      }).spawn();
    } catch (error) {
      throw new SpawnError(
        `cannot start ${this.#deno} for handler ${task.handler}: ${(error as Error).message}`,
      );
    }
    const pid = process.pid;
    let stopReason: { outcome: "failed" | "timeout"; why: string } | null = null;
    let killTimer: ReturnType<typeof setTimeout> | undefined;

    const signalGroup = (signal: Deno.Signal) => {
      try {
        Deno.kill(-pid, signal);
      } catch (error) {
        // ESRCH: the group is already gone, which is what we wanted.
        if (!(error instanceof Deno.errors.NotFound)) throw error;
      }
    };
    const stop = (outcome: "failed" | "timeout", why: string) => {
      if (stopReason) return;
      stopReason = { outcome, why };
      signalGroup("SIGTERM");
      killTimer = setTimeout(() => signalGroup("SIGKILL"), this.#grace);
    };
    const timeoutTimer = setTimeout(
      () => stop("timeout", `after timeout ${task.timeoutMs} ms`),
      task.timeoutMs,
    );

    const nonce = crypto.randomUUID();
    let result: string | undefined;
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
    const onOutput = task.onOutput ?? (() => {});
    const maxLine = this.#output.maxLineBytes ?? 8192;
    const onStderr = (line: string, truncated: boolean) => {
      if (line.startsWith(nonce)) {
        result = line.slice(nonce.length + 1);
      } else if (line !== "") {
        const cut = line.length > maxLine;
        onOutput("stderr", cut ? line.slice(0, maxLine) : line, truncated || cut);
      }
    };
    const done = Promise.all([
      writeInput(),
      pumpLines(process.stdout, (l, t) => onOutput("stdout", l, t), this.#output),
      pumpLines(process.stderr, onStderr, {
        ...this.#output,
        maxLineBytes: Math.max(maxLine, MAX_RESULT_BYTES + nonce.length + 1),
      }),
      process.status,
    ]).then(([, out, err, status]): ChildResult => {
      clearTimeout(timeoutTimer);
      clearTimeout(killTimer);
      const signal = status.signal;
      if (task.grants?.allowRun?.length) signalGroup("SIGKILL"); // leftovers of granted subprocesses
      const droppedBytes = out.droppedBytes + err.droppedBytes;
      const base = { code: status.code, signal, droppedBytes };
      if (stopReason) {
        const how = signal ? `killed by ${signal}` : describeExit(status.code, null);
        return { ...base, outcome: stopReason.outcome, reason: `${how} ${stopReason.why}` };
      }
      return {
        ...base,
        outcome: status.success ? "ok" : "failed",
        reason: describeExit(status.code, signal),
        result: status.success ? result : undefined,
      };
    });
    return {
      pid,
      done,
      stop: (why, force = false) => {
        stop("failed", why);
        if (force) signalGroup("SIGKILL");
      },
    };
  }
}
