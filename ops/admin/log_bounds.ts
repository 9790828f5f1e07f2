/**
 * Where each partition's log starts and ends, shared by the admin commands.
 * @module
 */
import type { Admin } from "kafkajs";
import { UnknownTopicError } from "../../runner/errors.ts";

/** The offsets that bound one partition's log. */
export interface PartitionBounds {
  /** Partition number. */
  partition: number;
  /** First offset still in the log (older messages were deleted by retention). */
  low: number;
  /** End offset: the offset the next message written will get (one past the last message). */
  high: number;
}

/**
 * Parse an offset or timestamp that kafkajs gives as a decimal string.
 * @throws {RangeError} when it is not a safe integer (an int64 past 2^53 is not exact in JS).
 */
export function toNumber(value: string, what: string): number {
  const n = Number(value);
  if (!/^-?\d+$/.test(value) || !Number.isSafeInteger(n)) {
    throw new RangeError(`${what} must be a safe integer, got ${JSON.stringify(value)}`);
  }
  return n;
}

/**
 * Throw unless `topic` exists. Uses the topic list, never a metadata request for the topic
 * itself: with `auto.create.topics.enable=true` that request would create a mistyped topic.
 * @throws {UnknownTopicError} naming the topic and how to list the ones that exist.
 */
export async function requireTopic(admin: Admin, topic: string): Promise<void> {
  const topics = await admin.listTopics();
  if (!topics.includes(topic)) {
    throw new UnknownTopicError(
      `topic "${topic}" does not exist on this cluster (list them with the \`topics\` command)`,
    );
  }
}

/** Options of {@link partitionBounds}. */
export interface PartitionBoundsOptions {
  /** The caller has just checked that the topic exists: no {@link requireTopic}. @default false */
  known?: boolean;
}

/**
 * The log bounds of every partition of `topic`, by partition number.
 * @throws {UnknownTopicError} when the topic does not exist.
 */
export async function partitionBounds(
  admin: Admin,
  topic: string,
  options: PartitionBoundsOptions = {},
): Promise<PartitionBounds[]> {
  if (!options.known) await requireTopic(admin, topic);
  const offsets = await admin.fetchTopicOffsets(topic);
  return offsets
    .map((p) => ({
      partition: p.partition,
      low: toNumber(p.low, `start offset of ${topic}/${p.partition}`),
      high: toNumber(p.high, `end offset of ${topic}/${p.partition}`),
    }))
    .sort((a, b) => a.partition - b.partition);
}
