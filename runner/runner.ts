/**
 * The runner: wires the consumer, the dispatcher, the cap and the sandbox; logs one outcome
 * per task; drains on stop.
 * @module
 */
import type { Admin, Kafka, Producer } from "kafkajs";
import type { RunnerConfig } from "./config.ts";
import { TaskConsumer } from "./intake/consumer.ts";
import { type DeliveryPolicy, deliveryPolicy } from "./dispatch/delivery_policy.ts";
import { Dispatcher, type DispatcherHooks, type Job } from "./dispatch/dispatcher.ts";
import { SpawnError } from "./errors.ts";
import type { GrantsTable } from "./function_config.ts";
import { createProducer, ensureTopic } from "./kafka/client.ts";
import { logger } from "./report/logging.ts";
import { Pool } from "./dispatch/concurrency_cap.ts";
import { logPrewarmEvent, prewarmedFunctions, Prewarmer } from "./sandbox/prewarm.ts";
import { Publisher } from "./report/publisher.ts";
import {
  type ChildResult,
  type ProcessScope,
  type RunningChild,
  Sandbox,
  type StartedProcess,
} from "./sandbox/task_sandbox.ts";
import { WarmSandboxes } from "./sandbox/warm_sandbox.ts";
import { decodeTask } from "./intake/task_decoder.ts";
import { contextOf, type TaskObserver, TaskReporter } from "./report/task_reporter.ts";

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
  /** The sandbox that spawns children. @default a Sandbox with `settings.killGraceMs` */
  sandbox?: Sandbox;
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
  readonly #sandbox: Sandbox;
  readonly #kafka: Kafka;
  readonly #pool: Pool;
  readonly #consumer: TaskConsumer;
  readonly #dispatcher: Dispatcher;
  readonly #live = new Set<RunningChild>();
  /** Processes started for jobs whose commit is on its way (see the dispatcher's `prepare`). */
  readonly #prepared = new Map<Job, { process: StartedProcess; at: number }>();
  /** Warm processes of functions with `isolation: "function"`, one pool set per function. */
  readonly #warm = new Map<string, WarmSandboxes>();
  /** Prewarmed children of task-mode functions (PREWARM, functions.json `prewarm`). */
  readonly #prewarm: Prewarmer;
  readonly #log = logger("runner");
  readonly #taskLog = logger("task");
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
    this.#sandbox = options.sandbox ?? new Sandbox({
      killGraceMs: options.settings.killGraceMs,
      nice: options.settings.taskNice,
      hostEnv: Deno.env.toObject(),
      denoDir: Deno.env.get("DENO_DIR"),
    });
    this.#observer = options.observer;
    this.#pool = new Pool(options.settings.maxRunning);
    this.#consumer = new TaskConsumer(this.#kafka, {
      topic: this.#settings.topic,
      groupId: this.#settings.groupId,
      sessionTimeoutMs: this.#settings.sessionTimeoutMs,
    });
    this.#dispatcher = new Dispatcher({ pool: this.#pool, hooks: this.#hooks() });
    // After the dispatcher: a freed slot goes to waiting work before a prewarmed child.
    this.#prewarm = new Prewarmer({
      sandbox: this.#sandbox,
      pool: this.#pool,
      count: this.#settings.prewarm,
      functions: prewarmedFunctions(this.#grants, this.#settings),
      onEvent: logPrewarmEvent,
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
      this.#prewarm.start();
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
      await this.#prewarm.close(); // idle prewarmed children first: they hold no task
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
      await Promise.all([...this.#warm.values()].map((warm) => warm.close()));
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
    for (const child of this.#live) child.stop(why, force);
    await this.#dispatcher.settled();
  }

  /** The task-mode sandbox (through the prewarmer), or the function's warm sandboxes. */
  #sandboxFor(handler: string): Pick<Sandbox, "spawn"> {
    const grants = this.#grants.get(handler);
    if (grants?.isolation !== "function") return this.#prewarm;
    let warm = this.#warm.get(handler);
    if (!warm) {
      warm = new WarmSandboxes({
        killGraceMs: this.#settings.killGraceMs,
        nice: this.#settings.taskNice,
        hostEnv: Deno.env.toObject(),
        denoDir: Deno.env.get("DENO_DIR"),
        ...grants.warm,
        onSandboxOutput: (output) =>
          this.#taskLog.warn("{handler} warm sandbox pid {pid} {stream}: {line}", { ...output }),
      });
      this.#warm.set(handler, warm);
    }
    return warm;
  }

  /** Idle prewarmed children now, over all functions. */
  get prewarmedIdle(): number {
    return this.#prewarm.idle;
  }

  /** Warm processes alive now, over all functions. */
  get warmProcesses(): number {
    let n = 0;
    for (const warm of this.#warm.values()) n += warm.stats().processes;
    return n;
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
      execute: (job) => this.#execute(job),
      prepare: (job) => this.#prepare(job),
      discard: (job) => {
        this.#prepared.get(job)?.process.kill();
        this.#prepared.delete(job);
      },
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

  /**
   * Start a task-mode process for `job` while its commit is on its way; `#execute` gives it the
   * task. Functions with prewarmed children or warm processes have theirs ready already.
   */
  #prepare(job: Job): void {
    const scope = this.#scopeOf(job);
    if (scope.grants?.isolation === "function" || this.#prewarm.prewarms(scope.handler)) return;
    try {
      const process = this.#sandbox.start(scope);
      this.#prepared.set(job, { process, at: performance.now() });
    } catch {
      // `#execute` starts it again and reports the failure as the task's outcome.
    }
  }

  /** What decides which process may run `job`: handler, file, heap cap and grants. */
  #scopeOf(job: Job): ProcessScope {
    const { handler, file } = job.task;
    const grants = this.#grants.get(handler);
    return { handler, file, memoryMb: grants?.memoryMb ?? this.#settings.memoryMb, grants };
  }

  async #execute(job: Job): Promise<ChildResult> {
    const context = contextOf(job);
    const scope = this.#scopeOf(job);
    const prepared = this.#prepared.get(job);
    this.#prepared.delete(job);
    const started = prepared?.at ?? performance.now();
    let child: RunningChild;
    try {
      const task = {
        ...scope,
        task: { ...job.task.fields, attempt: job.attempt },
        payload: job.task.payload,
        timeoutMs: scope.grants?.timeoutMs ?? this.#settings.taskTimeoutMs,
        onOutput: (stream: "stdout" | "stderr", line: string, truncated: boolean) => {
          const props = { ...context, stream, line, truncated };
          if (stream === "stdout") this.#taskLog.info("{handler} {stream}: {line}", props);
          else this.#taskLog.warn("{handler} {stream}: {line}", props);
        },
      };
      child = prepared
        ? prepared.process.attach(task)
        : this.#sandboxFor(job.task.handler).spawn(task);
    } catch (error) {
      this.#observer?.spawnFailed(job.task.handler);
      const reason = error instanceof SpawnError ? error.message : String(error);
      return {
        outcome: "failed",
        reason: `spawn failed: ${reason}`,
        code: -1,
        signal: null,
        droppedBytes: 0,
      };
    }
    this.#live.add(child);
    this.#taskLog.debug("Started {handler} pid {pid}, {running} running", {
      ...context,
      pid: child.pid,
      attempt: job.attempt,
      running: this.#pool.running,
      // Runner overhead from slot to spawn, from slot to the task handed over (an at-most-once
      // commit included), and time spent waiting for a slot.
      dispatchMs: (prepared?.at ?? performance.now()) - job.readyAt,
      handoverMs: performance.now() - job.readyAt,
      queuedMs: job.readyAt - job.fetchedAt,
    });
    const result = await child.done;
    this.#live.delete(child);
    return { ...result, durationMs: performance.now() - started };
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
