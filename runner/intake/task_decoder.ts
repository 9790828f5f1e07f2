/**
 * Turns a Kafka message into a task, or into the reason it is rejected.
 * @module
 */
import type { KafkaMessage } from "kafkajs";
import { isAbsolute, relative } from "node:path";
import { type DeliveryPolicy, deliveryPolicy } from "../dispatch/delivery_policy.ts";
import type { TaskSource } from "../dispatch/job.ts";
import { TaskRejectedError } from "../errors.ts";
import type { FunctionConfigTable } from "../function_config.ts";
import { handlerFromHeaders, handlerPath, versionOf } from "../handler_name.ts";
import type { Task } from "../handler_types.ts";
import { wireRejection } from "../kafka/record_headers.ts";
import { PayloadSchemas } from "./payload_schema.ts";
import type { TopicPartition } from "./topic_partition.ts";

/** A task ready to run. */
export interface DecodedTask {
  handler: string;
  file: string;
  /**
   * The handler file's fingerprint when this message was decoded ({@link versionOf}); a warm
   * sandbox compares it with its processes' instead of taking a stat of its own. None for a
   * `command` function.
   */
  fileVersion?: string;
  payload: Uint8Array;
  /**
   * The payload parsed from JSON, once, here (schema checks and flow-control keys read it); the
   * dispatcher drops it once the flow keys are read.
   */
  json: unknown;
  /** What the handler receives besides the payload (and the attempt, set per run). */
  fields: Omit<Task, "payload" | "attempt">;
}

/** Options of {@link decodeTask}. */
export interface DecodeOptions {
  /** Header naming the handler. */
  handlerHeader: string;
  /** Folder of handlers. */
  functionsDir: string;
  /** Largest payload accepted. */
  maxPayloadBytes: number;
  /** Functions run by a functions.json `command`: they have no handler file. @default none */
  commandFunctions?: ReadonlySet<string>;
  /** Handler files found recently (see {@link HandlerFiles}). @default checked per message */
  files?: HandlerFiles;
}

/** A handler file found: its real path and fingerprint. */
interface FoundFile {
  real: string;
  version: string;
}

/**
 * Handler files found in the last `ttlMs`, so that a burst of messages for one handler costs
 * one lstat per handler per `ttlMs` instead of one per message. Only files found are kept: a
 * file dropped in is seen by the next message, and a changed one within `ttlMs`.
 */
export class HandlerFiles {
  readonly #ttlMs: number;
  readonly #now: () => number;
  readonly #found = new Map<string, FoundFile & { at: number }>();

  /** @param ttlMs how long a file found is taken as unchanged. @param now a clock in ms. */
  constructor(ttlMs = 50, now: () => number = () => performance.now()) {
    this.#ttlMs = ttlMs;
    this.#now = now;
  }

  /** The handler file of `name` (see {@link handlerFile}). @throws {TaskRejectedError} */
  find(functionsDir: string, name: string): FoundFile {
    const now = this.#now();
    const key = `${functionsDir}\u0000${name}`;
    const hit = this.#found.get(key);
    if (hit && now - hit.at < this.#ttlMs) return hit;
    const found = handlerFile(functionsDir, name);
    this.#found.set(key, { ...found, at: now });
    return found;
  }
}

const DECODER = new TextDecoder();

function headerText(value: unknown): string {
  if (value === undefined || value === null) return "";
  if (Array.isArray(value)) return headerText(value[value.length - 1]);
  return typeof value === "string" ? value : DECODER.decode(value as Uint8Array);
}

/** Folders whose files are never handlers, wherever a symlink puts them. */
const NEVER_HANDLERS = ["/proc", "/dev", "/sys"];

/**
 * The real path of handler `name`'s file, which is what the sandbox may read and imports. A
 * symlink is followed only when its real path stays inside the functions folder, and never
 * into /proc, /dev or /sys: the read grant covers the real path, so a link could read anything.
 * Hot path: a regular file costs one lstat (as a stat did before); only a symlink costs more.
 * Returns the real path and the file's fingerprint ({@link versionOf}).
 * @throws {TaskRejectedError} when there is no such file, or the link leads elsewhere.
 */
function handlerFile(functionsDir: string, name: string): FoundFile {
  const file = handlerPath(functionsDir, name);
  const unknown = () => new TaskRejectedError(`unknown handler ${name}: no file ${file}`);
  let real = file;
  let info: Deno.FileInfo;
  try {
    info = Deno.lstatSync(file);
    if (info.isSymlink) {
      real = Deno.realPathSync(file);
      const dir = Deno.realPathSync(functionsDir);
      const under = NEVER_HANDLERS.find((d) => real === d || real.startsWith(`${d}/`));
      const rel = relative(dir, real);
      if (under !== undefined || rel.startsWith("..") || isAbsolute(rel)) {
        throw new TaskRejectedError(
          `handler ${name} is a symlink to ${real}, ` +
            `${under === undefined ? `outside ${dir}` : `which is under ${under}`}: ` +
            `only links that stay inside ${dir} are run`,
        );
      }
      info = Deno.statSync(real);
      if (!info.isFile) throw unknown();
    } else if (!info.isFile) {
      throw unknown();
    }
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) throw unknown();
    throw error;
  }
  return { real, version: versionOf(info) };
}

/**
 * Reject a message the Kafka layer already refused (too many headers, undecodable batch).
 * @throws {TaskRejectedError} with the Kafka layer's reason.
 */
function rejectWireFailure(message: KafkaMessage): void {
  const reason = wireRejection(message);
  if (reason !== undefined) throw new TaskRejectedError(reason);
}

/**
 * Decode `message`. The handler file must exist (checked now, so a file dropped in is used by
 * the next task without a restart; with `files`, a file found in the last 50 ms is not looked
 * up again; a function with a `command` has none), a symlink must stay inside the functions
 * folder (see {@link handlerFile}; `file` is then the real path), and the payload must be JSON
 * within the size limit.
 *
 * @throws {TaskRejectedError} saying what was wrong.
 */
export function decodeTask(
  topic: string,
  partition: number,
  message: KafkaMessage,
  options: DecodeOptions,
): DecodedTask {
  rejectWireFailure(message);
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(message.headers ?? {})) {
    headers[name] = headerText(value);
  }
  const handler = handlerFromHeaders(message.headers, options.handlerHeader);
  if (handler === null) {
    throw new TaskRejectedError(
      `missing header "${options.handlerHeader}" naming the handler`,
    );
  }
  const { real: file, version: fileVersion } = options.commandFunctions?.has(handler)
    ? { real: handlerPath(options.functionsDir, handler), version: undefined }
    : options.files
    ? options.files.find(options.functionsDir, handler)
    : handlerFile(options.functionsDir, handler);
  const payload = message.value ?? new Uint8Array();
  if (payload.length > options.maxPayloadBytes) {
    throw new TaskRejectedError(
      `payload of ${payload.length} bytes is over the limit of ${options.maxPayloadBytes} (MAX_PAYLOAD_BYTES)`,
    );
  }
  let json: unknown;
  try {
    json = JSON.parse(DECODER.decode(payload));
  } catch (error) {
    const hint = payload.length === 0 ? "empty payload" : (error as Error).message;
    throw new TaskRejectedError(`payload is not valid JSON: ${hint}`);
  }
  return {
    handler,
    file,
    ...(fileVersion === undefined ? {} : { fileVersion }),
    payload,
    json,
    fields: {
      headers,
      key: message.key ? DECODER.decode(message.key) : null,
      topic,
      partition,
      offset: message.offset,
      timestamp: new Date(Number(message.timestamp)).toISOString(),
    },
  };
}

/** Options of a {@link TaskDecoder}. */
export interface TaskDecoderOptions extends DecodeOptions {
  /** Per-function configuration (functions.json), for each handler's delivery policy. */
  functions: FunctionConfigTable;
}

/**
 * Decodes messages into tasks, checks their payload against the function's schema, and names
 * each handler's delivery rules (cached per handler).
 */
export class TaskDecoder implements TaskSource {
  readonly #options: DecodeOptions;
  readonly #functions: FunctionConfigTable;
  readonly #schemas: PayloadSchemas;
  readonly #policies = new Map<string, DeliveryPolicy>();

  /** @throws {FunctionsConfigError} when a function's payload schema cannot be read or compiled. */
  constructor(options: TaskDecoderOptions) {
    const { functions, ...decode } = options;
    const commands = [...functions].filter(([, config]) => config.command).map(([name]) => name);
    this.#options = { ...decode, commandFunctions: new Set(commands), files: new HandlerFiles() };
    this.#functions = functions;
    this.#schemas = new PayloadSchemas(functions);
  }

  /** @throws {TaskRejectedError} saying what is wrong with the message. */
  decode(source: TopicPartition, message: KafkaMessage): DecodedTask {
    const task = decodeTask(source.topic, source.partition, message, this.#options);
    this.#schemas.check(task.handler, task.json);
    return task;
  }

  policyFor(handler: string): DeliveryPolicy {
    let policy = this.#policies.get(handler);
    if (!policy) {
      this.#policies.set(handler, policy = deliveryPolicy(this.#functions.get(handler)));
    }
    return policy;
  }
}
