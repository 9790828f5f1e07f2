/**
 * Starting a sandboxed `deno` process: its arguments (what it may do), its environment (what
 * it may see), the spawn itself, and the handler-file fingerprint that decides when a started
 * process is stale. Shared by task mode, prewarmed children and warm sandboxes, so that every
 * mode allows exactly the same.
 * @module
 */
import { getPriority, homedir, setPriority } from "node:os";
import { join, resolve } from "node:path";
import { ConfigError, SpawnError } from "../errors.ts";
import type { FunctionGrants } from "../function_config.ts";

/** The parts of a task that decide what its process may do. */
export interface SandboxScope {
  /** Absolute path of the handler file (the only file it may read, unless granted). */
  file: string;
  /** V8 heap cap in MiB. */
  memoryMb: number;
  /** Operator grants for this function. */
  grants?: Readonly<FunctionGrants>;
}

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

/** Folder inside the runner's Deno cache that sandboxed processes use as their DENO_DIR. */
export const SANDBOX_DENO_DIR = "task-runner-sandbox";

/**
 * The DENO_DIR of sandboxed processes: {@link SANDBOX_DENO_DIR} inside the runner's own
 * (`denoDir`, else Deno's default, `$XDG_CACHE_HOME/deno` or `~/.cache/deno`), never the
 * runner's itself. Deno lets `require()` (node:module) read any file in the npm cache of its
 * DENO_DIR without a read grant: a child sharing the runner's could load and run every package
 * the runner has installed, kafkajs included. Theirs has no npm packages, only the transpiled
 * loaders and handlers (kept, because a child with no cache at all starts ~150 ms slower).
 */
export function sandboxDenoDir(
  denoDir: string | undefined,
  hostEnv: Readonly<Record<string, string>>,
): string {
  const base = denoDir
    ? resolve(denoDir)
    : join(hostEnv.XDG_CACHE_HOME || join(hostEnv.HOME || homedir(), ".cache"), "deno");
  return join(base, SANDBOX_DENO_DIR);
}

/**
 * The whole environment of a sandboxed process: nothing from the runner unless granted
 * (`allowEnv` copies from `hostEnv`, `env` sets fixed values), and a DENO_DIR of its own
 * ({@link sandboxDenoDir}).
 */
export function sandboxEnv(
  scope: Pick<SandboxScope, "grants">,
  from: { denoDir?: string; hostEnv: Readonly<Record<string, string>> },
): Record<string, string> {
  const env: Record<string, string> = {
    NO_COLOR: "1",
    DENO_NO_UPDATE_CHECK: "1",
    DENO_DIR: sandboxDenoDir(from.denoDir, from.hostEnv),
  };
  for (const name of scope.grants?.allowEnv ?? []) {
    const value = from.hostEnv[name];
    if (value !== undefined) env[name] = value;
  }
  return { ...env, ...scope.grants?.env };
}

/** Where util-linux's `setsid` is found on Linux systems, in order. */
const SETSID_CANDIDATES = ["/usr/bin/setsid", "/bin/setsid"];

/**
 * The path of util-linux's `setsid`, or null when there is none (then {@link spawnSandboxed}
 * falls back to Deno's `detached` spawn).
 */
export function findSetsid(): string | null {
  for (const path of SETSID_CANDIDATES) {
    try {
      if (Deno.statSync(path).isFile) return path;
    } catch {
      // not there: try the next one
    }
  }
  return null;
}

/**
 * `nice` as given, or 0 when not given.
 * @throws {RangeError} naming `owner` when it is not an integer from 0 to 19.
 */
export function niceValue(nice: number | undefined, owner: string): number {
  const value = nice ?? 0;
  if (!Number.isInteger(value) || value < 0 || value > 19) {
    throw new RangeError(
      `Cannot create ${owner}: "nice" must be an integer from 0 to 19, got ${nice}`,
    );
  }
  return value;
}

/**
 * Fail at start-up, not task by task, when handler processes cannot be lowered to `nice` (a
 * seccomp filter that denies setpriority(2), as an older systemd unit of ours did). It calls
 * setpriority(2) on the runner itself with the value it already has: a no-op when allowed.
 * @throws {ConfigError} naming TASK_NICE and what to do.
 */
export function checkCanLowerPriority(nice: number): void {
  if (nice === 0) return;
  try {
    setPriority(getPriority());
  } catch (error) {
    throw new ConfigError(
      `Cannot start runner: TASK_NICE=${nice} needs setpriority(2), which failed ` +
        `(${(error as Error).message}); allow it (systemd: SystemCallFilter=setpriority) ` +
        "or set TASK_NICE=0",
    );
  }
}

/** What {@link spawnSandboxed} starts, and how. */
export interface SpawnOptions {
  /** The Deno executable. */
  deno: string;
  /** Its arguments (see {@link sandboxArgs}). */
  args: string[];
  /** Its whole environment (see {@link sandboxEnv}). */
  env: Record<string, string>;
  /** What the process is for, in error messages (e.g. "handler hello"). */
  what: string;
  /** `setsid` for a new session (see {@link findSetsid}), or null for Deno's `detached`. */
  setsid: string | null;
  /** Nice value to lower the process to, 0 to leave it at the runner's. */
  nice: number;
}

/**
 * Start a sandboxed `deno` process: emptied environment plus `env`, piped stdio, its own
 * session and process group (signals then reach the whole tree), and a lower CPU priority.
 * Shared by task mode, prewarmed children and warm sandboxes.
 *
 * The new session comes from `setsid` (found by {@link findSetsid}), which calls setsid(2) and
 * execs `deno` in the same process, so the pid is Deno's and the group id equals it. Deno's own
 * `detached: true` does the same in a pre-exec hook, but a pre-exec hook makes Rust fork
 * instead of vfork: the fork copies the runner's page tables, which took 13 ms per spawn at
 * 200 MB RSS (0.4 ms through `setsid`), all of it blocking the event loop. Without `setsid`,
 * `detached` is the fallback.
 *
 * With `nice` > 0 the process is lowered right after the spawn (setpriority(2), which needs
 * no privilege for a higher nice value), so that a full cap of handlers starting at once does
 * not starve the runner and the broker of CPU.
 * @throws {SpawnError} naming `what` if the process cannot start or cannot be lowered.
 */
export function spawnSandboxed(options: SpawnOptions): Deno.ChildProcess {
  const { deno, args, setsid, what } = options;
  const [command, commandArgs] = setsid === null ? [deno, args] : [setsid, [deno, ...args]];
  let process: Deno.ChildProcess;
  try {
    process = new Deno.Command(command, {
      args: commandArgs,
      clearEnv: true,
      env: options.env,
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
      detached: setsid === null,
    }).spawn();
  } catch (error) {
    throw new SpawnError(`cannot start ${deno} for ${what}: ${(error as Error).message}`);
  }
  if (options.nice > 0) {
    try {
      setPriority(process.pid, options.nice);
    } catch (error) {
      discard(process);
      throw new SpawnError(
        `cannot lower ${what} (pid ${process.pid}) to nice ${options.nice}: ` +
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

/**
 * A cheap fingerprint of a handler file (mtime, size, inode): a new one means processes
 * started from the old file must not take new tasks. When the file cannot be read, the
 * fingerprint says so and `error` is set.
 */
export function fileVersion(file: string): { version: string; error?: Error } {
  try {
    const info = Deno.statSync(file);
    return { version: `${info.mtime?.getTime()}:${info.size}:${info.ino}` };
  } catch (error) {
    return { version: `unreadable: ${(error as Error).message}`, error: error as Error };
  }
}
