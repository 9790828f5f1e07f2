/**
 * The runner: wires the consumer, the cap and the sandbox, logs one outcome per task, and
 * drains on stop.
 * @module
 */
import type { Admin, Kafka } from "kafkajs";
import type { RunnerConfig } from "./config.ts";
import { type Dispatch, type Rejection, TaskConsumer } from "./consumer.ts";
import { SpawnError } from "./errors.ts";
import type { GrantsTable } from "./grants.ts";
import { ensureTopic } from "./kafka.ts";
import { logger } from "./logging.ts";
import { Pool } from "./pool.ts";
import { type RunningChild, Sandbox } from "./sandbox.ts";
import { type DecodedTask, decodeTask } from "./task_decoder.ts";

/** The part of the configuration a runner uses. */
export type RunnerSettings = Omit<
  RunnerConfig,
  "brokers" | "localBrokerPort" | "logLevel" | "logFormat" | "metricsPort"
>;

/** Told of every final outcome and spawn failure (metrics use it). */
export interface TaskObserver {
  taskEnded(handler: string | null, outcome: Outcome, durationMs: number): void;
  spawnFailed(handler: string): void;
}

/** Options of a {@link Runner}. */
export interface RunnerOptions {
  /** A kafkajs client for the brokers to use. */
  kafka: Kafka;
  /** Validated settings. */
  settings: RunnerSettings;
  /** Per-function grants. @default no grants */
  grants?: GrantsTable;
  /** The sandbox that spawns children. @default a Sandbox with `settings.killGraceMs` */
  sandbox?: Sandbox;
  /** Told of outcomes and spawn failures. @default none */
  observer?: TaskObserver;
}

/** Final outcome of a task, as logged. */
export type Outcome = "ok" | "failed" | "timeout" | "rejected";

interface Live {
  child: RunningChild;
  task: DecodedTask;
}

/** A long-running task runner. */
export class Runner {
  readonly #settings: RunnerSettings;
  readonly #grants: GrantsTable;
  readonly #sandbox: Sandbox;
  readonly #kafka: Kafka;
  readonly #pool: Pool;
  readonly #consumer: TaskConsumer;
  readonly #live = new Set<Live>();
  readonly #log = logger("runner");
  readonly #taskLog = logger("task");
  readonly #observer: TaskObserver | undefined;
  readonly #fatal = Promise.withResolvers<Error>();
  #assigned = 0;
  #connected = false;
  #admin: Admin | null = null;
  #started: Promise<void> | null = null;
  #stopped: Promise<void> | null = null;

  constructor(options: RunnerOptions) {
    this.#settings = options.settings;
    this.#grants = options.grants ?? new Map();
    this.#kafka = options.kafka;
    this.#sandbox = options.sandbox ?? new Sandbox({
      killGraceMs: options.settings.killGraceMs,
      hostEnv: Deno.env.toObject(),
      denoDir: Deno.env.get("DENO_DIR"),
    });
    this.#observer = options.observer;
    this.#pool = new Pool(options.settings.maxRunning);
    this.#consumer = new TaskConsumer(this.#kafka, {
      topic: this.#settings.topic,
      groupId: this.#settings.groupId,
      pool: this.#pool,
      check: (topic, partition, message) =>
        decodeTask(topic, partition, message, {
          handlerHeader: this.#settings.handlerHeader,
          functionsDir: this.#settings.functionsDir,
          maxPayloadBytes: this.#settings.maxPayloadBytes,
        }),
      dispatch: (item, checked) => this.#launch(item, checked as DecodedTask),
      reject: (rejection) => this.#logRejection(rejection),
    });
    this.#watchConsumer();
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
    consumer.on(CRASH, ({ payload }) => {
      this.#assigned = 0;
      if (payload.restart) {
        this.#log.warn("Consumer crashed and restarts: {error}", { error: payload.error.message });
      } else {
        this.#log.error("Consumer crashed for good: {error}", { error: payload.error.message });
        this.#fatal.resolve(payload.error);
      }
    });
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
    return this.#consumer.waitingForSlot;
  }

  /** The kafkajs consumer, for instrumentation. */
  get kafkaConsumer(): TaskConsumer["consumer"] {
    return this.#consumer.consumer;
  }

  /** Create the topic if needed, join the group and start consuming. */
  start(): Promise<void> {
    this.#started ??= (async () => {
      this.#admin = this.#kafka.admin();
      await this.#admin.connect();
      const created = await ensureTopic(
        this.#admin,
        this.#settings.topic,
        this.#settings.topicPartitions,
      );
      if (created) {
        this.#log.info("Created topic {topic} with {partitions} partitions", {
          topic: this.#settings.topic,
          partitions: this.#settings.topicPartitions,
        });
      }
      await this.#consumer.start();
      this.#log.info("Consuming {topic} as group {groupId}, cap {maxRunning}", {
        topic: this.#settings.topic,
        groupId: this.#settings.groupId,
        maxRunning: this.#settings.maxRunning,
      });
    })();
    return this.#started;
  }

  /**
   * Drain and stop: stop fetching, give running tasks `drainTimeoutMs` to finish, then stop the
   * rest (SIGTERM, SIGKILL after the grace). Idempotent: later calls return the same promise.
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
      await this.#started?.catch(() => {});
      await this.#consumer.stop().catch((error) =>
        this.#log.error("Consumer did not stop cleanly: {error}", { error })
      );
      let timer: ReturnType<typeof setTimeout> | undefined;
      const timedOut = await Promise.race([
        this.#pool.idle().then(() => false),
        new Promise<boolean>((resolve) => {
          timer = setTimeout(() => resolve(true), this.#settings.drainTimeoutMs);
        }),
      ]);
      clearTimeout(timer);
      if (timedOut) {
        this.kill(`at shutdown, after the drain timeout of ${this.#settings.drainTimeoutMs} ms`);
      }
      await this.#pool.idle();
      await this.#admin?.disconnect().catch(() => {});
      this.#log.info("Stopped");
    })();
    return this.#stopped;
  }

  /**
   * Stop every live child now (SIGTERM, then SIGKILL after the grace; with `force`, SIGKILL at
   * once), recording why. Resolves when they have all exited.
   */
  kill(why: string, force = false): Promise<void> {
    for (const { child } of this.#live) child.stop(why, force);
    return this.#pool.idle();
  }

  #launch(item: Dispatch, task: DecodedTask): void {
    const grants = this.#grants.get(task.handler);
    const context = {
      handler: task.handler,
      topic: item.topic,
      partition: item.partition,
      offset: item.message.offset,
    };
    const started = performance.now();
    let child: RunningChild;
    try {
      child = this.#sandbox.spawn({
        handler: task.handler,
        file: task.file,
        task: task.fields,
        payload: task.payload,
        timeoutMs: grants?.timeoutMs ?? this.#settings.taskTimeoutMs,
        memoryMb: grants?.memoryMb ?? this.#settings.memoryMb,
        grants,
        onOutput: (stream, line, truncated) => {
          const props = { ...context, stream, line, truncated };
          if (stream === "stdout") this.#taskLog.info("{handler} {stream}: {line}", props);
          else this.#taskLog.warn("{handler} {stream}: {line}", props);
        },
      });
    } catch (error) {
      this.#pool.release();
      this.#observer?.spawnFailed(task.handler);
      const reason = error instanceof SpawnError ? error.message : String(error);
      this.#logOutcome("failed", context, 0, `spawn failed: ${reason}`);
      return;
    }
    const live = { child, task };
    this.#live.add(live);
    this.#taskLog.debug("Started {handler} pid {pid}, {running} running", {
      ...context,
      pid: child.pid,
      running: this.#pool.running,
      // Runner overhead from slot to spawn (commit included), and time spent waiting for a slot.
      dispatchMs: performance.now() - item.readyAt,
      queuedMs: item.readyAt - item.fetchedAt,
    });
    child.done.then((result) => {
      this.#live.delete(live);
      this.#pool.release();
      const dropped = result.droppedBytes > 0
        ? `; ${result.droppedBytes} output bytes dropped`
        : "";
      this.#logOutcome(
        result.outcome,
        context,
        performance.now() - started,
        result.reason + dropped,
        {
          exitCode: result.code,
          signal: result.signal,
        },
      );
    });
  }

  #logRejection({ topic, partition, message, error }: Rejection): void {
    const header = message.headers?.[this.#settings.handlerHeader];
    const handler = header === undefined ? null : String(header).slice(0, 120);
    this.#logOutcome(
      "rejected",
      { handler, topic, partition, offset: message.offset },
      0,
      error.message,
    );
  }

  #logOutcome(
    outcome: Outcome,
    context: { handler: string | null; topic: string; partition: number; offset: string },
    durationMs: number,
    reason: string,
    extra: Record<string, unknown> = {},
  ): void {
    this.#observer?.taskEnded(context.handler, outcome, durationMs);
    const props = { outcome, ...context, durationMs: Math.round(durationMs), reason, ...extra };
    const message =
      "Task {outcome}: {handler} {topic}/{partition}@{offset} in {durationMs} ms: {reason}";
    if (outcome === "ok") this.#taskLog.info(message, props);
    else this.#taskLog.warn(message, props);
  }
}
