/**
 * Per-function configuration (`FUNCTIONS_CONFIG`, functions.json): the operator's file that
 * widens a handler's sandbox (permissions: `allow*`, `env`), sets its delivery (`delivery`,
 * `retries`, `ordering`, `resultTopic`) and its processes (`isolation`, `warm`, `prewarm`,
 * `timeoutMs`, `memoryMb`).
 *
 * The file is JSON, read and validated once at start-up; no handler code is executed to
 * learn what a handler needs. A function that is not listed gets no grants at all.
 *
 * @example
 * ```json
 * {
 *   "functions": {
 *     "notify_webhook": { "allowNet": ["127.0.0.1:8080"], "timeoutMs": 10000 },
 *     "write_report": { "allowWrite": ["/var/lib/task-runner/reports"] }
 *   }
 * }
 * ```
 * @module
 */
import { posix } from "node:path";
import { MAX_TIMER_MS, TIMER_RULE } from "./config.ts";
import { FunctionsConfigError } from "./errors.ts";
import { HANDLER_NAME_PATTERN } from "./handler_name.ts";

/** One function's configuration: what it may do, how it is delivered, how it runs. Every field is optional. */
export interface FunctionConfig {
  /** Hosts (`host` or `host:port`) the handler may connect to. */
  allowNet?: string[];
  /** Extra absolute paths the handler may read (its own file is always readable). */
  allowRead?: string[];
  /** Absolute paths the handler may write. */
  allowWrite?: string[];
  /** Environment variables passed from the runner's environment and readable by the handler. */
  allowEnv?: string[];
  /** Programs the handler may run. */
  allowRun?: string[];
  /** System information kinds (`hostname`, `osRelease`, ...) the handler may query. */
  allowSys?: string[];
  /** Fixed environment variables set for the handler (readable only with allowEnv or these keys). */
  env?: Record<string, string>;
  /**
   * Names in `env` or `allowEnv` that change how a process loads (`LD_*`, `DENO_*`, `NODE_*`:
   * `LD_PRELOAD` runs code in the child, `DENO_DIR` hands it the runner's module cache), which
   * the operator accepts anyway. Without them those names are refused. @default none
   */
  allowLoaderEnv?: string[];
  /** Per-task timeout for this function, overriding TASK_TIMEOUT_MS; at most 2147483647. */
  timeoutMs?: number;
  /** V8 heap cap for this function in MiB, overriding TASK_MEMORY_MB. */
  memoryMb?: number;
  /**
   * `at-most-once`: commit before the task starts (a crash loses what was running).
   * `at-least-once`: commit once the task reached a final outcome (a crash re-runs it).
   * @default "at-most-once"
   */
  delivery?: "at-most-once" | "at-least-once";
  /** Re-run `failed` and `timeout` tasks with exponential backoff and equal jitter. @default none */
  retries?: RetryPolicy;
  /** Topic that receives the handler's JSON return value, keyed like the task. @default none */
  resultTopic?: string;
  /** `key`: tasks with the same key run one at a time, in offset order. @default "none" */
  ordering?: "none" | "key";
  /**
   * `task`: a fresh process per task. `function`: warm processes serve many tasks of this
   * function, one after another or `warm.concurrency` at a time; module state persists
   * between those tasks. Permissions, heap cap and environment are the same. @default "task"
   */
  isolation?: "task" | "function";
  /** Limits of warm processes (only with `isolation: "function"`). */
  warm?: WarmLimits;
  /**
   * Sandboxes of this function kept started ahead of time, handler imported, each waiting for
   * one task (task isolation only); overrides PREWARM and starts with the runner. 0 turns
   * prewarming off for this function. @default PREWARM (from the function's first task on)
   */
  prewarm?: number;
  // Flow control (issue 15): own block, validated in parseFlowControl.
  /** Live tasks of this function at once, inside MAX_RUNNING (warm processes included). @default none */
  maxRunning?: number;
  /** At most `max` live tasks per key value (in no particular order). @default none */
  concurrency?: KeyConcurrency;
  /** Starts per second (token bucket), per function or per key value. @default none */
  rateLimit?: RateLimit;

  // Handlers (issue 14): a payload schema, and a program run instead of a Deno handler.
  /**
   * JSON Schema the payload must match, inline or the path of a `.json` file (relative paths
   * are read from the config file's folder and stored here absolute). A payload that does not
   * match ends `rejected` before any process starts. @default none
   */
  schema?: Record<string, unknown> | string;
  /**
   * Run this program instead of a Deno handler (the migration path from PHP workers): argv,
   * the first entry the program, with `{name}`, `{topic}`, `{partition}`, `{offset}` and
   * `{key}` replaced per task; the payload comes on stdin. It runs with the runner's OS user
   * rights, not in Deno's sandbox. Task isolation only. @default none
   */
  command?: string[];
}

/**
 * Where a flow-control key comes from: `"key"` (the message key), `"header:<name>"`, or
 * `"payload.<path>"` (a dotted path into the JSON payload).
 */
export type FlowKeySpec = string;

/** Per-key concurrency of one function. */
export interface KeyConcurrency {
  key: FlowKeySpec;
  /** Live tasks per key value, at least 1. */
  max: number;
}

/** A token bucket: `perSecond` starts on average, up to `burst` at once. */
export interface RateLimit {
  perSecond: number;
  /** Bucket size. @default max(1, ceil(perSecond)) */
  burst?: number;
  /** One bucket per key value instead of one per function. @default none */
  key?: FlowKeySpec;
}

/** Placeholders a `command` entry may hold, replaced per task. */
export const COMMAND_PLACEHOLDERS = ["name", "topic", "partition", "offset", "key"] as const;

/** Limits of the warm processes of one function. */
export interface WarmLimits {
  /** Tasks one process runs at the same time. @default 1 */
  concurrency?: number;
  /** Tasks a process serves before it is replaced. @default 10000 */
  maxTasks?: number;
  /** Age after which a process takes no new task, in ms. @default 300000 */
  maxAgeMs?: number;
  /** Heap used (MiB) above which a process is replaced. @default 0.75 × memoryMb */
  maxHeapMb?: number;
}

/** Retries of one function. */
export interface RetryPolicy {
  /** Attempts in all, the first included (so 3 means up to 2 retries). */
  attempts: number;
  /** Backoff before the first retry, in ms (at most 2147483647); doubled at each retry. @default 1000 */
  baseMs?: number;
  /** Longest backoff, in ms (at most 2147483647). @default 60000 */
  maxMs?: number;
}

/** Validated grants by function name. */
export type FunctionConfigTable = ReadonlyMap<string, Readonly<FunctionConfig>>;

const LIST_KEYS = [
  "allowNet",
  "allowRead",
  "allowWrite",
  "allowEnv",
  "allowRun",
  "allowSys",
  "allowLoaderEnv",
] as const;
const FLOW_KEYS = ["maxRunning", "concurrency", "rateLimit"] as const;
const KNOWN = new Set<string>([
  ...LIST_KEYS,
  "env",
  "timeoutMs",
  "memoryMb",
  "delivery",
  "retries",
  "resultTopic",
  "ordering",
  "isolation",
  "warm",
  "prewarm",
  ...FLOW_KEYS,
  "schema",
  "command",
]);

/** Environment names that change how a process (or the Deno in it) loads: opt-in only. */
export const LOADER_ENV = /^(LD_|DENO_|NODE_)/i;

/** Most prewarmed sandboxes one function may ask for. */
const MAX_PREWARM = 10_000;

/**
 * Validate the parsed content of a functions config file.
 * @throws {FunctionsConfigError} naming the file, the function and the field at fault.
 */
export function parseFunctionConfig(content: unknown, source: string): FunctionConfigTable {
  const bad = (where: string, must: string, got: unknown): never => {
    throw new FunctionsConfigError(
      `${source}: ${where} must be ${must}, got ${JSON.stringify(got)}; fix the file and restart`,
    );
  };
  if (typeof content !== "object" || content === null || Array.isArray(content)) {
    bad("the top level", 'an object like {"functions": {...}}', content);
  }
  const { functions = {}, ...rest } = content as Record<string, unknown>;
  for (const key of Object.keys(rest)) {
    bad(`key "${key}"`, 'absent (only "functions" is known)', key);
  }
  if (typeof functions !== "object" || functions === null || Array.isArray(functions)) {
    bad('"functions"', "an object keyed by function name", functions);
  }
  const table = new Map<string, FunctionConfig>();
  for (const [name, raw] of Object.entries(functions as Record<string, unknown>)) {
    const at = `functions.${name}`;
    if (!HANDLER_NAME_PATTERN.test(name)) {
      bad(`the name "${name}"`, `a match of ${HANDLER_NAME_PATTERN}`, name);
    }
    if (typeof raw !== "object" || raw === null || Array.isArray(raw)) bad(at, "an object", raw);
    const entry = raw as Record<string, unknown>;
    const grants: FunctionConfig = {};
    for (const [key, value] of Object.entries(entry)) {
      if (!KNOWN.has(key)) bad(`${at}.${key}`, `one of ${[...KNOWN].join(", ")}`, key);
      if ((FLOW_KEYS as readonly string[]).includes(key)) continue; // parseFlowControl
      if ((LIST_KEYS as readonly string[]).includes(key)) {
        if (
          !Array.isArray(value) ||
          value.some((v) => typeof v !== "string" || v === "" || v.includes(","))
        ) {
          bad(`${at}.${key}`, "an array of non-empty strings without commas", value);
        }
        let list = [...(value as string[])];
        if (key === "allowRead" || key === "allowWrite") {
          if (list.some((p) => !p.startsWith("/"))) {
            bad(`${at}.${key}`, "a list of absolute paths", value);
          }
          // Checked and granted as written, normalised: a ".." would widen what a reader sees.
          if (list.some((p) => p.split("/").some((part) => part === "." || part === ".."))) {
            bad(`${at}.${key}`, 'a list of absolute paths without "." or ".." segments', value);
          }
          list = list.map((p) => posix.normalize(p).replace(/(.)\/$/, "$1"));
        }
        if (key === "allowLoaderEnv" && list.some((name) => !LOADER_ENV.test(name))) {
          bad(`${at}.${key}`, "a list of LD_*, DENO_* or NODE_* names", value);
        }
        grants[key as typeof LIST_KEYS[number]] = list;
      } else if (key === "env") {
        if (
          typeof value !== "object" || value === null || Array.isArray(value) ||
          Object.entries(value).some(([k, v]) => !/^[A-Za-z_]\w*$/.test(k) || typeof v !== "string")
        ) {
          bad(`${at}.env`, "an object of NAME: string", value);
        }
        grants.env = { ...(value as Record<string, string>) };
      } else if (key === "delivery" || key === "ordering" || key === "isolation") {
        const allowed = {
          delivery: ["at-most-once", "at-least-once"],
          ordering: ["none", "key"],
          isolation: ["task", "function"],
        }[key];
        if (!allowed.includes(value as string)) {
          bad(`${at}.${key}`, `one of ${allowed.join(", ")}`, value);
        }
        (grants as Record<string, unknown>)[key] = value;
      } else if (key === "resultTopic") {
        if (typeof value !== "string" || !/^[A-Za-z0-9._-]{1,249}$/.test(value)) {
          bad(`${at}.resultTopic`, "a Kafka topic name", value);
        }
        grants.resultTopic = value as string;
      } else if (key === "retries") {
        grants.retries = parseRetries(value, `${at}.retries`, bad);
      } else if (key === "warm") {
        grants.warm = parseWarm(value, `${at}.warm`, bad);
      } else if (key === "prewarm") {
        if (
          !Number.isSafeInteger(value) || (value as number) < 0 || (value as number) > MAX_PREWARM
        ) {
          bad(`${at}.prewarm`, `an integer from 0 to ${MAX_PREWARM}`, value);
        }
        if (entry.isolation === "function" && (value as number) > 0) {
          bad(
            `${at}.prewarm`,
            '0 or absent with isolation "function" (its processes are warm)',
            value,
          );
        }
        grants.prewarm = value as number;
      } else if (key === "schema" || key === "command") {
        parseHandlerFields(key, value, entry, at, source, grants, bad);
      } else {
        const [min, max] = key === "memoryMb" ? [16, 65_536] : [1, MAX_TIMER_MS];
        if (!Number.isSafeInteger(value) || (value as number) < min || (value as number) > max) {
          bad(
            `${at}.${key}`,
            max === MAX_TIMER_MS ? TIMER_RULE(min) : `an integer from ${min} to ${max}`,
            value,
          );
        }
        grants[key as "timeoutMs" | "memoryMb"] = value as number;
      }
    }
    checkLoaderEnv(grants, at, bad);
    parseFlowControl(entry, grants, at, bad);
    table.set(name, Object.freeze(grants));
  }
  return table;
}

/** Validate `schema` or `command` (issue 14) into `grants`. */
function parseHandlerFields(
  key: "schema" | "command",
  value: unknown,
  entry: Record<string, unknown>,
  at: string,
  source: string,
  grants: FunctionConfig,
  bad: (where: string, must: string, got: unknown) => never,
): void {
  if (key === "schema") {
    if (typeof value === "string") {
      if (!value.endsWith(".json")) bad(`${at}.schema`, "a path to a .json file", value);
      grants.schema = posix.resolve(posix.dirname(posix.resolve(source)), value);
    } else if (typeof value === "object" && value !== null && !Array.isArray(value)) {
      grants.schema = structuredClone(value as Record<string, unknown>);
    } else {
      bad(`${at}.schema`, "a JSON Schema object or a path to a .json file", value);
    }
    return;
  }
  if (
    !Array.isArray(value) || value.length === 0 ||
    value.some((v) => typeof v !== "string" || v === "")
  ) {
    bad(
      `${at}.command`,
      'a non-empty array of non-empty strings like ["php", "worker.php"]',
      value,
    );
  }
  const argv = value as string[];
  const unknown = argv.flatMap((arg) => [...arg.matchAll(/\{(\w*)\}/g)].map((m) => m[1]))
    .filter((name) => !(COMMAND_PLACEHOLDERS as readonly string[]).includes(name));
  if (unknown.length > 0) {
    bad(
      `${at}.command`,
      `free of placeholders other than ${COMMAND_PLACEHOLDERS.map((p) => `{${p}}`).join(", ")}`,
      unknown.map((name) => `{${name}}`),
    );
  }
  if (argv[0].includes("{")) bad(`${at}.command[0]`, "a program without placeholders", argv[0]);
  if (entry.isolation === "function") {
    bad(`${at}.command`, 'absent with isolation "function" (a command runs once per task)', argv);
  }
  if (typeof entry.prewarm === "number" && entry.prewarm > 0) {
    bad(`${at}.command`, "absent with prewarm > 0 (a command is not prewarmed)", argv);
  }
  grants.command = [...argv];
}

/** `env` and `allowEnv` name no loader variable the operator did not accept in allowLoaderEnv. */
function checkLoaderEnv(
  grants: FunctionConfig,
  at: string,
  bad: (where: string, must: string, got: unknown) => never,
): void {
  const accepted = new Set(grants.allowLoaderEnv ?? []);
  for (
    const [key, names] of [["env", Object.keys(grants.env ?? {})], [
      "allowEnv",
      grants.allowEnv ?? [],
    ]] as const
  ) {
    const refused = names.filter((n) => LOADER_ENV.test(n) && !accepted.has(n));
    if (refused.length > 0) {
      bad(
        `${at}.${key}`,
        "free of names that change how a process loads (LD_*, DENO_*, NODE_*); if you mean " +
          `it, list them in "allowLoaderEnv" too`,
        refused,
      );
    }
  }
}

/** Flow-control key sources: the message key, a header, or a dotted path into the payload. */
const FLOW_KEY = /^(key|header:[\x21-\x7e]{1,255}|payload(\.[^.\s]+)+)$/;

/** Most starts per second a rate limit may name, and the largest burst. */
const MAX_RATE = 100_000;

/**
 * The flow-control fields (`maxRunning`, `concurrency`, `rateLimit`), checked against each
 * other and against `ordering` and `warm`.
 */
function parseFlowControl(
  entry: Record<string, unknown>,
  grants: FunctionConfig,
  at: string,
  bad: (where: string, must: string, got: unknown) => never,
): void {
  const int = (v: unknown, where: string, min: number, max: number) => {
    if (!Number.isSafeInteger(v) || (v as number) < min || (v as number) > max) {
      bad(where, `an integer from ${min} to ${max}`, v);
    }
    return v as number;
  };
  const keySpec = (v: unknown, where: string) => {
    if (typeof v !== "string" || !FLOW_KEY.test(v)) {
      bad(where, '"key", "header:<name>" or "payload.<dotted.path>"', v);
    }
    return v as string;
  };
  const object = (v: unknown, where: string, example: string, allowed: string[]) => {
    if (typeof v !== "object" || v === null || Array.isArray(v)) {
      bad(where, `an object like ${example}`, v);
    }
    for (const k of Object.keys(v as object)) {
      if (!allowed.includes(k)) bad(`${where}.${k}`, `absent (${allowed.join(", ")})`, k);
    }
    return v as Record<string, unknown>;
  };
  if (entry.maxRunning !== undefined) {
    grants.maxRunning = int(entry.maxRunning, `${at}.maxRunning`, 1, 10_000);
  }
  if (entry.concurrency !== undefined) {
    const where = `${at}.concurrency`;
    const c = object(entry.concurrency, where, '{"key": "payload.shopId", "max": 1}', [
      "key",
      "max",
    ]);
    grants.concurrency = {
      key: keySpec(c.key, `${where}.key`),
      max: int(c.max, `${where}.max`, 1, 10_000),
    };
    if (grants.concurrency.key === "key" && entry.ordering === "key") {
      bad(
        where + ".key",
        'another key than "key" with ordering "key" (that ordering already runs one task per ' +
          "message key at a time, in offset order); drop one of the two",
        c.key,
      );
    }
    if (grants.maxRunning !== undefined && grants.concurrency.max > grants.maxRunning) {
      bad(`${where}.max`, `at most maxRunning (${grants.maxRunning})`, c.max);
    }
  }
  if (entry.rateLimit !== undefined) {
    const where = `${at}.rateLimit`;
    const r = object(entry.rateLimit, where, '{"perSecond": 20, "burst": 40}', [
      "perSecond",
      "burst",
      "key",
    ]);
    const perSecond = r.perSecond;
    if (
      typeof perSecond !== "number" || !Number.isFinite(perSecond) || perSecond <= 0 ||
      perSecond > MAX_RATE
    ) {
      bad(`${where}.perSecond`, `a number above 0 and at most ${MAX_RATE}`, perSecond);
    }
    grants.rateLimit = { perSecond: perSecond as number };
    if (r.burst !== undefined) grants.rateLimit.burst = int(r.burst, `${where}.burst`, 1, MAX_RATE);
    if (r.key !== undefined) grants.rateLimit.key = keySpec(r.key, `${where}.key`);
  }
  const concurrency = grants.warm?.concurrency;
  if (
    grants.maxRunning !== undefined && concurrency !== undefined && concurrency > grants.maxRunning
  ) {
    bad(
      `${at}.warm.concurrency`,
      `at most maxRunning (${grants.maxRunning}): a warm process's tasks count toward it`,
      concurrency,
    );
  }
}

function parseRetries(
  value: unknown,
  at: string,
  bad: (where: string, must: string, got: unknown) => never,
): RetryPolicy {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    bad(at, 'an object like {"attempts": 3, "baseMs": 1000, "maxMs": 60000}', value);
  }
  const { attempts, baseMs = 1000, maxMs = 60_000, ...rest } = value as Record<string, unknown>;
  for (const key of Object.keys(rest)) bad(`${at}.${key}`, "absent (attempts, baseMs, maxMs)", key);
  const int = (v: unknown, name: string, min: number, max = Number.MAX_SAFE_INTEGER) => {
    if (!Number.isSafeInteger(v) || (v as number) < min || (v as number) > max) {
      bad(`${at}.${name}`, max === MAX_TIMER_MS ? TIMER_RULE(min) : `an integer >= ${min}`, v);
    }
    return v as number;
  };
  const policy = {
    attempts: int(attempts, "attempts", 1),
    baseMs: int(baseMs, "baseMs", 0, MAX_TIMER_MS),
    maxMs: int(maxMs, "maxMs", 0, MAX_TIMER_MS),
  };
  if (policy.maxMs < policy.baseMs) bad(`${at}.maxMs`, `at least baseMs (${policy.baseMs})`, maxMs);
  return policy;
}

function parseWarm(
  value: unknown,
  at: string,
  bad: (where: string, must: string, got: unknown) => never,
): WarmLimits {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    bad(at, 'an object like {"concurrency": 4, "maxTasks": 1000}', value);
  }
  const limits: WarmLimits = {};
  for (const [key, v] of Object.entries(value as Record<string, unknown>)) {
    if (!["concurrency", "maxTasks", "maxAgeMs", "maxHeapMb"].includes(key)) {
      bad(`${at}.${key}`, "absent (concurrency, maxTasks, maxAgeMs, maxHeapMb)", key);
    }
    if (!Number.isSafeInteger(v) || (v as number) < 1) bad(`${at}.${key}`, "an integer >= 1", v);
    limits[key as keyof WarmLimits] = v as number;
  }
  return limits;
}

/**
 * Read and validate the functions config file. A missing file means "no grants".
 * @throws {FunctionsConfigError} when the file exists but is not valid JSON or not valid grants.
 */
export async function loadFunctionConfig(path: string): Promise<FunctionConfigTable> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return new Map();
    throw new FunctionsConfigError(`${path}: cannot be read: ${(error as Error).message}`);
  }
  let content: unknown;
  try {
    content = JSON.parse(text);
  } catch (error) {
    throw new FunctionsConfigError(`${path}: is not valid JSON: ${(error as Error).message}`);
  }
  return parseFunctionConfig(content, path);
}
