/**
 * What the runner produces besides logs: dead letters and handler results.
 * @module
 */
import type { IHeaders, KafkaMessage, Producer } from "kafkajs";

/** Headers a dead letter carries, besides the task's own. */
export const DEAD_LETTER_HEADERS = {
  outcome: "x-task-runner-outcome",
  error: "x-task-runner-error",
  /** The first stack frames of what the handler threw, one per line, when it threw. */
  stack: "x-task-runner-stack",
  exitCode: "x-task-runner-exit-code",
  signal: "x-task-runner-signal",
  attempts: "x-task-runner-attempts",
  topic: "x-task-runner-original-topic",
  partition: "x-task-runner-original-partition",
  offset: "x-task-runner-original-offset",
  time: "x-task-runner-failed-at",
} as const;

/** Why a task is dead-lettered. */
export interface DeadLetterReason {
  outcome: "failed" | "timeout" | "rejected";
  error: string;
  /** First stack frames of what the handler threw (at most 5, each bounded). */
  stack?: readonly string[];
  exitCode?: number | null;
  signal?: string | null;
  attempts: number;
}

/** Where a message came from. */
export interface Origin {
  topic: string;
  partition: number;
  message: KafkaMessage;
}

/** Produces dead letters and results with one idempotent-enough producer (acks=all). */
export class Publisher {
  readonly #producer: Producer;
  readonly #deadLetterTopic: string | null;

  /**
   * @param producer a connected producer.
   * @param deadLetterTopic where dead letters go; null turns them off.
   */
  constructor(producer: Producer, deadLetterTopic: string | null) {
    this.#producer = producer;
    this.#deadLetterTopic = deadLetterTopic;
  }

  /** The dead-letter topic, or null. */
  get deadLetterTopic(): string | null {
    return this.#deadLetterTopic;
  }

  /**
   * Produce the original key, payload and headers (byte for byte) to the dead-letter topic,
   * with headers saying why. Returns false when dead letters are off.
   */
  async deadLetter(origin: Origin, why: DeadLetterReason): Promise<boolean> {
    if (!this.#deadLetterTopic) return false;
    const h = DEAD_LETTER_HEADERS;
    const headers: IHeaders = { ...origin.message.headers };
    headers[h.outcome] = why.outcome;
    headers[h.error] = why.error;
    if (why.stack && why.stack.length > 0) headers[h.stack] = why.stack.join("\n");
    if (why.exitCode !== undefined && why.exitCode !== null) {
      headers[h.exitCode] = String(why.exitCode);
    }
    if (why.signal) headers[h.signal] = why.signal;
    headers[h.attempts] = String(why.attempts);
    headers[h.topic] = origin.topic;
    headers[h.partition] = String(origin.partition);
    headers[h.offset] = origin.message.offset;
    headers[h.time] = new Date().toISOString();
    await this.#producer.send({
      topic: this.#deadLetterTopic,
      acks: -1,
      messages: [{ key: origin.message.key, value: origin.message.value, headers }],
    });
    return true;
  }

  /** Produce a handler's JSON return value to `topic`, keyed like the task. */
  async result(topic: string, origin: Origin, handler: string, json: string): Promise<void> {
    await this.#producer.send({
      topic,
      acks: -1,
      messages: [{
        key: origin.message.key,
        value: json,
        headers: {
          "x-task-runner-handler": handler,
          "x-task-runner-source-topic": origin.topic,
          "x-task-runner-source-partition": String(origin.partition),
          "x-task-runner-source-offset": origin.message.offset,
        },
      }],
    });
  }
}
