/**
 * The `replay` admin command: re-enqueue tasks read from a topic (the dead-letter topic, or the
 * task topic itself) by offset range or time range, optionally only one handler's, with a dry
 * run.
 *
 * Each replayed message is the original key and payload byte for byte, with the original
 * headers minus every `x-task-runner-*` header (what a dead letter added, or an earlier
 * replay), plus `x-task-runner-replayed-from: <topic>/<partition>@<offset>` naming the message
 * it was read from. It gets a new timestamp, and its partition in the target topic comes from
 * its key (the default partitioner, as for `enqueue`).
 *
 * The ranges end at the end offsets observed when the command starts, and everything is read
 * before anything is produced: a topic replayed into itself gets exactly the selected messages
 * once more and the command ends. Reading goes through a throwaway consumer group that never
 * commits (see `range_reader.ts`).
 * @module
 */
import { type Kafka, type KafkaMessage, Partitioners, type Producer } from "kafkajs";
import {
  OffsetOutOfRangeError,
  ReplayProduceError,
  UnknownTopicError,
} from "../../runner/errors.ts";
import { type PartitionBounds, partitionBounds, requireTopic, toNumber } from "./log_bounds.ts";
import { type OffsetRange, readRanges } from "./range_reader.ts";
import { describe, handlerOf, type ReplayedMessage, replayMessage } from "./replay_message.ts";

export {
  type DeadLetterInfo,
  REPLAYED_FROM_HEADER,
  type ReplayedMessage,
  RUNNER_HEADER_PREFIX,
} from "./replay_message.ts";

/** What to replay, from where to where. */
export interface ReplayOptions {
  /** Topic to read (e.g. the dead-letter topic `async_task.dlq`). */
  fromTopic: string;
  /** Topic to produce to (e.g. the task topic `async_task`); it may be `fromTopic` itself. */
  toTopic: string;
  /** Only this partition of `fromTopic`. @default every partition */
  partition?: number;
  /** First offset to replay (inclusive); needs `partition`. @default the log start */
  startOffset?: number;
  /** Offset to stop before (exclusive); needs `partition`. @default the end offset at start */
  endOffset?: number;
  /**
   * Time in ms since the epoch: start at each partition's first offset whose timestamp is at or
   * after it. Not with offsets. @default the log start
   */
  since?: number;
  /**
   * Time in ms since the epoch: stop at each partition's first offset whose timestamp is at or
   * after it (exclusive). Not with offsets. @default the end offset at start
   */
  until?: number;
  /** Only messages whose handler header is this name. @default every message */
  handler?: string;
  /** Header naming the handler (shown, and used by `handler`). @default "php_worker" */
  handlerHeader?: string;
  /** Read and report, produce nothing. @default false */
  dryRun?: boolean;
  /**
   * Safety cap: at most this many messages are replayed, the first ones in (partition, offset)
   * order; the report says where the rest starts. @default 1000
   */
  limit?: number;
  /** Give up when the broker delivers nothing for this long while reading, in ms. @default 15000 */
  idleTimeoutMs?: number;
}
/** The range read in one partition. */
export interface ReplayRange extends OffsetRange {
  /**
   * When the limit left messages of this partition out: the offset of the first one (where a
   * next run would start). Null when everything selected here was replayed.
   */
  resumeAt: number | null;
}

/** What {@link replay} did. */
export interface ReplayReport {
  /** Topic read. */
  fromTopic: string;
  /** Topic produced to. */
  toTopic: string;
  /** True when nothing was produced on purpose. */
  dryRun: boolean;
  /** The handler filter, or null. */
  handler: string | null;
  /** The limit applied. */
  limit: number;
  /** Per partition read, by number. */
  ranges: ReplayRange[];
  /** Messages read from the ranges (reading a partition stops once the limit is exceeded). */
  read: number;
  /** Messages read and left out by the handler filter. */
  skipped: number;
  /** Messages produced (0 on a dry run). */
  produced: number;
  /** True when more messages matched than the limit. */
  limitReached: boolean;
  /** The messages selected, in (partition, offset) order. */
  messages: ReplayedMessage[];
}

const TOPIC = /^[A-Za-z0-9._-]{1,249}$/;
/** Most messages and bytes per produce request: well under the broker's default 1 MiB batch. */
const CHUNK_MESSAGES = 500;
const CHUNK_BYTES = 512 * 1024;

/**
 * Check the options that need no broker (what {@link replay} does first); returns the limit and
 * handler header with their defaults applied.
 * @throws {TypeError} / {RangeError} naming the option, what it must be and what it was.
 */
export function checkReplayOptions(
  options: ReplayOptions,
): { limit: number; handlerHeader: string } {
  const fail = (Type: new (message: string) => Error, what: string): never => {
    throw new Type(`Cannot replay: ${what}`);
  };
  for (const name of ["fromTopic", "toTopic"] as const) {
    const value = options[name];
    if (typeof value !== "string" || !TOPIC.test(value)) {
      fail(TypeError, `"${name}" must be a Kafka topic name, got ${JSON.stringify(value)}`);
    }
  }
  const integers = ["partition", "startOffset", "endOffset", "since", "until"] as const;
  for (const name of integers) {
    const value = options[name];
    if (value !== undefined && (!Number.isSafeInteger(value) || value < 0)) {
      fail(RangeError, `"${name}" must be an integer >= 0, got ${value}`);
    }
  }
  const { partition, startOffset, endOffset, since, until } = options;
  const offsets = startOffset !== undefined || endOffset !== undefined;
  if (offsets && partition === undefined) {
    fail(
      TypeError,
      `"startOffset"/"endOffset" need "partition" (offsets are per partition), got none`,
    );
  }
  if (offsets && (since !== undefined || until !== undefined)) {
    fail(
      TypeError,
      `give offsets ("startOffset"/"endOffset") or times ("since"/"until"), not both`,
    );
  }
  if (startOffset !== undefined && endOffset !== undefined && endOffset <= startOffset) {
    fail(
      RangeError,
      `"endOffset" must be greater than "startOffset" (it is exclusive), got ${startOffset} to ` +
        `${endOffset}`,
    );
  }
  if (since !== undefined && until !== undefined && until <= since) {
    fail(
      RangeError,
      `"until" must be later than "since", got ${new Date(since).toISOString()} to ${
        new Date(until).toISOString()
      }`,
    );
  }
  const limit = options.limit ?? 1000;
  if (!Number.isSafeInteger(limit) || limit < 1) {
    fail(RangeError, `"limit" must be a positive integer, got ${limit}`);
  }
  if (options.handler !== undefined && (typeof options.handler !== "string" || !options.handler)) {
    fail(TypeError, `"handler" must be a non-empty name, got ${JSON.stringify(options.handler)}`);
  }
  return { limit, handlerHeader: options.handlerHeader ?? "php_worker" };
}

/** Check explicit offsets against the partition's log, saying which offsets exist. */
function offsetRange(options: ReplayOptions, bounds: PartitionBounds, topic: string): OffsetRange {
  const { partition, low, high } = bounds;
  const at = `${topic}/${partition}`;
  const exist = high === low ? `${at} is empty` : `its messages are ${low}..${high - 1}`;
  const start = options.startOffset ?? low;
  const end = options.endOffset ?? high;
  if (start < low) {
    throw new OffsetOutOfRangeError(
      `"startOffset" ${start} is before the log start of ${at}: messages before ${low} were ` +
        `deleted by retention; ${exist}`,
    );
  }
  if (end > high) {
    throw new OffsetOutOfRangeError(
      `"endOffset" ${end} is past the end of ${at}: ${exist}; "endOffset" can be at most the ` +
        `end offset ${high}`,
    );
  }
  if (start > high) {
    throw new OffsetOutOfRangeError(
      `"startOffset" ${start} is past the end of ${at}: ${exist} (end offset ${high})`,
    );
  }
  return { partition, start, end };
}

/** Per partition, the offsets the options select, ending at the end offsets observed now. */
async function resolveRanges(kafka: Kafka, options: ReplayOptions): Promise<OffsetRange[]> {
  const { fromTopic, toTopic, partition, since, until } = options;
  const admin = kafka.admin();
  await admin.connect();
  try {
    await requireTopic(admin, fromTopic);
    await requireTopic(admin, toTopic);
    let bounds = await partitionBounds(admin, fromTopic, { known: true });
    if (partition !== undefined) {
      const one = bounds.find((b) => b.partition === partition);
      if (one === undefined) {
        throw new UnknownTopicError(
          `topic "${fromTopic}" has no partition ${partition} (it has 0..${bounds.length - 1})`,
        );
      }
      bounds = [one];
    }
    if (options.startOffset !== undefined || options.endOffset !== undefined) {
      return [offsetRange(options, bounds[0], fromTopic)];
    }
    // Looked up after the bounds and clamped to them: a message written meanwhile is not read.
    // A partition with no message at or after the time answers its end offset (or -1).
    const lookup = async (time: number | undefined) => {
      const found = new Map<number, number>();
      if (time === undefined) return found;
      for (const p of await admin.fetchTopicOffsetsByTimestamp(fromTopic, time)) {
        const offset = toNumber(p.offset, `offset of ${fromTopic}/${p.partition} at ${time}`);
        if (offset >= 0) found.set(p.partition, offset);
      }
      return found;
    };
    const starts = await lookup(since);
    const ends = await lookup(until);
    return bounds.map(({ partition, low, high }) => {
      const end = Math.min(ends.get(partition) ?? high, high);
      const start = Math.min(
        Math.max(starts.get(partition) ?? (since === undefined ? low : high), low),
        end,
      );
      return { partition, start, end };
    });
  } finally {
    await admin.disconnect();
  }
}

/** Produce `selected` in order, in chunks, recording where each one landed. */
async function produce(
  kafka: Kafka,
  options: ReplayOptions,
  selected: Array<{ partition: number; message: KafkaMessage; report: ReplayedMessage }>,
): Promise<void> {
  const { fromTopic, toTopic } = options;
  const admin = kafka.admin();
  await admin.connect();
  const metadata = await admin.fetchTopicMetadata({ topics: [toTopic] })
    .finally(() => admin.disconnect());
  const partitionMetadata = metadata.topics[0].partitions;
  const partitioner = Partitioners.DefaultPartitioner();
  // Idempotent: a retried request cannot write a message twice.
  const producer: Producer = kafka.producer({
    idempotent: true,
    maxInFlightRequests: 1,
    allowAutoTopicCreation: false,
  });
  await producer.connect();
  let produced = 0;
  try {
    for (let i = 0; i < selected.length;) {
      const chunk: typeof selected = [];
      let bytes = 0;
      while (i < selected.length && chunk.length < CHUNK_MESSAGES && bytes < CHUNK_BYTES) {
        bytes += selected[i].report.payloadBytes;
        chunk.push(selected[i++]);
      }
      const messages = chunk.map(({ partition, message }) => {
        const out = replayMessage(fromTopic, partition, message);
        return {
          ...out,
          partition: partitioner({ topic: toTopic, partitionMetadata, message: out }),
        };
      });
      const results = await producer.send({ topic: toTopic, acks: -1, messages });
      // Within a request, a partition's messages are written in order from its base offset.
      const next = new Map(
        results.map((r) => [r.partition, toNumber(r.baseOffset ?? "", "base offset")]),
      );
      chunk.forEach(({ report }, j) => {
        const partition = messages[j].partition;
        const offset = next.get(partition) ?? -1;
        next.set(partition, offset + 1);
        report.target = { partition, offset };
      });
      produced += chunk.length;
    }
  } catch (error) {
    const first = selected[produced].report;
    throw new ReplayProduceError(
      `produced ${produced} of ${selected.length} message(s) to ${toTopic}, then failed at ` +
        `${fromTopic}/${first.partition}@${first.offset}: ${(error as Error).message}`,
      { cause: error },
    );
  } finally {
    await producer.disconnect();
  }
}

/**
 * Replay the messages `options` select from `options.fromTopic` into `options.toTopic` (or only
 * report them, with `dryRun`).
 *
 * @throws {TypeError} / {RangeError} when an option is invalid (nothing is read).
 * @throws {UnknownTopicError} when a topic or the partition does not exist.
 * @throws {OffsetOutOfRangeError} when explicit offsets are outside the partition's log.
 * @throws {AdminTimeoutError} when the broker stops delivering while reading.
 * @throws {ReplayProduceError} when producing fails; it says how many were produced.
 * @example
 * ```ts
 * const report = await replay(kafka, {
 *   fromTopic: "async_task.dlq",
 *   toTopic: "async_task",
 *   since: Date.parse("2024-05-01T12:00:00Z"),
 *   handler: "notify_webhook",
 *   dryRun: true,
 * });
 * console.log(report.messages.map((m) => `${m.partition}@${m.offset}`));
 * ```
 */
export async function replay(kafka: Kafka, options: ReplayOptions): Promise<ReplayReport> {
  const { limit, handlerHeader } = checkReplayOptions(options);
  const ranges = await resolveRanges(kafka, options);
  const kept = new Map<number, Array<{ partition: number; message: KafkaMessage }>>(
    ranges.map((r) => [r.partition, []]),
  );
  let read = 0;
  let skipped = 0;
  await readRanges(kafka, {
    topic: options.fromTopic,
    ranges,
    idleTimeoutMs: options.idleTimeoutMs,
    groupPrefix: "task-runner-replay",
    onMessage: (partition, message) => {
      read++;
      const handler = handlerOf(message.headers, handlerHeader);
      if (options.handler !== undefined && handler !== options.handler) {
        skipped++;
        return false;
      }
      const list = kept.get(partition)!;
      list.push({ partition, message });
      // One past the limit: enough to know that the limit cut something off, and where.
      return list.length > limit;
    },
  });

  const all = [...kept.values()].flat(); // ranges, hence kept, are by partition; each by offset
  const selected = all.slice(0, limit).map((m) => ({
    ...m,
    report: describe(m.partition, m.message, handlerHeader),
  }));
  const resumeAt = new Map<number, number>();
  for (const { partition, message } of all.slice(limit)) {
    if (!resumeAt.has(partition)) resumeAt.set(partition, toNumber(message.offset, "offset"));
  }
  if (!options.dryRun && selected.length > 0) await produce(kafka, options, selected);
  return {
    fromTopic: options.fromTopic,
    toTopic: options.toTopic,
    dryRun: options.dryRun ?? false,
    handler: options.handler ?? null,
    limit,
    ranges: ranges.map((r) => ({ ...r, resumeAt: resumeAt.get(r.partition) ?? null })),
    read,
    skipped,
    produced: options.dryRun ? 0 : selected.length,
    limitReached: all.length > limit,
    messages: selected.map((m) => m.report),
  };
}
