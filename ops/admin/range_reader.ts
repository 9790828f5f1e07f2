/**
 * Reading offset ranges of a topic without touching any real consumer group, for the admin
 * commands that read messages (`inspect`, `replay`).
 *
 * kafkajs has no `assign()`: every consumer is a group member. So this joins a throwaway group
 * (`<prefix>-<uuid>`) whose own partition assigner gives its only member just the partitions
 * asked for, seeks each to its range's start, never commits, and deletes the group afterwards.
 * The runner's group and its committed offsets are never read or written. Each range ends at an
 * offset fixed by the caller, so messages written meanwhile (even by the caller, into the same
 * topic) are never chased.
 * @module
 */
import { Buffer } from "node:buffer";
import { AssignerProtocol, type Kafka, type KafkaMessage, type PartitionAssigner } from "kafkajs";
import { AdminTimeoutError } from "../../runner/errors.ts";
import { toNumber } from "./log_bounds.ts";

/** Offsets `start` (inclusive) to `end` (exclusive) of one partition. */
export interface OffsetRange {
  /** Partition number. */
  partition: number;
  /** First offset to read. */
  start: number;
  /** One past the last offset to read; `start === end` is an empty range. */
  end: number;
}

/** What {@link readRanges} reads and what it does with each message. */
export interface ReadRangesRequest {
  /** Topic name (it must exist; the consumer never creates topics). */
  topic: string;
  /** One range per partition; partitions not listed are not read. */
  ranges: OffsetRange[];
  /**
   * Called with each message inside a range, in offset order within a partition (partitions
   * interleave). Return true when that partition needs nothing more: reading it stops there.
   */
  onMessage(partition: number, message: KafkaMessage): boolean | void;
  /**
   * Give up with an {@link AdminTimeoutError} when the broker delivers nothing for this long,
   * in ms (joining the group included). @default 15000
   */
  idleTimeoutMs?: number;
  /** Prefix of the throwaway consumer group id. @default "task-runner-read" */
  groupPrefix?: string;
}

const ASSIGNER_NAME = "TaskRunnerFixedAssignment";

/** An assigner that hands the group's first member `partitions` of `topic`, nothing else. */
function fixedAssigner(topic: string, partitions: number[]): PartitionAssigner {
  return () => ({
    name: ASSIGNER_NAME,
    version: 0,
    assign({ members }) {
      return Promise.resolve(members.map(({ memberId }, i) => ({
        memberId,
        memberAssignment: AssignerProtocol.MemberAssignment.encode({
          version: 0,
          assignment: i === 0 ? { [topic]: partitions } : {},
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

/**
 * Read `request.ranges` of `request.topic`, handing each message to `request.onMessage`.
 * Resolves when every range has been read to its end (or stopped by `onMessage`). An offset
 * with no message (removed by compaction, or a transaction marker) is skipped, also at the end
 * of a range.
 *
 * @throws {AdminTimeoutError} when the broker delivers nothing for `idleTimeoutMs`.
 * @throws {RangeError} when a range is not made of integers with 0 <= start <= end.
 * @example
 * ```ts
 * const seen: string[] = [];
 * await readRanges(kafka, {
 *   topic: "async_task",
 *   ranges: [{ partition: 0, start: 10, end: 20 }],
 *   onMessage: (partition, message) => void seen.push(`${partition}@${message.offset}`),
 * });
 * ```
 */
export async function readRanges(kafka: Kafka, request: ReadRangesRequest): Promise<void> {
  const { topic, onMessage } = request;
  const idleTimeoutMs = request.idleTimeoutMs ?? 15_000;
  if (!Number.isSafeInteger(idleTimeoutMs) || idleTimeoutMs <= 0) {
    throw new RangeError(
      `Cannot read: "idleTimeoutMs" must be a positive integer, got ${idleTimeoutMs}`,
    );
  }
  for (const r of request.ranges) {
    if (
      ![r.partition, r.start, r.end].every(Number.isSafeInteger) || r.start < 0 || r.start > r.end
    ) {
      throw new RangeError(
        `Cannot read: a range must have integers 0 <= start <= end, got ${JSON.stringify(r)}`,
      );
    }
  }
  /** Ranges still being read, with the next offset each expects. */
  const pending = new Map(
    request.ranges.filter((r) => r.start < r.end).map((
      r,
    ) => [r.partition, { ...r, next: r.start }]),
  );
  if (pending.size === 0) return;

  const groupId = `${request.groupPrefix ?? "task-runner-read"}-${crypto.randomUUID()}`;
  const consumer = kafka.consumer({
    groupId,
    partitionAssigners: [fixedAssigner(topic, [...pending.keys()].sort((a, b) => a - b))],
    allowAutoTopicCreation: false,
    maxWaitTimeInMs: 250,
  });
  const done = Promise.withResolvers<void>();
  // Settled into a value at once, so a crash during connect is not an unhandled rejection.
  const outcome = done.promise.then(() => undefined, (error: Error) => error);
  const finish = (partition: number) => {
    pending.delete(partition);
    if (pending.size === 0) done.resolve();
  };
  let timer: ReturnType<typeof setTimeout> | undefined;
  const progress = () => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      const where = [...pending.values()].map((r) => `${r.partition}@${r.next} (end ${r.end})`);
      done.reject(
        new AdminTimeoutError(
          `the broker delivered nothing from ${topic} for ${idleTimeoutMs} ms; still to read: ` +
            where.join(", "),
        ),
      );
    }, idleTimeoutMs);
  };
  let joined = false;
  const listeners = [
    // Seek on every join, before the first fetch: kafkajs restarts a consumer that crashed on
    // a retriable error (e.g. no group coordinator yet on a new cluster) with a new group
    // state, and the restarted one resumes where this one got to.
    consumer.on(consumer.events.GROUP_JOIN, () => {
      joined = true;
      try {
        for (const { partition, next } of pending.values()) {
          consumer.seek({ topic, partition, offset: String(next) });
        }
      } catch (error) {
        done.reject(error);
      }
    }),
    consumer.on(consumer.events.CRASH, ({ payload }) => {
      if (!payload.restart) done.reject(payload.error);
    }),
    // Also sent for a batch of only transaction markers or aborted messages, which eachBatch
    // never sees: a range whose last offsets hold no message still ends.
    consumer.on(consumer.events.END_BATCH_PROCESS, ({ payload }) => {
      progress();
      const range = pending.get(payload.partition);
      if (payload.topic !== topic || range === undefined) return;
      if (toNumber(payload.lastOffset, "last offset") >= range.end - 1) finish(payload.partition);
    }),
  ];
  let failure: Error | undefined;
  try {
    progress();
    await consumer.connect();
    // From the beginning: should a fetch come before a seek, it reads from the log start, which
    // is at or before every range's start, and the expected offsets filter what is before.
    await consumer.subscribe({ topics: [topic], fromBeginning: true });
    await consumer.run({
      autoCommit: false,
      eachBatch: ({ batch }) => {
        if (batch.topic !== topic) return Promise.resolve();
        for (const message of batch.messages) {
          const range = pending.get(batch.partition);
          if (range === undefined) break;
          const offset = toNumber(message.offset, "offset");
          if (offset < range.next) continue;
          if (offset >= range.end) {
            finish(batch.partition);
            break;
          }
          range.next = offset + 1;
          let enough: boolean | void;
          try {
            enough = onMessage(batch.partition, message);
          } catch (error) {
            done.reject(error);
            break;
          }
          if (enough === true || range.next >= range.end) finish(batch.partition);
        }
        return Promise.resolve();
      },
    });
    failure = await outcome;
    if (failure !== undefined) throw failure;
  } catch (error) {
    failure = error as Error;
    throw error;
  } finally {
    clearTimeout(timer);
    for (const remove of listeners) remove();
    await consumer.disconnect();
    if (joined) await deleteGroup(kafka, groupId, failure);
  }
}

/**
 * Delete the throwaway group. When reading already failed, a failure here must not hide that
 * error: both are thrown together.
 */
async function deleteGroup(kafka: Kafka, groupId: string, failure: Error | undefined) {
  const admin = kafka.admin();
  try {
    await admin.connect();
    await admin.deleteGroups([groupId]);
  } catch (error) {
    if (failure === undefined) throw error;
    const e = error as Error;
    throw new AggregateError(
      [failure, e],
      `${failure.name}: ${failure.message} (and the throwaway group ${groupId} was not deleted: ` +
        `${e.name}: ${e.message})`,
    );
  } finally {
    await admin.disconnect();
  }
}
