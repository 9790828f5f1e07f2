/**
 * The runner: wiring and lifecycle. It builds the parts a task passes through (consumer →
 * decoder → dispatcher with the cap → executor → reporter), starts them in order, and drains
 * on stop.
 * @module
 */
import type { Admin, Kafka, Producer } from "kafkajs";
import type { RunnerConfig } from "./config.ts";
import { ConcurrencyCap } from "./dispatch/concurrency_cap.ts";
import { Dispatcher, type WaitObserver } from "./dispatch/dispatcher.ts";
import type { WaitReason } from "./dispatch/flow_control.ts";
import type { FunctionConfigTable } from "./function_config.ts";
import { TaskConsumer } from "./intake/consumer.ts";
import { TaskDecoder } from "./intake/task_decoder.ts";
import { createProducer, ensureTopic } from "./kafka/client.ts";
import { logger } from "./report/logging.ts";
import { Publisher } from "./report/publisher.ts";
import { onBoard, type RunnerState, TaskBoard } from "./report/task_board.ts";
import { type TaskObserver, TaskReporter } from "./report/task_reporter.ts";
import { TaskExecutor } from "./sandbox/executor.ts";

export type { Outcome, TaskObserver } from "./report/task_reporter.ts";

/** The part of the configuration a runner uses. */
export type RunnerSettings = Omit<
  RunnerConfig,
  | "brokers"
  | "localBrokerPort"
  | "logLevel"
  | "logFormat"
  | "metricsPort"
  | "metricsHost"
  | "consoleTokenFile"
>;

/** Options of a {@link Runner}. */
export interface RunnerOptions {
  /** A kafkajs client for the brokers to use. */
  kafka: Kafka;
  /** Validated settings. */
  settings: RunnerSettings;
  /** Per-function configuration (functions.json). @default none */
  functions?: FunctionConfigTable;
  /** Told of outcomes and spawn failures (and, if it listens, of the time tasks waited). @default none */
  observer?: TaskObserver & Partial<WaitObserver>;
  /** Where running tasks and recent outcomes are kept for the console. @default a new one */
  board?: TaskBoard;
}

/** A long-running task runner. Its state is read by the console ({@link RunnerState}). */
export class Runner implements RunnerState {
  readonly #settings: RunnerSettings;
  readonly #kafka: Kafka;
  readonly #admin: Admin;
  readonly #producer: Producer;
  readonly #cap: ConcurrencyCap;
  readonly #consumer: TaskConsumer;
  readonly #executor: TaskExecutor;
  readonly #dispatcher: Dispatcher;
  readonly #log = logger("runner");
  readonly #board: TaskBoard;
  #started: Promise<void> | null = null;
  #stopped: Promise<void> | null = null;

  constructor(options: RunnerOptions) {
    const settings = this.#settings = options.settings;
    const functions = options.functions ?? new Map();
    const board = this.#board = options.board ?? new TaskBoard();
    this.#kafka = options.kafka;
    this.#admin = this.#kafka.admin();
    this.#producer = createProducer(this.#kafka);
    this.#cap = new ConcurrencyCap(settings.maxRunning);
    this.#consumer = new TaskConsumer(this.#kafka, {
      topic: settings.topic,
      groupId: settings.groupId,
      admin: this.#admin,
      sessionTimeoutMs: settings.sessionTimeoutMs,
    });
    this.#executor = new TaskExecutor({
      settings,
      functions,
      cap: this.#cap,
      observer: options.observer,
    });
    // Registered on the cap before the prewarmer refills: a freed slot goes to waiting work
    // before a prewarmed child.
    this.#dispatcher = new Dispatcher({
      cap: this.#cap,
      source: new TaskDecoder({
        handlerHeader: settings.handlerHeader,
        functionsDir: settings.functionsDir,
        maxPayloadBytes: settings.maxPayloadBytes,
        functions,
      }),
      offsets: this.#consumer,
      notBeforeHeader: settings.notBeforeHeader,
      maxDelayMs: settings.maxDelayMs,
      maxWaiting: settings.maxWaiting,
      waitObserver: options.observer?.taskWaited ? options.observer as WaitObserver : undefined,
      executor: onBoard(
        this.#executor,
        board,
        (handler) => functions.get(handler)?.timeoutMs ?? settings.taskTimeoutMs,
      ),
      reporter: new TaskReporter(new Publisher(this.#producer, settings.deadLetterTopic), {
        handlerHeader: settings.handlerHeader,
        observer: options.observer,
        board,
      }),
    });
  }

  /** Running tasks, recent outcomes and outcome counts, for the console. */
  get board(): TaskBoard {
    return this.#board;
  }

  /** Live handler processes. */
  get running(): number {
    return this.#cap.running;
  }

  /** The cap. */
  get maxRunning(): number {
    return this.#cap.capacity;
  }

  /** True while fetching is held back because the cap is full. */
  get saturated(): boolean {
    return this.#dispatcher.blocked;
  }

  /** Tasks waiting now, by what they wait for (flow control). */
  waitingByReason(): Record<WaitReason, number> {
    return this.#dispatcher.waitingByReason();
  }

  /** Idle prewarmed children now, over all functions. */
  get prewarmedIdle(): number {
    return this.#executor.prewarmedIdle;
  }

  /** Warm processes alive now, over all functions. */
  get warmProcesses(): number {
    return this.#executor.warmProcesses;
  }

  /** Resolves with the error if the consumer stops for good (the process should exit non-zero). */
  get fatal(): Promise<Error> {
    return this.#consumer.fatal;
  }

  /** Null when ready (connected, holding partitions), else why not. */
  readiness(): string | null {
    return this.#stopped ? "stopping" : this.#consumer.readiness();
  }

  /** Create the topic if needed, join the group and start consuming. */
  start(): Promise<void> {
    this.#started ??= (async () => {
      this.#executor.start();
      await this.#admin.connect();
      const { topic, topicPartitions, groupId, maxRunning } = this.#settings;
      if (await ensureTopic(this.#admin, topic, topicPartitions)) {
        this.#log.info("Created topic {topic} with {partitions} partitions", {
          topic,
          partitions: topicPartitions,
        });
      }
      await this.#producer.connect();
      await this.#consumer.start(this.#dispatcher);
      this.#log.info("Consuming {topic} as group {groupId}, cap {maxRunning}", {
        topic,
        groupId,
        maxRunning,
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
      const { drainTimeoutMs } = this.#settings;
      this.#log.info(
        "Stopping: no new tasks; {running} running get {drainTimeoutMs} ms to finish",
        { running: this.#cap.running, drainTimeoutMs },
      );
      await this.#executor.stopPrewarming(); // idle prewarmed children first: they hold no task
      await this.#started?.catch(() => {});
      this.#dispatcher.stop();
      this.#consumer.pause();
      let timer: ReturnType<typeof setTimeout> | undefined;
      const timedOut = await Promise.race([
        this.#cap.idle().then(() => false),
        new Promise<boolean>((resolve) => {
          timer = setTimeout(() => resolve(true), drainTimeoutMs);
        }),
      ]);
      clearTimeout(timer);
      if (timedOut) await this.kill(`at shutdown, after the drain timeout of ${drainTimeoutMs} ms`);
      await this.#dispatcher.settled();
      await this.#executor.close();
      await this.#dispatcher.flushCommits();
      await this.#consumer.stop().catch((error) =>
        this.#log.error("Consumer did not stop cleanly: {error}", { error: String(error) })
      );
      await this.#producer.disconnect().catch(() => {});
      await this.#admin.disconnect().catch(() => {});
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
}
