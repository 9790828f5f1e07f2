/**
 * How tasks end, in the log and on Kafka: one outcome line per task, results and dead
 * letters published first, and the lines for retries, skips and hand-overs.
 * @module
 */
import type { Job, Rejected, Reporter } from "../dispatch/job.ts";
import type { TopicPartition } from "../intake/topic_partition.ts";
import { logger } from "./logging.ts";
import type { DeadLetterReason, Origin, Publisher } from "./publisher.ts";
import type { ChildResult } from "../sandbox/process_source.ts";
import type { ThrownError } from "../sandbox/child/protocol.ts";
import type { TaskBoard } from "./task_board.ts";

/** Final outcome of a task, as logged. */
export type Outcome = "ok" | "failed" | "timeout" | "rejected";

/** Told of every final outcome and spawn failure (metrics use it). */
export interface TaskObserver {
  taskEnded(handler: string | null, outcome: Outcome, durationMs: number): void;
  spawnFailed(handler: string): void;
}

/** Where a task came from and which handler it named, for log lines. */
export interface TaskContext {
  handler: string | null;
  topic: string;
  partition: number;
  offset: string;
}

/** The context of a job. */
export const contextOf = (job: Job): TaskContext => ({
  handler: job.task.handler,
  topic: job.topic,
  partition: job.partition,
  offset: job.message.offset,
});

/** Options of a {@link TaskReporter}. */
export interface TaskReporterOptions {
  /** The header naming the handler (for rejected messages). */
  handlerHeader: string;
  /** Told of each outcome (metrics). @default none */
  observer?: TaskObserver;
  /** Keeps the recent outcomes for the console. @default none */
  board?: TaskBoard;
}

/** Reports task endings. */
export class TaskReporter implements Reporter {
  readonly #publisher: Publisher;
  readonly #handlerHeader: string;
  readonly #observer: TaskObserver | undefined;
  readonly #board: TaskBoard | undefined;
  readonly #log = logger("task");

  /** @param publisher produces results and dead letters. */
  constructor(publisher: Publisher, options: TaskReporterOptions) {
    this.#publisher = publisher;
    this.#handlerHeader = options.handlerHeader;
    this.#observer = options.observer;
    this.#board = options.board;
  }

  /** A job's final outcome: publish its result or dead letter, then log it. Never throws. */
  async finish(job: Job, result: ChildResult): Promise<void> {
    const extra: Record<string, unknown> = {
      exitCode: result.code,
      signal: result.signal,
      attempts: job.attempt,
    };
    let reason = result.reason;
    if (result.droppedBytes > 0) reason += `; ${result.droppedBytes} output bytes dropped`;
    const origin = { topic: job.topic, partition: job.partition, message: job.message };
    const resultTopic = job.policy.resultTopic;
    if (result.outcome === "ok" && result.result !== undefined && resultTopic) {
      try {
        await this.#publisher.result(resultTopic, origin, job.task.handler, result.result);
        extra.resultTopic = resultTopic;
      } catch (error) {
        reason += `; its result was not published: ${(error as Error).message}`;
      }
    }
    if (result.outcome !== "ok") {
      if (result.error) extra.error = result.error;
      extra.deadLetter = await this.#deadLetter(origin, {
        outcome: result.outcome,
        error: result.reason,
        stack: result.error?.stack,
        exitCode: result.code,
        signal: result.signal,
        attempts: job.attempt,
      });
    }
    this.outcome(result.outcome, contextOf(job), result.durationMs ?? 0, reason, extra);
  }

  /** A rejected message: dead-letter it, then log it. Never throws. */
  async reject({ topic, partition, message, error }: Rejected): Promise<void> {
    const header = message.headers?.[this.#handlerHeader];
    const context = {
      handler: header === undefined ? null : String(header).slice(0, 120),
      topic,
      partition,
      offset: message.offset,
    };
    const deadLetter = await this.#deadLetter(
      { topic, partition, message },
      { outcome: "rejected", error: error.message, attempts: 0 },
    );
    this.outcome("rejected", context, 0, error.message, { deadLetter });
  }

  /** An attempt that failed and will be retried (after `delayMs`, or by the next run). */
  retrying(job: Job, result: ChildResult, delayMs: number | null): void {
    this.#log.info(
      "Attempt {attempt} of {attempts} {attemptOutcome}: {handler} {topic}/{partition}@{offset}, " +
        (delayMs === null ? "left for the next run" : "retrying in {delayMs} ms"),
      {
        ...contextOf(job),
        attempt: job.attempt,
        attempts: job.policy.attempts,
        attemptOutcome: result.outcome,
        reason: result.reason,
        delayMs,
      },
    );
  }

  /** An offset an earlier owner had handled. */
  skipped({ topic, partition }: TopicPartition, offset: string, started: boolean): void {
    const props = { topic, partition, offset };
    if (started) {
      this.#log.warn(
        "Skipped {topic}/{partition}@{offset}: an earlier run started it and stopped " +
          "before its end was committed (at-most-once: not run again)",
        props,
      );
    } else this.#log.debug("Skipped {topic}/{partition}@{offset}: already done", props);
  }

  /** A commit that failed; the next one carries its state. */
  commitFailed({ topic, partition }: TopicPartition, error: Error): void {
    this.#log.warn("Commit failed for {topic}/{partition}: {error}", {
      topic,
      partition,
      error: error.message,
    });
  }

  /** Inherited offsets the commit metadata has no room for (a second crash may rerun them). */
  metadataFull({ topic, partition }: TopicPartition, dropped: number): void {
    this.#log.warn(
      "Commit metadata of {topic}/{partition} is full: {dropped} offsets the previous owner " +
        "settled and this runner has not fetched yet are left out of it; they are skipped " +
        "here, but would run again if this runner also stopped before fetching them",
      { topic, partition, dropped },
    );
  }

  /** Jobs left to another member or the next run. */
  handedOver(jobs: Job[], why: string): void {
    for (const job of jobs) {
      this.#log.info("Not run here: {why}: {handler} {topic}/{partition}@{offset}", {
        ...contextOf(job),
        why,
      });
    }
  }

  /** The one outcome line of a task. */
  outcome(
    outcome: Outcome,
    context: TaskContext,
    durationMs: number,
    reason: string,
    extra: Record<string, unknown> = {},
  ): void {
    this.#observer?.taskEnded(context.handler, outcome, durationMs);
    this.#board?.ended({
      outcome,
      ...context,
      durationMs: Math.round(durationMs),
      reason,
      attempts: typeof extra.attempts === "number" ? extra.attempts : 0,
      error: (extra.error as ThrownError | undefined) ?? null,
    });
    const props = { outcome, ...context, durationMs: Math.round(durationMs), reason, ...extra };
    const message = "task {outcome}: {handler} {topic}/{partition}@{offset} in {durationMs} ms";
    if (outcome === "ok") this.#log.info(message, props);
    // Why, in the sentence too: it is what a person reading a failure looks for first.
    else this.#log.warn(`${message}: {reason}`, props);
  }

  /** Dead-letter a message if a topic is set; returns the topic, or null. Never throws. */
  async #deadLetter(origin: Origin, why: DeadLetterReason): Promise<string | null> {
    try {
      return (await this.#publisher.deadLetter(origin, why))
        ? this.#publisher.deadLetterTopic
        : null;
    } catch (error) {
      this.#log.error("Dead letter for {topic}/{partition}@{offset} not produced: {error}", {
        topic: origin.topic,
        partition: origin.partition,
        offset: origin.message.offset,
        error: (error as Error).message,
      });
      return null;
    }
  }
}
