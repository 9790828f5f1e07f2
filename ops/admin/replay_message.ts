/**
 * One message of a `replay`: what the report shows of it (handler, key, size, what its
 * dead-letter headers say) and the message produced from it (same key and payload, the runner's
 * headers replaced by where it was replayed from).
 * @module
 */
import { Buffer } from "node:buffer";
import type { IHeaders, KafkaMessage, Message } from "kafkajs";
import { DEAD_LETTER_HEADERS } from "../../runner/report/publisher.ts";
import { toNumber } from "./log_bounds.ts";
import { TaskRejectedError } from "../../runner/errors.ts";
import { handlerFromHeaders } from "../../runner/handler_name.ts";

/** Headers the runner writes start with this; a replay drops them all. */
export const RUNNER_HEADER_PREFIX = "x-task-runner-";

/** Header a replayed message carries: `<topic>/<partition>@<offset>` it was read from. */
export const REPLAYED_FROM_HEADER = "x-task-runner-replayed-from";

/** What a dead letter's headers say about its failure (null when a header is missing). */
export interface DeadLetterInfo {
  /** `failed`, `timeout` or `rejected`. */
  outcome: string | null;
  /** The reason, as in the outcome log line. */
  error: string | null;
  /** How many times the task was run. */
  attempts: number | null;
  /** Where the task was first read, `<topic>/<partition>@<offset>`. */
  origin: string | null;
  /** When it was dead-lettered (ISO 8601). */
  failedAt: string | null;
  /** The first stack frames of what the handler threw, or empty. */
  stack: string[];
}

/** One message selected for replay. */
export interface ReplayedMessage {
  /** Partition it was read from. */
  partition: number;
  /** Offset it was read from. */
  offset: number;
  /** Its timestamp, ms since the epoch. */
  timestamp: number;
  /** Value of the handler header, or null when it has none. */
  handler: string | null;
  /** Key as text, base64 when it is not UTF-8 (see `keyBase64`), or null when it has none. */
  key: string | null;
  /** True when `key` is base64 because the key is not UTF-8. */
  keyBase64: boolean;
  /** Payload size in bytes. */
  payloadBytes: number;
  /** What its dead-letter headers say, or null when it has none. */
  deadLetter: DeadLetterInfo | null;
  /** Where it was produced in `toTopic`; null on a dry run. */
  target: { partition: number; offset: number } | null;
  /** The start of the payload as text (invalid UTF-8 replaced), at most {@link PREVIEW_BYTES}. */
  preview: string | null;
  /** Every header as text, each value cut at {@link PREVIEW_BYTES} (the console shows them). */
  headers: Record<string, string>;
}

/** Bytes of a payload, and of each header value, a report shows. */
export const PREVIEW_BYTES = 1024;

const lossy = new TextDecoder("utf-8");

function textOf(value: Uint8Array): string {
  const text = lossy.decode(value.subarray(0, PREVIEW_BYTES));
  return value.length > PREVIEW_BYTES ? text + "…" : text;
}

function headersOf(headers: IHeaders | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, raw] of Object.entries(headers ?? {})) {
    const value = Array.isArray(raw) ? raw[0] : raw;
    if (value === undefined) continue;
    out[name] = typeof value === "string"
      ? (value.length > PREVIEW_BYTES ? value.slice(0, PREVIEW_BYTES) + "…" : value)
      : textOf(value);
  }
  return out;
}

const utf8 = new TextDecoder("utf-8", { fatal: true });

/** The first value of a header as text (kafkajs gives a repeated header as an array). */
export function header(headers: IHeaders | undefined, name: string): string | null {
  const raw = headers?.[name];
  const value = Array.isArray(raw) ? raw[0] : raw;
  if (value === undefined) return null;
  return typeof value === "string" ? value : Buffer.from(value).toString("utf8");
}

/**
 * The handler a message names, by the runner's own rule ({@link handlerFromHeaders}): null when
 * it names none, or when its handler header is repeated with different values (the runner
 * rejects such a message, so it never ran as either).
 */
export function handlerOf(headers: IHeaders | undefined, handlerHeader: string): string | null {
  try {
    return handlerFromHeaders(headers, handlerHeader);
  } catch (error) {
    if (error instanceof TaskRejectedError) return null;
    throw error;
  }
}

function deadLetterInfo(headers: IHeaders | undefined): DeadLetterInfo | null {
  const h = DEAD_LETTER_HEADERS;
  const outcome = header(headers, h.outcome);
  const error = header(headers, h.error);
  if (outcome === null && error === null) return null;
  const attempts = header(headers, h.attempts);
  const topic = header(headers, h.topic);
  return {
    outcome,
    error,
    attempts: attempts !== null && /^\d+$/.test(attempts) ? Number(attempts) : null,
    origin: topic === null
      ? null
      : `${topic}/${header(headers, h.partition)}@${header(headers, h.offset)}`,
    failedAt: header(headers, h.time),
    stack: header(headers, h.stack)?.split("\n") ?? [],
  };
}

/** The report of one message read from `partition`. */
export function describe(
  partition: number,
  message: KafkaMessage,
  handlerHeader: string,
): ReplayedMessage {
  let key: string | null = null;
  let keyBase64 = false;
  if (message.key !== null) {
    try {
      key = utf8.decode(message.key);
    } catch {
      // Not text: base64 is the faithful rendering, and keyBase64 says so.
      key = message.key.toString("base64");
      keyBase64 = true;
    }
  }
  return {
    partition,
    offset: toNumber(message.offset, "offset"),
    timestamp: toNumber(message.timestamp, "timestamp"),
    handler: handlerOf(message.headers, handlerHeader),
    key,
    keyBase64,
    payloadBytes: message.value?.length ?? 0,
    deadLetter: deadLetterInfo(message.headers),
    target: null,
    preview: message.value === null ? null : textOf(message.value),
    headers: headersOf(message.headers),
  };
}

/** The message to produce: same key and value, runner headers replaced by replayed-from. */
export function replayMessage(topic: string, partition: number, message: KafkaMessage): Message {
  const headers: IHeaders = {};
  for (const [name, value] of Object.entries(message.headers ?? {})) {
    if (value !== undefined && !name.toLowerCase().startsWith(RUNNER_HEADER_PREFIX)) {
      headers[name] = value;
    }
  }
  headers[REPLAYED_FROM_HEADER] = `${topic}/${partition}@${message.offset}`;
  return { key: message.key, value: message.value, headers };
}
