/**
 * How handler processes are started, for every mode (task, prewarmed, warm): the Deno
 * executable, the new session, the nice value, the cache folder, the kill grace, the host
 * environment granted variables come from, and the output limits. Written, defaulted and
 * validated here once.
 * @module
 */
import type { PumpLimits } from "./output_lines.ts";

/** Options of every process source (`Sandbox`, `WarmSandboxes`). */
export interface SpawnOptions {
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
  /**
   * Time between SIGTERM and SIGKILL (and, for a warm process whose input was closed, how long
   * it may take to exit before it is sent SIGTERM). @default 5000
   */
  killGraceMs?: number;
  /** Environment the granted `allowEnv` variables are copied from. @default {} */
  hostEnv?: Readonly<Record<string, string>>;
  /** Output limits per task and stream (see {@link PumpLimits}). @default {} */
  output?: PumpLimits;
}

/** {@link SpawnOptions} resolved and validated; it is valid options again. */
export interface SpawnSettings extends Readonly<SpawnOptions> {
  readonly denoPath: string;
  readonly setsidPath: string | null;
  readonly nice: number;
  readonly killGraceMs: number;
  readonly hostEnv: Readonly<Record<string, string>>;
  readonly output: Readonly<Required<PumpLimits>>;
}

/**
 * Resolve and validate `options`; `owner` names what is being created in error messages.
 * Settings already resolved come back equal (`setsid` is looked up only when not given).
 * @throws {RangeError} naming the option, what it must be and what it was.
 */
export function spawnSettings(options: SpawnOptions, owner: string): SpawnSettings {
  const fail = (option: string, must: string, got: unknown): never => {
    throw new RangeError(`Cannot create ${owner}: "${option}" must be ${must}, got ${got}`);
  };
  const killGraceMs = options.killGraceMs ?? 5000;
  if (!Number.isSafeInteger(killGraceMs) || killGraceMs < 0) {
    fail("killGraceMs", "an integer >= 0", killGraceMs);
  }
  const nice = options.nice ?? 0;
  if (!Number.isInteger(nice) || nice < 0 || nice > 19) {
    fail("nice", "an integer from 0 to 19", options.nice);
  }
  const maxLineBytes = options.output?.maxLineBytes ?? 8192;
  const maxTotalBytes = options.output?.maxTotalBytes ?? 1_048_576;
  if (!Number.isSafeInteger(maxLineBytes) || maxLineBytes < 1) {
    fail("output.maxLineBytes", "a positive integer", maxLineBytes);
  }
  if (!(maxTotalBytes >= 0)) fail("output.maxTotalBytes", "a number >= 0", maxTotalBytes);
  return {
    denoPath: options.denoPath ?? Deno.execPath(),
    setsidPath: options.setsidPath === undefined ? findSetsid() : options.setsidPath,
    nice,
    denoDir: options.denoDir,
    killGraceMs,
    hostEnv: options.hostEnv ?? {},
    output: { maxLineBytes, maxTotalBytes },
  };
}

/** Where util-linux's `setsid` is found on Linux systems, in order. */
const SETSID_CANDIDATES = ["/usr/bin/setsid", "/bin/setsid"];

/** The path of util-linux's `setsid`, or null when there is none (then `detached` is used). */
function findSetsid(): string | null {
  for (const path of SETSID_CANDIDATES) {
    try {
      if (Deno.statSync(path).isFile) return path;
    } catch {
      // not there: try the next one
    }
  }
  return null;
}
