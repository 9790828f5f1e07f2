/**
 * A sandboxed process's life as an OS process: the spawn (its own session and process group,
 * a lower CPU priority), signals to its whole group, and the one kill escalation every mode
 * uses (SIGTERM to the group, SIGKILL after the grace).
 * @module
 */
import { setPriority } from "node:os";
import { SpawnError } from "../errors.ts";
import { sandboxArgs, sandboxEnv, type SandboxScope } from "./permissions.ts";
import type { SpawnSettings } from "./spawn_settings.ts";

/**
 * Start a restricted `deno run` of `loader` for `scope` (see `sandboxArgs`, `sandboxEnv`),
 * with `runtimeArgs` (Deno flags) before it and `loaderArgs` after it; `what` names the
 * process in errors ("handler hello").
 *
 * The new session comes from `setsid`, which calls setsid(2) and execs `deno` in the same
 * process, so the pid is Deno's and the group id equals it. Deno's own `detached: true` does
 * the same in a pre-exec hook, but a pre-exec hook makes Rust fork instead of vfork: the fork
 * copies the runner's page tables, which took 13 ms per spawn at 200 MB RSS (0.4 ms through
 * `setsid`), all of it blocking the event loop. Without `setsid`, `detached` is the fallback.
 *
 * With `nice` > 0 the process is lowered right after the spawn (setpriority(2), which needs
 * no privilege for a higher nice value), so that a full cap of handlers starting at once does
 * not starve the runner and the broker of CPU.
 * @throws {SpawnError} naming `what` if the process cannot start or cannot be lowered.
 */
export function spawnSandboxed(
  settings: SpawnSettings,
  scope: SandboxScope,
  start: { loader: string; loaderArgs?: string[]; runtimeArgs?: string[]; what: string },
): Deno.ChildProcess {
  const deno = settings.denoPath;
  const granted = sandboxArgs(scope, start.loader);
  const args = [
    ...granted.slice(0, -1),
    ...(start.runtimeArgs ?? []),
    ...granted.slice(-1),
    ...(start.loaderArgs ?? []),
  ];
  const env = sandboxEnv(scope, { denoDir: settings.denoDir, hostEnv: settings.hostEnv });
  return spawnInGroup(settings, deno, args, env, start.what);
}

/**
 * Start `program` with `args` and exactly `env` (nothing inherited) in a session and process
 * group of its own, lowered to the settings' nice value: what {@link spawnSandboxed} does for a
 * sandboxed Deno, for any program (a `command` function's). `what` names it in errors.
 * @throws {SpawnError} naming `what` if the process cannot start or cannot be lowered.
 */
export function spawnInGroup(
  settings: Pick<SpawnSettings, "setsidPath" | "nice">,
  program: string,
  args: string[],
  env: Record<string, string>,
  what: string,
): Deno.ChildProcess {
  const { setsidPath: setsid, nice } = settings;
  const [command, commandArgs] = setsid === null ? [program, args] : [setsid, [program, ...args]];
  let process: Deno.ChildProcess;
  try {
    process = new Deno.Command(command, {
      args: commandArgs,
      clearEnv: true,
      env,
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
      detached: setsid === null,
    }).spawn();
  } catch (error) {
    throw new SpawnError(`cannot start ${program} for ${what}: ${(error as Error).message}`);
  }
  if (nice > 0) {
    try {
      setPriority(process.pid, nice);
    } catch (error) {
      discard(process);
      throw new SpawnError(
        `cannot lower ${what} (pid ${process.pid}) to nice ${nice}: ` +
          `${(error as Error).message}; allow setpriority(2) or set TASK_NICE=0`,
      );
    }
  }
  return process;
}

/**
 * Send `signal` to the process group `pid` (the process and whatever it started); a group
 * already gone is what we wanted. In the first instant after the spawn, before `setsid` has made
 * the group, a process that has not exited (`alive`) is signalled alone. A process that has
 * exited is never signalled by pid: its pid may already belong to another process.
 */
export function signalGroup(pid: number, signal: Deno.Signal, alive: boolean): void {
  try {
    Deno.kill(-pid, signal);
    return;
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
  if (!alive) return;
  try {
    Deno.kill(pid, signal);
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
}

/**
 * The kill escalation of one process group: SIGTERM, then SIGKILL after the grace. Used by
 * task-mode children and warm processes alike.
 *
 * @example
 * ```ts
 * const kill = new KillEscalation(child.pid, 5000, () => !exited);
 * kill.terminate(); // SIGTERM now, SIGKILL in 5 s unless `ended()` is called first
 * ```
 */
export class KillEscalation {
  readonly #pid: number;
  readonly #graceMs: number;
  readonly #alive: () => boolean;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #ended = false;

  /** `alive`: false once the process has been seen to exit (see {@link signalGroup}). */
  constructor(pid: number, graceMs: number, alive: () => boolean) {
    this.#pid = pid;
    this.#graceMs = graceMs;
    this.#alive = alive;
  }

  /** True once {@link terminate} was called. */
  get terminating(): boolean {
    return this.#timer !== undefined;
  }

  /** SIGTERM to the group now and SIGKILL after the grace; once, later calls do nothing. */
  terminate(): void {
    if (this.#ended || this.#timer !== undefined) return;
    this.#signal("SIGTERM");
    this.#timer = setTimeout(() => this.#signal("SIGKILL"), this.#graceMs);
  }

  /** SIGKILL to the group now, whether or not a SIGTERM went first. */
  kill(): void {
    if (!this.#ended) this.#signal("SIGKILL");
  }

  /**
   * The process has exited: cancel the pending SIGKILL. With `leftovers` (it was granted
   * `allowRun`), SIGKILL what is left of its group, which would hold the pipes open.
   */
  ended(leftovers: boolean): void {
    this.#ended = true;
    clearTimeout(this.#timer);
    if (leftovers) signalGroup(this.#pid, "SIGKILL", false);
  }

  #signal(signal: Deno.Signal): void {
    signalGroup(this.#pid, signal, this.#alive());
  }
}

/** Why a task's process was stopped before it ended by itself. */
export interface StopReason {
  outcome: "failed" | "timeout";
  /** `after timeout 30000 ms`, `at shutdown, …`. */
  why: string;
}

/**
 * A task's deadline and the first reason it was stopped: at `timeoutMs` the task is stopped as
 * a `timeout`, and {@link stop} (shutdown, eviction) as `failed`; either way through `kill`,
 * once. Task mode and `command` functions use it (a warm process keeps a deadline per task in
 * it, and a timeout ends the whole process).
 */
export class TaskStop {
  readonly #kill: KillEscalation;
  readonly #timer: ReturnType<typeof setTimeout>;
  #reason: StopReason | null = null;

  constructor(kill: KillEscalation, timeoutMs: number) {
    this.#kill = kill;
    this.#timer = setTimeout(
      () => this.stop("timeout", `after timeout ${timeoutMs} ms`),
      timeoutMs,
    );
  }

  /** Stop the task for `why` (the first reason wins); `force`: SIGKILL now. */
  stop(outcome: StopReason["outcome"], why: string, force = false): void {
    if (!this.#reason) {
      this.#reason = { outcome, why };
      this.#kill.terminate();
    }
    if (force) this.#kill.kill();
  }

  /** The process has exited: no deadline any more. Returns why it was stopped, if it was. */
  ended(): StopReason | null {
    clearTimeout(this.#timer);
    return this.#reason;
  }
}

/** Kill a process that will not be used, and release its pipes. */
function discard(process: Deno.ChildProcess): void {
  try {
    process.kill("SIGKILL");
  } catch {
    // already gone
  }
  process.stdin.close().catch(() => {});
  process.stdout.cancel().catch(() => {});
  process.stderr.cancel().catch(() => {});
  process.status.catch(() => {});
}
