/**
 * The kafkajs side of consuming: group membership, batches in, commits out.
 *
 * Batches go to the {@link Dispatcher}, which decides what starts and what is committed. Commits
 * carry the dispatcher's metadata. When the cap is full the dispatcher waits for a slot inside
 * the batch, so kafkajs fetches nothing more; we do not use kafkajs's `pause()` for this,
 * because kafkajs sleeps `maxWaitTime` whenever every partition is paused (the PHP daemon's
 * fixed sleep again). `pause()` is used only to stop fetching while draining.
 * @module
 */
import type { Consumer, Kafka } from "kafkajs";
import { Dispatcher } from "../dispatch/dispatcher.ts";
import type { LedgerCommit } from "./partition_ledger.ts";

/** Options of a {@link TaskConsumer}. */
export interface TaskConsumerOptions {
  /** Topic to consume. */
  topic: string;
  /** Consumer group id. */
  groupId: string;
  /** Broker-side long poll when there is nothing to fetch, in ms. @default 500 */
  maxWaitTimeMs?: number;
  /** Group session timeout, in ms; heartbeats go at a tenth of it. @default 30000 */
  sessionTimeoutMs?: number;
}

/** Consumes the task topic as a group member. `start()` / `disconnect()` are the lifecycle. */
export class TaskConsumer {
  readonly #options: TaskConsumerOptions;
  readonly #consumer: Consumer;

  constructor(kafka: Kafka, options: TaskConsumerOptions) {
    this.#options = options;
    this.#consumer = kafka.consumer({
      groupId: options.groupId,
      maxWaitTimeInMs: options.maxWaitTimeMs ?? 500,
      sessionTimeout: options.sessionTimeoutMs ?? 30_000,
      heartbeatInterval: Math.max(500, Math.floor((options.sessionTimeoutMs ?? 30_000) / 10)),
      allowAutoTopicCreation: false,
    });
  }

  /** The underlying kafkajs consumer, for instrumentation events. */
  get consumer(): Consumer {
    return this.#consumer;
  }

  /** Join the group and feed every batch to `dispatcher`. Resolves once consuming has begun. */
  async start(dispatcher: Dispatcher): Promise<void> {
    this.#consumer.on(this.#consumer.events.GROUP_JOIN, ({ payload }) => {
      const assigned = new Set<string>();
      for (const [topic, partitions] of Object.entries(payload.memberAssignment)) {
        for (const p of partitions) assigned.add(Dispatcher.partitionKey(topic, p));
      }
      dispatcher.retain(assigned);
    });
    await this.#run(dispatcher);
  }

  /**
   * Start consuming again after kafkajs gave up (it does not restart itself on errors it
   * deems final, such as "Failed to find group coordinator" while a broker restarts).
   */
  async restart(dispatcher: Dispatcher): Promise<void> {
    await this.#consumer.disconnect();
    await this.#run(dispatcher);
  }

  async #run(dispatcher: Dispatcher): Promise<void> {
    await this.#consumer.connect();
    await this.#consumer.subscribe({ topics: [this.#options.topic], fromBeginning: true });
    await this.#consumer.run({
      autoCommit: false,
      eachBatchAutoResolve: false,
      eachBatch: ({ batch, isRunning, isStale, heartbeat, resolveOffset }) =>
        dispatcher.ingest(batch.topic, batch.partition, batch.messages, {
          active: () => isRunning() && !isStale(),
          heartbeat,
          resolveOffset,
        }),
    });
  }

  /** Commit `commit` for one partition (fenced by the group generation). */
  async commit(topic: string, partition: number, commit: LedgerCommit): Promise<void> {
    await this.#consumer.commitOffsets([{
      topic,
      partition,
      offset: commit.offset,
      metadata: commit.metadata === "" ? null : commit.metadata,
    }]);
  }

  /** Stop fetching, staying in the group (so that commits still count) while draining. */
  pause(): void {
    this.#consumer.pause([{ topic: this.#options.topic }]);
  }

  /** Leave the group and close connections. */
  async disconnect(): Promise<void> {
    await this.#consumer.disconnect();
  }
}
