/**
 * The task consumer: reads batches, holds the cap, commits before dispatch.
 *
 * For each batch it takes messages in offset order while slots are free, commits the offset
 * after the last of them (one commit for everything that starts now), then hands them to
 * `dispatch`. When the cap is full it first starts what it has, then waits for a slot: the
 * wait is an event from the pool, and while it waits kafkajs fetches nothing more. It does
 * not use kafkajs's `pause()` for this, because kafkajs sleeps `maxWaitTime` (5 s by default)
 * whenever every partition is paused: the PHP daemon's fixed sleep again.
 * @module
 */
import type { Consumer, EachBatchPayload, Kafka, KafkaMessage } from "kafkajs";
import { TaskRejectedError } from "./errors.ts";
import type { Pool } from "./pool.ts";

/** A message that holds a slot and whose offset is committed: it must start now. */
export interface Dispatch {
  topic: string;
  partition: number;
  message: KafkaMessage;
  /** performance.now() when its batch reached the runner. */
  fetchedAt: number;
  /** performance.now() when it got its slot (it waits from `fetchedAt` while the cap is full). */
  readyAt: number;
}

/** A message refused before it could start, with the reason. */
export interface Rejection {
  topic: string;
  partition: number;
  message: KafkaMessage;
  error: TaskRejectedError;
}

/** Options of a {@link TaskConsumer}. */
export interface TaskConsumerOptions {
  /** Topic to consume. */
  topic: string;
  /** Consumer group id. */
  groupId: string;
  /** The cap. */
  pool: Pool;
  /**
   * Checks a message before a slot is taken for it; throws {@link TaskRejectedError} to reject.
   * Returns what `dispatch` will need.
   */
  check: (topic: string, partition: number, message: KafkaMessage) => unknown;
  /** Starts a committed task; called synchronously after the commit. */
  dispatch: (item: Dispatch, checked: unknown) => void;
  /** Logs a rejection; called after the rejected message's offset is committed. */
  reject: (rejection: Rejection) => void;
  /** Interval of heartbeats while waiting for a slot. @default 3000 */
  heartbeatIntervalMs?: number;
}

/** Consumes the task topic as a group member. `start()` / `stop()` are the lifecycle. */
export class TaskConsumer {
  readonly #options: TaskConsumerOptions;
  readonly #consumer: Consumer;
  #stopping = false;
  #wake = new Set<() => void>();
  #waiting = false;

  constructor(kafka: Kafka, options: TaskConsumerOptions) {
    this.#options = options;
    this.#consumer = kafka.consumer({
      groupId: options.groupId,
      // Default 5 s; it is the broker-side long poll when idle, not a sleep of ours.
      maxWaitTimeInMs: 500,
      allowAutoTopicCreation: false,
    });
  }

  /** True while the consumer waits for a free slot (fetching is held back). */
  get waitingForSlot(): boolean {
    return this.#waiting;
  }

  /** The kafkajs consumer's instrumentation events (group join, crash, ...). */
  get events(): Consumer["events"] {
    return this.#consumer.events;
  }

  /** The underlying kafkajs consumer, for instrumentation listeners. */
  get consumer(): Consumer {
    return this.#consumer;
  }

  /** Join the group and start consuming. Resolves once consuming has begun. */
  async start(): Promise<void> {
    await this.#consumer.connect();
    await this.#consumer.subscribe({ topics: [this.#options.topic], fromBeginning: true });
    await this.#consumer.run({
      autoCommit: false,
      eachBatchAutoResolve: false,
      eachBatch: (payload) => this.#eachBatch(payload),
    });
  }

  /** Stop fetching and leave the group. Tasks already started are not touched. */
  async stop(): Promise<void> {
    this.#stopping = true;
    for (const wake of this.#wake) wake();
    await this.#consumer.disconnect();
  }

  async #eachBatch(payload: EachBatchPayload): Promise<void> {
    const { batch, isRunning, isStale } = payload;
    const { pool, check, dispatch, reject } = this.#options;
    const fetchedAt = performance.now();
    const ready: Array<{ item: Dispatch; checked: unknown }> = [];
    const rejected: Rejection[] = [];
    let last: string | null = null;

    const flush = async () => {
      if (last === null) return;
      const offset = last;
      try {
        await this.#consumer.commitOffsets([
          {
            topic: batch.topic,
            partition: batch.partition,
            offset: (BigInt(offset) + 1n).toString(),
          },
        ]);
      } catch (error) {
        for (const _ of ready) pool.release();
        throw error; // kafkajs re-fetches from the last resolved offset: nothing uncommitted starts
      }
      payload.resolveOffset(offset);
      last = null;
      for (const r of rejected.splice(0)) reject(r);
      for (const { item, checked } of ready.splice(0)) dispatch(item, checked);
    };

    for (const message of batch.messages) {
      if (this.#stopping || !isRunning() || isStale()) break;
      const where = { topic: batch.topic, partition: batch.partition, message };
      let checked: unknown;
      try {
        checked = check(batch.topic, batch.partition, message);
      } catch (error) {
        if (!(error instanceof TaskRejectedError)) throw error;
        rejected.push({ ...where, error });
        last = message.offset;
        continue;
      }
      if (!pool.tryAcquire()) {
        await flush();
        if (!(await this.#waitForSlot(payload))) break;
      }
      ready.push({ item: { ...where, fetchedAt, readyAt: performance.now() }, checked });
      last = message.offset;
    }
    await flush();
  }

  /**
   * Wait until a slot is free and take it, heartbeating meanwhile so the group keeps us.
   * Resolves false when the consumer is stopping; rejects if the group is rebalancing.
   */
  #waitForSlot(payload: EachBatchPayload): Promise<boolean> {
    const { pool } = this.#options;
    this.#waiting = true;
    return new Promise<boolean>((resolve, reject) => {
      const finish = () => {
        this.#waiting = false;
        this.#wake.delete(onStop);
        removeListener();
        clearInterval(beat);
      };
      const onFree = () => {
        if (pool.tryAcquire()) {
          finish();
          resolve(true);
        }
      };
      const onStop = () => {
        finish();
        resolve(false);
      };
      const removeListener = pool.onSlotFree(onFree);
      this.#wake.add(onStop);
      const beat = setInterval(() => {
        payload.heartbeat().catch((error) => {
          finish();
          reject(error);
        });
      }, this.#options.heartbeatIntervalMs ?? 3000);
      if (this.#stopping) onStop();
    });
  }
}
