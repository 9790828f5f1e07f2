/**
 * The runner: wires the consumer, the dispatcher, the cap and the sandbox; logs one outcome
 * per task; drains on stop.
 * @module
 */
import type { Admin, Kafka, Producer } from "kafkajs";
import type { RunnerConfig } from "./config.ts";
import { TaskConsumer } from "./intake/consumer.ts";
import { type DeliveryPolicy, deliveryPolicy } from "./dispatch/delivery_policy.ts";
import { Dispatcher, type DispatcherHooks } from "./dispatch/dispatcher.ts";
import type { GrantsTable } from "./function_config.ts";
import { createProducer, ensureTopic } from "./kafka/client.ts";
import { logger } from "./report/logging.ts";
import { Pool } from "./dispatch/concurrency_cap.ts";
import { Publisher } from "./report/publisher.ts";
import { TaskExecutor } from "./sandbox/executor.ts";
import { decodeTask } from "./intake/task_decoder.ts";
import { type TaskObserver, TaskReporter } from "./report/task_reporter.ts";

export type { Outcome, TaskObserver } from "./report/task_reporter.ts";

/** The part of the configuration a runner uses. */
export type RunnerSettings = Omit<
  RunnerConfig,
  "brokers" | "localBrokerPort" | "logLevel" | "logFormat" | "metricsPort"
>;

/** Options of a {@link Runner}. */
export interface RunnerOptions {
  /** A kafkajs client for the brokers to use. */
  kafka: Kafka;
  /** Validated settings. */
  settings: RunnerSettings;
  /** Per-function grants and delivery settings. @default none */
  grants?: GrantsTable;
  /** Told of outcomes and spawn failures. @default none */
  observer?: TaskObserver;
}

/** Restarts of a consumer that kafkajs gave up on, in a row, before the runner exits 1. */
const MAX_RESTARTS = 5;

/** A long-running task runner. */
export class Runner {
  readonly #settings: RunnerSettings;
  readonly #grants: GrantsTable;
  readonly #policies = new Map<string, DeliveryPolicy>();
  readonly #kafka: Kafka;
  readonly #pool: Pool;
  readonly #consumer: TaskConsumer;
  readonly #dispatcher: Dispatcher;
  /** Where jobs get their processes and run. */
  readonly #executor: TaskExecutor;
  readonly #log = logger("runner");
  readonly #observer: TaskObserver | undefined;
  readonly #fatal = Promise.withResolvers<Error>();
  #assigned = 0;
  #restarts = 0;
  #connected = false;
  #admin: Admin | null = null;
  #producer: Producer | null = null;
  #reporter: TaskReporter | null = null;
  #started: Promise<void> | null = null;
  #stopped: Promise<void> | null = null;

  constructor(options: RunnerOptions) {
    this.#settings = options.settings;
    this.#grants = options.grants ?? new Map();
    this.#kafka = options.kafka;
    this.#observer = options.observer;
    this.#pool = new Pool(options.settings.maxRunning);
    this.#consumer = new TaskConsumer(this.#kafka, {
      topic: this.#settings.topic,
      groupId: this.#settings.groupId,
      sessionTimeoutMs: this.#settings.sessionTimeoutMs,
    });
    this.#dispatcher = new Dispatcher({ pool: this.#pool, hooks: this.#hooks() });
    // After the dispatcher: a freed slot goes to waiting work before a prewarmed child.
    this.#executor = new TaskExecutor({
      settings: this.#settings,
      grants: this.#grants,
      cap: this.#pool,
      observer: this.#observer,
    });
    this.#watchConsumer();
  }

  /** Live handler processes. */
  get running(): number {
    return this.#pool.running;
  }

  /** The cap. */
  get maxRunning(): number {
    return this.#pool.capacity;
  }

  /** True while fetching is held back because the cap is full. */
  get saturated(): boolean {
    return this.#dispatcher.blocked;
  }

  /** Resolves with the error if the consumer stops for good (the process should exit non-zero). */
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

  /** Create the topic if needed, join the group and start consuming. */
  start(): Promise<void> {
    this.#started ??= (async () => {
      this.#executor.start();
      this.#admin = this.#kafka.admin();
      await this.#admin.connect();
      const { topic, topicPartitions, deadLetterTopic } = this.#settings;
      if (await ensureTopic(this.#admin, topic, topicPartitions)) {
        this.#log.info("Created topic {topic} with {partitions} partitions", {
          topic,
          partitions: topicPartitions,
        });
      }
      this.#producer = createProducer(this.#kafka);
      await this.#producer.connect();
      const publisher = new Publisher(this.#producer, deadLetterTopic);
      this.#reporter = new TaskReporter(publisher, this.#settings.handlerHeader, this.#observer);
      await this.#consumer.start(this.#dispatcher);
      this.#log.info("Consuming {topic} as group {groupId}, cap {maxRunning}", {
        topic,
        groupId: this.#settings.groupId,
        maxRunning: this.#settings.maxRunning,
      });
    })();
    return this.#started;
  }

  /**
   * Drain and stop: stop fetching, give running tasks `drainTimeoutMs` to finish, then stop the
   * rest (SIGTERM, SIGKILL after the grace), commit, leave the group. Idempotent.
   */
  stop(): Promise<void> {
    this.#stopped ??= (async () => {
      this.#log.info(
        "Stopping: no new tasks; {running} running get {drainTimeoutMs} ms to finish",
        {
          running: this.#pool.running,
          drainTimeoutMs: this.#settings.drainTimeoutMs,
        },
      );
      await this.#executor.stopPrewarming(); // idle prewarmed children first: they hold no task
      await this.#started?.catch(() => {});
      this.#dispatcher.stop();
      this.#consumer.pause();
      let timer: ReturnType<typeof setTimeout> | undefined;
      const timedOut = await Promise.race([
        this.#pool.idle().then(() => false),
        new Promise<boolean>((resolve) => {
          timer = setTimeout(() => resolve(true), this.#settings.drainTimeoutMs);
        }),
      ]);
      clearTimeout(timer);
      if (timedOut) {
        await this.kill(
          `at shutdown, after the drain timeout of ${this.#settings.drainTimeoutMs} ms`,
        );
      }
      await this.#dispatcher.settled();
      await this.#executor.close();
      await this.#dispatcher.flushCommits();
      await this.#consumer.disconnect().catch((error) =>
        this.#log.error("Consumer did not stop cleanly: {error}", { error: String(error) })
      );
      await this.#producer?.disconnect().catch(() => {});
      await this.#admin?.disconnect().catch(() => {});
      this.#log.info("Stopped");
    })();
    return this.#stopped;
  }

  /**
   * Stop every live child now (SIGTERM, then SIGKILL after the grace; with `force`, SIGKILL at
   * once), recording why. Resolves when they have all exited and their outcomes are logged.
   */
  async kill(why: string, force = false): Promise<void> {
    await this.#executor.kill(why, force);
    await this.#dispatcher.settled();
  }

  /** Idle prewarmed children now, over all functions. */
  get prewarmedIdle(): number {
    return this.#executor.prewarmedIdle;
  }

  /** Warm processes alive now, over all functions. */
  get warmProcesses(): number {
    return this.#executor.warmProcesses;
  }

  #policy(handler: string): DeliveryPolicy {
    let policy = this.#policies.get(handler);
    if (!policy) this.#policies.set(handler, policy = deliveryPolicy(this.#grants.get(handler)));
    return policy;
  }

  #hooks(): DispatcherHooks {
    const s = this.#settings;
    return {
      decode: (topic, partition, message) =>
        decodeTask(topic, partition, message, {
          handlerHeader: s.handlerHeader,
          functionsDir: s.functionsDir,
          maxPayloadBytes: s.maxPayloadBytes,
        }),
      policyFor: (handler) => this.#policy(handler),
      execute: (job) => this.#executor.execute(job),
      prepare: (job) => this.#executor.prepare(job),
      discard: (job) => this.#executor.discard(job),
      commit: (topic, partition, commit) => this.#consumer.commit(topic, partition, commit),
      committed: async (topic, partition) => {
        const [offsets] = await this.#admin!.fetchOffsets({ groupId: s.groupId, topics: [topic] });
        const entry = offsets.partitions.find((p) => p.partition === partition);
        return { offset: entry?.offset ?? "-1", metadata: entry?.metadata ?? null };
      },
      finish: (job, result) => this.#reporter!.finish(job, result),
      reject: (rejected) => this.#reporter!.reject(rejected),
      retrying: (job, result, delayMs) => this.#reporter!.retrying(job, result, delayMs),
      skipped: (topic, partition, offset, started) =>
        this.#reporter!.skipped(topic, partition, offset, started),
      handedOver: (jobs, why) => this.#reporter!.handedOver(jobs, why),
      commitFailed: (topic, partition, error) =>
        this.#log.warn("Commit failed for {topic}/{partition}: {error}", {
          topic,
          partition,
          error: error.message,
        }),
    };
  }

  #watchConsumer(): void {
    const consumer = this.#consumer.consumer;
    const { GROUP_JOIN, CONNECT, DISCONNECT, CRASH } = consumer.events;
    consumer.on(CONNECT, () => (this.#connected = true));
    consumer.on(DISCONNECT, () => {
      this.#connected = false;
      this.#assigned = 0;
    });
    consumer.on(GROUP_JOIN, ({ payload }) => {
      this.#assigned = Object.values(payload.memberAssignment).flat().length;
      this.#log.info("Joined group {groupId}: {assignment}", {
        groupId: payload.groupId,
        assignment: payload.memberAssignment,
      });
    });
    consumer.on(GROUP_JOIN, () => (this.#restarts = 0));
    consumer.on(CRASH, ({ payload }) => {
      this.#assigned = 0;
      const error = payload.error.message;
      if (payload.restart) {
        this.#log.warn("Consumer crashed and kafkajs restarts it: {error}", { error });
      } else if (this.#stopped) {
        return;
      } else if (this.#restarts < MAX_RESTARTS) {
        const delayMs = 1000 * 2 ** this.#restarts++;
        this.#log.warn(
          "Consumer stopped on {error}; restarting it in {delayMs} ms ({n} of {max})",
          {
            error,
            delayMs,
            n: this.#restarts,
            max: MAX_RESTARTS,
          },
        );
        setTimeout(() => {
          if (this.#stopped) return;
          this.#consumer.restart(this.#dispatcher).catch((e) => {
            this.#log.error("Consumer restart failed: {error}", { error: String(e) });
            this.#fatal.resolve(e as Error);
          });
        }, delayMs);
      } else {
        this.#log.error("Consumer crashed for good after {max} restarts: {error}", {
          error,
          max: MAX_RESTARTS,
        });
        this.#fatal.resolve(payload.error);
      }
    });
  }
}
