/**
 * The `inspect` admin command: read one message by topic, partition and offset (the PHP notes'
 * `async_task_consume_by_offset`), without touching any real consumer group.
 *
 * It reads through a throwaway consumer group (`task-runner-inspect-<uuid>`, see
 * `range_reader.ts`) that is given only that partition, never commits and is deleted
 * afterwards: the runner's group and its committed offsets are never read or written.
 * @module
 */
import { Buffer } from "node:buffer";
import type { Admin, IHeaders, Kafka, KafkaMessage } from "kafkajs";
import { OffsetOutOfRangeError, UnknownTopicError } from "../../runner/errors.ts";
import { partitionBounds, toNumber } from "./log_bounds.ts";
import { readRanges } from "./range_reader.ts";

/** Which message to read. */
export interface MessageAddress {
  /** Topic name. */
  topic: string;
  /** Partition number. */
  partition: number;
  /** Offset of the message. */
  offset: number;
}

/** One message as read from the log, with every byte field decoded for a person to read. */
export interface InspectedMessage {
  /** Topic name. */
  topic: string;
  /** Partition number. */
  partition: number;
  /** Offset of the message. */
  offset: number;
  /** Timestamp in ms since the epoch (create time, or log-append time if the topic says so). */
  timestamp: number;
  /** Message key, or null when it has none. */
  key: string | null;
  /** Headers; a header sent several times has an array of values. */
  headers: Record<string, string | string[]>;
  /** Payload, or null for a tombstone (no value). */
  payload: string | null;
  /** Payload size in bytes. */
  payloadBytes: number;
  /**
   * Fields that are not valid UTF-8 and are therefore given as base64: `"key"`, `"payload"` or
   * `"headers.<name>"`. Empty for ordinary text messages.
   */
  base64: string[];
}

/** Options of {@link inspectMessage}. */
export interface InspectOptions {
  /** How long to wait for the broker to deliver the message. @default 15000 */
  timeoutMs?: number;
  /** Prefix of the throwaway consumer group id. @default "task-runner-inspect" */
  groupPrefix?: string;
}

const utf8 = new TextDecoder("utf-8", { fatal: true });

/** Bytes as text when they are UTF-8, else as base64 (and `field` is recorded in `base64`). */
function decode(bytes: Buffer, field: string, base64: string[]): string {
  try {
    return utf8.decode(bytes);
  } catch {
    // Not text: base64 is the faithful rendering, and the field is listed so nobody mistakes it.
    base64.push(field);
    return bytes.toString("base64");
  }
}

function decodeHeaders(headers: IHeaders | undefined, base64: string[]) {
  const out: Record<string, string | string[]> = {};
  for (const [name, value] of Object.entries(headers ?? {})) {
    if (value === undefined) continue;
    const text = (v: Buffer | string) =>
      typeof v === "string" ? v : decode(v, `headers.${name}`, base64);
    out[name] = Array.isArray(value) ? value.map(text) : text(value);
  }
  return out;
}

function toInspected(address: MessageAddress, message: KafkaMessage): InspectedMessage {
  const base64: string[] = [];
  const key = message.key === null ? null : decode(message.key, "key", base64);
  const headers = decodeHeaders(message.headers, base64);
  const payload = message.value === null ? null : decode(message.value, "payload", base64);
  return {
    topic: address.topic,
    partition: address.partition,
    offset: toNumber(message.offset, "message offset"),
    timestamp: toNumber(message.timestamp, "message timestamp"),
    key,
    headers,
    payload,
    payloadBytes: message.value?.length ?? 0,
    base64: [...new Set(base64)],
  };
}

/** Check the address against the partition's log and explain what is readable instead. */
async function checkAddress(admin: Admin, address: MessageAddress): Promise<void> {
  const { topic, partition, offset } = address;
  const bounds = (await partitionBounds(admin, topic)).find((b) => b.partition === partition);
  if (bounds === undefined) {
    throw new UnknownTopicError(`topic "${topic}" has no partition ${partition}`);
  }
  const at = `${topic}/${partition}`;
  if (offset >= bounds.high) {
    throw new OffsetOutOfRangeError(
      bounds.high === bounds.low
        ? `${at} is empty: offset ${offset} is past the end ` +
          `(the next message will get offset ${bounds.high})`
        : `offset ${offset} is past the end of ${at}: its messages are ${bounds.low}..${
          bounds.high - 1
        } (the next message will get offset ${bounds.high})`,
    );
  }
  if (offset < bounds.low) {
    throw new OffsetOutOfRangeError(
      `offset ${offset} is before the log start of ${at}: messages before ${bounds.low} were ` +
        `deleted by retention; its messages are ${bounds.low}..${bounds.high - 1}`,
    );
  }
}

/**
 * Read the message at `address`: headers (as text), key, timestamp and payload.
 *
 * @throws {UnknownTopicError} when the topic or partition does not exist.
 * @throws {OffsetOutOfRangeError} when the offset is past the end or before the log start.
 * @throws {AdminTimeoutError} when the broker does not deliver it within `timeoutMs`.
 * @example
 * ```ts
 * const message = await inspectMessage(kafka, { topic: "async_task", partition: 0, offset: 42 });
 * console.log(message.headers.php_worker, message.payload);
 * ```
 */
export async function inspectMessage(
  kafka: Kafka,
  address: MessageAddress,
  options: InspectOptions = {},
): Promise<InspectedMessage> {
  const { topic, partition, offset } = address;
  for (const [name, value] of [["partition", partition], ["offset", offset]] as const) {
    if (!Number.isSafeInteger(value) || value < 0) {
      throw new RangeError(`Cannot inspect: "${name}" must be an integer >= 0, got ${value}`);
    }
  }
  const timeoutMs = options.timeoutMs ?? 15_000;
  if (!Number.isSafeInteger(timeoutMs) || timeoutMs <= 0) {
    throw new RangeError(
      `Cannot inspect: "timeoutMs" must be a positive integer, got ${timeoutMs}`,
    );
  }

  const admin = kafka.admin();
  await admin.connect();
  try {
    await checkAddress(admin, address);
    let found: KafkaMessage | undefined;
    await readRanges(kafka, {
      topic,
      ranges: [{ partition, start: offset, end: offset + 1 }],
      idleTimeoutMs: timeoutMs,
      groupPrefix: options.groupPrefix ?? "task-runner-inspect",
      onMessage: (_, message) => {
        found = message;
      },
    });
    if (found === undefined) {
      throw new OffsetOutOfRangeError(
        `${topic}/${partition} has no message at offset ${offset} (removed by compaction, or ` +
          "a transaction marker)",
      );
    }
    return toInspected(address, found);
  } finally {
    await admin.disconnect();
  }
}
