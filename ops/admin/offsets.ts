/**
 * The `offsets` admin command: which offset each partition had at a point in time.
 *
 * Kafka's ListOffsets-by-timestamp (librdkafka's `offsetsForTimes`, kafkajs's
 * `fetchTopicOffsetsByTimestamp`) answers, per partition, the FIRST offset whose timestamp is at
 * or after the time. It is not an exact-match lookup (the PHP notes read it as one, and so
 * passed a message's own timestamp to find that message): any time works, and the answer is
 * where a consumer would start to read everything from that moment on. When no message is that
 * recent, the answer is the end offset, the offset the next message will get.
 * @module
 */
import type { Admin } from "kafkajs";
import { partitionBounds, requireTopic, toNumber } from "./log_bounds.ts";

/** The answer for one partition. */
export interface TimestampOffset {
  /** Partition number. */
  partition: number;
  /** First offset whose timestamp is at or after the time; the end offset when there is none. */
  offset: number;
  /** First offset in the log. */
  low: number;
  /** End offset: the offset the next message will get. */
  high: number;
  /** True when no message is at or after the time (`offset` is then the end offset). */
  pastEnd: boolean;
}

/** What to look up. */
export interface OffsetsForTimestampQuery {
  /** Topic name. */
  topic: string;
  /** Time in ms since the epoch. */
  timestamp: number;
}

/**
 * Per partition of `query.topic`: the first offset whose timestamp is at or after
 * `query.timestamp`, or the end offset when no message is that recent.
 *
 * @throws {UnknownTopicError} when the topic does not exist.
 * @throws {RangeError} when the timestamp is not an integer >= 0.
 * @example
 * ```ts
 * const hourAgo = Date.now() - 3600_000;
 * const rows = await offsetsForTimestamp(admin, { topic: "async_task", timestamp: hourAgo });
 * ```
 */
export async function offsetsForTimestamp(
  admin: Admin,
  query: OffsetsForTimestampQuery,
): Promise<TimestampOffset[]> {
  const { topic, timestamp } = query;
  if (!Number.isSafeInteger(timestamp) || timestamp < 0) {
    throw new RangeError(
      'Cannot look up offsets: "timestamp" must be ms since the epoch (an integer >= 0), ' +
        `got ${timestamp}`,
    );
  }
  await requireTopic(admin, topic);
  const found = await admin.fetchTopicOffsetsByTimestamp(topic, timestamp);
  // Bounds asked after the lookup: an end offset never moves back, so it is >= every answer.
  const bounds = await partitionBounds(admin, topic, { known: true });
  const byPartition = new Map(found.map((p) => [p.partition, p.offset]));
  return bounds.map(({ partition, low, high }) => {
    const raw = byPartition.get(partition);
    if (raw === undefined) throw new Error(`${topic}/${partition}: the broker gave no offset`);
    const offset = toNumber(raw, `offset of ${topic}/${partition}`);
    return { partition, offset, low, high, pastEnd: offset >= high };
  });
}
