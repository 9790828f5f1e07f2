/**
 * Run a handler locally, without Kafka, through the code production uses: the task is decoded
 * like a message (the handler's file, the payload's JSON and size, its schema), and runs in the
 * executor's sandbox with the function's grants and limits from functions.json (task mode,
 * prewarmed or warm, or its `command`). A test written with it fails on a missing grant the way
 * production would. `deno task invoke` is its command-line face.
 *
 * @example
 * ```ts
 * import { invoke } from "../../runner/testing.ts";
 * Deno.test("word_count counts words", async () => {
 *   const run = await invoke("word_count", { text: "to be or not to be" });
 *   if (run.outcome !== "ok") throw new Error(run.reason);
 *   console.log(run.output); // [{ stream: "stdout", line: '{"words":6,...}' }]
 * });
 * ```
 * @module
 */
import { Buffer } from "node:buffer";
import type { KafkaMessage } from "kafkajs";
import { resolveConfig, type RunnerConfig } from "./config.ts";
import { ConcurrencyCap } from "./dispatch/concurrency_cap.ts";
import type { Job } from "./dispatch/job.ts";
import { TaskRejectedError } from "./errors.ts";
import { type FunctionConfigTable, loadFunctionConfig } from "./function_config.ts";
import { TaskDecoder } from "./intake/task_decoder.ts";
import type { Outcome } from "./report/task_reporter.ts";
import { TaskExecutor } from "./sandbox/executor.ts";

/** One output line of an invoked task. */
export interface OutputLine {
  stream: "stdout" | "stderr";
  line: string;
  /** True when the line was cut at the output limit. */
  truncated: boolean;
}

/** How an invoked task ended. */
export interface Invocation {
  /** `ok`, `failed`, `timeout`, or `rejected` (refused before any process ran). */
  outcome: Outcome;
  /** Why, in the words of the outcome log (`exit 0`, `killed by SIGTERM after timeout …`). */
  reason: string;
  /** The task's output lines, in order. */
  output: OutputLine[];
  /** The handler's return value (parsed), if it returned one. */
  result?: unknown;
  /** Time from the process taking the task to its end, in ms (0 when rejected). */
  durationMs: number;
}

/** Options of {@link invoke} and {@link LocalInvoker}. */
export interface InvokeOptions {
  /**
   * Runner settings (functions folder, timeouts, heap cap, nice, header, payload limit).
   * @default resolveConfig({}, Deno.env.toObject()): the environment and the defaults
   */
  settings?: Pick<
    RunnerConfig,
    | "functionsDir"
    | "functionsConfig"
    | "handlerHeader"
    | "maxPayloadBytes"
    | "killGraceMs"
    | "memoryMb"
    | "prewarm"
    | "taskNice"
    | "taskTimeoutMs"
  >;
  /** Per-function configuration. @default read from `settings.functionsConfig` */
  functions?: FunctionConfigTable;
  /** Run the function in this isolation instead of its configured one. @default configured */
  isolation?: "task" | "function";
  /** Environment the granted `allowEnv` variables are copied from. @default Deno.env.toObject() */
  hostEnv?: Readonly<Record<string, string>>;
  /** Called with each output line as it comes. @default none */
  onOutput?: (line: OutputLine) => void;
}

/** One task's message fields besides the payload. */
export interface TaskOptions {
  /** Message key. @default null */
  key?: string | null;
  /** Extra message headers (the handler header is set from the name). @default {} */
  headers?: Record<string, string>;
}

/**
 * Several tasks of one function through one executor: a function with `isolation: "function"`
 * keeps its warm process between them, as in production. Close it when done.
 */
export class LocalInvoker {
  readonly #name: string;
  readonly #decoder: TaskDecoder;
  readonly #executor: TaskExecutor;
  readonly #handlerHeader: string;
  readonly #onOutput: InvokeOptions["onOutput"];
  readonly #lines = new Map<Job, OutputLine[]>();
  #offset = 0;

  /** Use {@link LocalInvoker.create}: it reads functions.json first. */
  private constructor(name: string, functions: FunctionConfigTable, options: InvokeOptions) {
    const settings = options.settings ?? resolveConfig({}, Deno.env.toObject());
    this.#name = name;
    this.#handlerHeader = settings.handlerHeader;
    this.#onOutput = options.onOutput;
    const table = new Map(functions);
    if (options.isolation) table.set(name, { ...table.get(name), isolation: options.isolation });
    this.#decoder = new TaskDecoder({ ...settings, functions: table });
    this.#executor = new TaskExecutor({
      settings: { ...settings, prewarm: 0 },
      functions: table,
      cap: new ConcurrencyCap(1),
      hostEnv: options.hostEnv,
      onOutput: (job, stream, line, truncated) => {
        const out = { stream, line, truncated };
        this.#lines.get(job)?.push(out);
        this.#onOutput?.(out);
      },
    });
  }

  /**
   * An invoker for handler `name`.
   * @throws {FunctionsConfigError} when functions.json or the function's schema is invalid.
   */
  static async create(name: string, options: InvokeOptions = {}): Promise<LocalInvoker> {
    const settings = options.settings ?? resolveConfig({}, Deno.env.toObject());
    const functions = options.functions ?? await loadFunctionConfig(settings.functionsConfig);
    return new LocalInvoker(name, functions, { ...options, settings });
  }

  /** Run one task with `payload` (a value, sent as JSON; bytes are sent as they are). */
  async invoke(payload: unknown, task: TaskOptions = {}): Promise<Invocation> {
    const offset = String(this.#offset++);
    const value = payload instanceof Uint8Array
      ? payload
      : new TextEncoder().encode(JSON.stringify(payload) ?? "");
    const message = {
      key: task.key == null ? null : Buffer.from(task.key),
      value: Buffer.from(value),
      headers: { ...task.headers, [this.#handlerHeader]: this.#name },
      offset,
      timestamp: String(Date.now()),
      attributes: 0,
    } as unknown as KafkaMessage;
    const source = { topic: "local", partition: 0 };
    let decoded;
    try {
      decoded = this.#decoder.decode(source, message);
    } catch (error) {
      if (!(error instanceof TaskRejectedError)) throw error;
      return { outcome: "rejected", reason: error.message, output: [], durationMs: 0 };
    }
    const now = performance.now();
    const job: Job = {
      ...source,
      message,
      task: decoded,
      policy: this.#decoder.policyFor(decoded.handler),
      attempt: 1,
      slot: null,
      fetchedAt: now,
      readyAt: now,
    };
    const output: OutputLine[] = [];
    this.#lines.set(job, output);
    const ran = await this.#executor.execute(job);
    this.#lines.delete(job);
    return {
      outcome: ran.outcome,
      reason: ran.reason,
      output,
      ...(ran.result === undefined ? {} : { result: JSON.parse(ran.result) }),
      durationMs: ran.durationMs ?? performance.now() - now,
    };
  }

  /** End the warm processes this invoker started. Idempotent. */
  close(): Promise<void> {
    return this.#executor.close();
  }
}

/**
 * Run handler `name` once with `payload`, in its production sandbox, and tell how it ended.
 * Never throws for what the handler does; throws only for an invalid functions.json.
 */
export async function invoke(
  name: string,
  payload: unknown,
  options: InvokeOptions & TaskOptions = {},
): Promise<Invocation> {
  const invoker = await LocalInvoker.create(name, options);
  try {
    return await invoker.invoke(payload, options);
  } finally {
    await invoker.close();
  }
}
