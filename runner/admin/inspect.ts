/**
 * The `inspect` admin command: read one message by topic, partition and offset (the PHP notes'
 * `async_task_consume_by_offset`), without touching any real consumer group.
 *
 * kafkajs has no `assign()`: every consumer is a group member. So this joins a throwaway group
 * (`task-runner-inspect-<uuid>`) whose own partition assigner gives its only member just the
 * one partition, seeks to the offset, never commits, and deletes the group afterwards. The
 * runner's group and its committed offsets are never read or written.
 * @module
 */
import { Buffer } from "node:buffer";
import {
  type Admin,
  AssignerProtocol,
  type IHeaders,
  type Kafka,
  type KafkaMessage,
  type PartitionAssigner,
} from "kafkajs";
import { AdminTimeoutError, OffsetOutOfRangeError, UnknownTopicError } from "../errors.ts";
import { partitionBounds, toNumber } from "./log_bounds.ts";

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

const ASSIGNER_NAME = "TaskRunnerInspectSinglePartition";

/** An assigner that hands the group's only member `partition` of `topic`, nothing else. */
function singlePartition(topic: string, partition: number): PartitionAssigner {
  return () => ({
    name: ASSIGNER_NAME,
    version: 0,
    assign({ members }) {
      return Promise.resolve(members.map(({ memberId }, i) => ({
        memberId,
        memberAssignment: AssignerProtocol.MemberAssignment.encode({
          version: 0,
          assignment: i === 0 ? { [topic]: [partition] } : {},
          userData: Buffer.alloc(0),
        }),
      })));
    },
    protocol({ topics }) {
      return {
        name: ASSIGNER_NAME,
        metadata: AssignerProtocol.MemberMetadata.encode({
          version: 0,
          topics,
          userData: Buffer.alloc(0),
        }),
      };
    },
  });
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
    const groupId = `${options.groupPrefix ?? "task-runner-inspect"}-${crypto.randomUUID()}`;
    const consumer = kafka.consumer({
      groupId,
      partitionAssigners: [singlePartition(topic, partition)],
      allowAutoTopicCreation: false,
      maxWaitTimeInMs: 250,
    });
    const found = Promise.withResolvers<KafkaMessage>();
    const timer = setTimeout(
      () =>
        found.reject(
          new AdminTimeoutError(
            `the broker did not deliver ${topic}/${partition}@${offset} within ${timeoutMs} ms`,
          ),
        ),
      timeoutMs,
    );
    // Settled into a value at once, so a crash during connect is not an unhandled rejection.
    const outcome = found.promise.then(
      (message) => ({ message, error: undefined }),
      (error: Error) => ({ message: undefined, error }),
    );
    const crashed = consumer.on(
      consumer.events.CRASH,
      ({ payload }) => found.reject(payload.error),
    );
    try {
      await consumer.connect();
      // From the beginning: every fetch then reads the log in order from the log start or from
      // the sought offset, both <= offset, so the first message >= offset seen is the one
      // there (or the next one, if compaction removed it). From the end, a message written
      // just now could arrive before the seek takes effect and be taken for it.
      await consumer.subscribe({ topics: [topic], fromBeginning: true });
      await consumer.run({
        autoCommit: false,
        eachBatch: ({ batch }) => {
          if (batch.topic !== topic || batch.partition !== partition) return Promise.resolve();
          const message = batch.messages.find((m) => toNumber(m.offset, "offset") >= offset);
          if (message !== undefined) found.resolve(message);
          return Promise.resolve();
        },
      });
      consumer.seek({ topic, partition, offset: String(offset) });
      const { message, error } = await outcome;
      if (error !== undefined) throw error;
      if (toNumber(message.offset, "offset") !== offset) {
        throw new OffsetOutOfRangeError(
          `${topic}/${partition} has no message at offset ${offset} (removed by compaction, or ` +
            `a transaction marker); the next message is at offset ${message.offset}`,
        );
      }
      return toInspected(address, message);
    } finally {
      clearTimeout(timer);
      crashed();
      await consumer.disconnect();
      await admin.deleteGroups([groupId]);
    }
  } finally {
    await admin.disconnect();
  }
}
