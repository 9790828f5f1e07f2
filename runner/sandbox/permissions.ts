/**
 * What a sandboxed `deno` process may do and see: its arguments, its environment, and the
 * handler-file fingerprint that decides when a started process is stale. Shared by task mode,
 * prewarmed children and warm sandboxes, so that every mode allows exactly the same.
 * @module
 */
import { versionOf } from "../handler_name.ts";
import { getPriority, homedir, setPriority } from "node:os";
import { join, resolve } from "node:path";
import { ConfigError } from "../errors.ts";
import type { FunctionConfig } from "../function_config.ts";

/** The parts of a task that decide what its process may do. */
export interface SandboxScope {
  /** Absolute path of the handler file (the only file it may read, unless granted). */
  file: string;
  /** V8 heap cap in MiB. */
  memoryMb: number;
  /** Operator grants for this function. */
  grants?: Readonly<FunctionConfig>;
}

/**
 * The `deno run` arguments of a sandboxed process whose main module is `mainModule`: read
 * access to the handler file only, plus the operator's grants, and the heap cap.
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

/**
 * A cheap fingerprint of a handler file (mtime, size, inode): a new one means processes
 * started from the old file must not take new tasks. When the file cannot be read, the
 * fingerprint says so and `error` is set.
 */
export function fileVersion(file: string): { version: string; error?: Error } {
  try {
    return { version: versionOf(Deno.statSync(file)) };
  } catch (error) {
    return { version: `unreadable: ${(error as Error).message}`, error: error as Error };
  }
}
