/**
 * The kafkajs side of consuming: group membership, batches in, offsets out, and staying in
 * the group (restarts after errors kafkajs gives up on, readiness).
 *
 * Batches go to a {@link BatchSink} (the dispatcher), which decides what starts and what is
 * committed. When the cap is full the sink waits for a slot inside the batch, so kafkajs
 * fetches nothing more; we do not use kafkajs's `pause()` for this, because kafkajs sleeps
 * `maxWaitTime` whenever every partition is paused (the PHP daemon's fixed sleep again).
 * `pause()` is used only to stop fetching while draining.
 * @module
 */
import type { Admin, Consumer, Kafka, KafkaMessage } from "kafkajs";
import type { BatchControl, PartitionOffsets } from "../dispatch/job.ts";
import { logger } from "../report/logging.ts";
import type { LedgerCommit } from "./partition_ledger.ts";
import type { TopicPartition } from "./topic_partition.ts";

/** Where batches go (the dispatcher). */
export interface BatchSink {
  ingest(tp: TopicPartition, messages: KafkaMessage[], control: BatchControl): Promise<void>;
  /** The partitions this member holds now (after a rebalance). */
  retain(assigned: readonly TopicPartition[]): void;
}

/** Options of a {@link TaskConsumer}. */
export interface TaskConsumerOptions {
  /** Topic to consume. */
  topic: string;
  /** Consumer group id. */
  groupId: string;
  /** A kafkajs admin client, connected by the caller, for the group's committed offsets. */
  admin: Admin;
  /** Broker-side long poll when there is nothing to fetch, in ms. @default 500 */
  maxWaitTimeMs?: number;
  /** Group session timeout, in ms; heartbeats go at a tenth of it. @default 30000 */
  sessionTimeoutMs?: number;
  /** Restarts in a row, after errors kafkajs does not restart from, before giving up. @default 5 */
  maxRestarts?: number;
  /** Delay before the first restart; it doubles with each one in a row. @default 1000 */
  restartDelayMs?: number;
}

/**
 * Consumes the task topic as a group member and implements the group's offsets for the
 * dispatcher. `start()` / `stop()` are the lifecycle; {@link fatal} resolves if the member
 * cannot be kept in the group (the process should then exit non-zero).
 */
export class TaskConsumer implements PartitionOffsets {
  readonly #topic: string;
  readonly #groupId: string;
  readonly #admin: Admin;
  readonly #consumer: Consumer;
  readonly #maxRestarts: number;
  readonly #restartDelayMs: number;
  readonly #fatal = Promise.withResolvers<Error>();
  readonly #log = logger("runner");
  #sink: BatchSink | null = null;
  #connected = false;
  #assigned = 0;
  #restarts = 0;
  #stopped: Promise<void> | null = null;

  constructor(kafka: Kafka, options: TaskConsumerOptions) {
    const sessionTimeout = options.sessionTimeoutMs ?? 30_000;
    this.#topic = options.topic;
    this.#groupId = options.groupId;
    this.#admin = options.admin;
    this.#maxRestarts = options.maxRestarts ?? 5;
    this.#restartDelayMs = options.restartDelayMs ?? 1000;
    this.#consumer = kafka.consumer({
      groupId: options.groupId,
      maxWaitTimeInMs: options.maxWaitTimeMs ?? 500,
      sessionTimeout,
      heartbeatInterval: Math.max(500, Math.floor(sessionTimeout / 10)),
      allowAutoTopicCreation: false,
    });
    this.#watch();
  }

  /** Resolves with the error if consuming stopped for good. */
  get fatal(): Promise<Error> {
    return this.#fatal.promise;
  }

  /** Null when ready (connected, holding partitions), else why not. */
  readiness(): string | null {
    if (this.#stopped) return "stopping";
    if (!this.#connected) return "not connected to Kafka";
    if (this.#assigned === 0) return "no partitions assigned to this member";
    return null;
  }

  /** Join the group and feed every batch to `sink`. Resolves once consuming has begun. */
  async start(sink: BatchSink): Promise<void> {
    this.#sink = sink;
    await this.#run();
  }

  async #run(): Promise<void> {
    const sink = this.#sink!;
    await this.#consumer.connect();
    await this.#consumer.subscribe({ topics: [this.#topic], fromBeginning: true });
    await this.#consumer.run({
      autoCommit: false,
      eachBatchAutoResolve: false,
      eachBatch: ({ batch, isRunning, isStale, heartbeat, resolveOffset }) =>
        sink.ingest(batch, batch.messages, {
          active: () => isRunning() && !isStale(),
          heartbeat,
          resolveOffset,
        }),
    });
  }

  /** The group's committed offset and metadata for a partition ("-1" when none). */
  async committed(tp: TopicPartition): Promise<{ offset: string; metadata: string | null }> {
    const [offsets] = await this.#admin.fetchOffsets({
      groupId: this.#groupId,
      topics: [tp.topic],
    });
    const entry = offsets?.partitions.find((p) => p.partition === tp.partition);
    return { offset: entry?.offset ?? "-1", metadata: entry?.metadata ?? null };
  }

  /** Commit `commit` for one partition (fenced by the group generation). */
  async commit(tp: TopicPartition, commit: LedgerCommit): Promise<void> {
    await this.#consumer.commitOffsets([{
      topic: tp.topic,
      partition: tp.partition,
      offset: commit.offset,
      metadata: commit.metadata === "" ? null : commit.metadata,
    }]);
  }

  /** Stop fetching, staying in the group (so that commits still count) while draining. */
  pause(): void {
    this.#consumer.pause([{ topic: this.#topic }]);
  }

  /** Leave the group and close connections. Idempotent. */
  stop(): Promise<void> {
    this.#stopped ??= this.#consumer.disconnect();
    return this.#stopped;
  }

  #watch(): void {
    const consumer = this.#consumer;
    const { GROUP_JOIN, CONNECT, DISCONNECT, CRASH } = consumer.events;
    consumer.on(CONNECT, () => (this.#connected = true));
    consumer.on(DISCONNECT, () => {
      this.#connected = false;
      this.#assigned = 0;
    });
    consumer.on(GROUP_JOIN, ({ payload }) => {
      const assigned: TopicPartition[] = [];
      for (const [topic, partitions] of Object.entries(payload.memberAssignment)) {
        for (const partition of partitions) assigned.push({ topic, partition });
      }
      this.#assigned = assigned.length;
      this.#restarts = 0;
      this.#sink?.retain(assigned);
      this.#log.info("Joined group {groupId}: {assignment}", {
        groupId: payload.groupId,
        assignment: payload.memberAssignment,
      });
    });
    consumer.on(CRASH, ({ payload }) => this.#crashed(payload.error, payload.restart));
  }

  /**
   * kafkajs does not restart itself on errors it deems final, such as "Failed to find group
   * coordinator" while a broker restarts: restart with backoff, a few times in a row.
   */
  #crashed(error: Error, restartedByKafkajs: boolean): void {
    this.#assigned = 0;
    if (restartedByKafkajs) {
      this.#log.warn("Consumer crashed and kafkajs restarts it: {error}", {
        error: error.message,
      });
      return;
    }
    if (this.#stopped) return;
    if (this.#restarts >= this.#maxRestarts) {
      this.#log.error("Consumer crashed for good after {max} restarts: {error}", {
        error: error.message,
        max: this.#maxRestarts,
      });
      this.#fatal.resolve(error);
      return;
    }
    const delayMs = this.#restartDelayMs * 2 ** this.#restarts++;
    this.#log.warn("Consumer stopped on {error}; restarting it in {delayMs} ms ({n} of {max})", {
      error: error.message,
      delayMs,
      n: this.#restarts,
      max: this.#maxRestarts,
    });
    setTimeout(async () => {
      if (this.#stopped) return;
      try {
        await this.#consumer.disconnect();
        await this.#run();
      } catch (e) {
        this.#log.error("Consumer restart failed: {error}", { error: String(e) });
        this.#fatal.resolve(e as Error);
      }
    }, delayMs);
  }
}
