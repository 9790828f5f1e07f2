/**
 * Producing tasks: the same message the PHP daemon's `async_task_produce` wrote
 * (JSON payload, handler name in the `php_worker` header).
 * @module
 */
import type { Producer, RecordMetadata } from "kafkajs";
import { handlerPath } from "../runner/handler_name.ts";
import { DEFAULT_MAX_DELAY_MS } from "../runner/dispatch/delays.ts";

/** Options of {@link enqueue}. */
export interface EnqueueOptions {
  /** Topic to produce to. @default "async_task" */
  topic?: string;
  /** Message key (tasks with one key go to one partition). @default none */
  key?: string;
  /** Header carrying the handler name. @default "php_worker" */
  handlerHeader?: string;
  /** Extra headers to send along. @default {} */
  headers?: Record<string, string>;
  /**
   * Earliest start (a Date, or epoch ms): sent in the not-before header. Refused when it is
   * further ahead than `maxDelayMs`, since the runner would reject it. @default none
   */
  notBefore?: Date | number;
  /** Header carrying the not-before time. @default "x-task-runner-not-before" */
  notBeforeHeader?: string;
  /** The runners' MAX_DELAY_MS. @default 900000 */
  maxDelayMs?: number;
}

/** A delay or a time that `enqueue` cannot send, with what to do instead. */
export class DelayError extends Error {
  override name = "DelayError";
}

const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/**
 * A delay like `10m`, `90s`, `1h`, `250ms` (or plain milliseconds) in ms.
 * @throws {DelayError} naming the value and the form it must take.
 */
export function parseDelay(text: string): number {
  const match = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(text.trim());
  if (!match) {
    throw new DelayError(`--delay must be a number with ms, s, m or h (like 10m), got "${text}"`);
  }
  return Math.round(Number(match[1]) * UNITS[match[2] ?? "ms"]);
}

/**
 * A time like `2026-01-02T03:04:05Z` (ISO 8601 with a zone) or epoch ms, in epoch ms.
 * @throws {DelayError} naming the value and the form it must take.
 */
export function parseAt(text: string): number {
  const t = text.trim();
  const ms = /^\d{1,16}$/.test(t)
    ? Number(t)
    : /(Z|[+-]\d{2}:?\d{2})$/.test(t) && t.includes("T")
    ? Date.parse(t)
    : NaN;
  if (!Number.isSafeInteger(ms)) {
    throw new DelayError(
      `--at must be an ISO 8601 time with a zone (2026-01-02T03:04:05Z) or epoch ms, got "${text}"`,
    );
  }
  return ms;
}

/**
 * Produce one task for `handler` with `payload` encoded as JSON.
 *
 * @throws {TaskRejectedError} if `handler` is not a valid name (nothing is produced).
 * @example
 * ```ts
 * await enqueue(producer, "hello", { to: "world" });
 * ```
 */
export async function enqueue(
  producer: Producer,
  handler: string,
  payload: unknown,
  options: EnqueueOptions = {},
): Promise<RecordMetadata> {
  handlerPath(".", handler); // validates the name; the file need not exist on this machine
  const headers: Record<string, string> = { ...options.headers };
  if (options.notBefore !== undefined) {
    const at = typeof options.notBefore === "number"
      ? options.notBefore
      : options.notBefore.getTime();
    const max = options.maxDelayMs ?? DEFAULT_MAX_DELAY_MS;
    if (!Number.isSafeInteger(at)) {
      throw new DelayError("Cannot enqueue: the not-before time is not a valid time");
    }
    if (at - Date.now() > max) {
      throw new DelayError(
        `Cannot enqueue: ${new Date(at).toISOString()} is ${
          Math.round((at - Date.now()) / 1000)
        } s ` +
          `ahead, more than MAX_DELAY_MS (${max} ms): runners reject delays beyond it, because a ` +
          "delayed task waits in memory and holds back its partition's committed offset; " +
          "enqueue it nearer its time (or raise MAX_DELAY_MS on the runners and here)",
      );
    }
    headers[options.notBeforeHeader ?? "x-task-runner-not-before"] = String(at);
  }
  const value = JSON.stringify(payload);
  if (value === undefined) throw new TypeError("Cannot enqueue: payload is not JSON-serialisable");
  const [metadata] = await producer.send({
    topic: options.topic ?? "async_task",
    acks: -1,
    messages: [{
      key: options.key,
      value,
      headers: { ...headers, [options.handlerHeader ?? "php_worker"]: handler },
    }],
  });
  return metadata;
}
