/**
 * Producing tasks: the same message the PHP daemon's `async_task_produce` wrote
 * (JSON payload, handler name in the `php_worker` header).
 * @module
 */
import type { Producer, RecordMetadata } from "kafkajs";
import { handlerPath } from "../runner/handler_name.ts";

/** Options of {@link enqueue}. */
export interface EnqueueOptions {
  /** Topic to produce to. @default "async_task" */
  topic?: string;
  /** Message key (tasks with one key go to one partition). @default none */
  key?: string;
  /** Header carrying the handler name. @default "php_worker" */
  handlerHeader?: string;
  /** Extra headers to send along. @default {} */
  headers?: Record<string, string>;
}

/**
 * Produce one task for `handler` with `payload` encoded as JSON.
 *
 * @throws {TaskRejectedError} if `handler` is not a valid name (nothing is produced).
 * @example
 * ```ts
 * await enqueue(producer, "hello", { to: "world" });
 * ```
 */
export async function enqueue(
  producer: Producer,
  handler: string,
  payload: unknown,
  options: EnqueueOptions = {},
): Promise<RecordMetadata> {
  handlerPath(".", handler); // validates the name; the file need not exist on this machine
  const value = JSON.stringify(payload);
  if (value === undefined) throw new TypeError("Cannot enqueue: payload is not JSON-serialisable");
  const [metadata] = await producer.send({
    topic: options.topic ?? "async_task",
    acks: -1,
    messages: [{
      key: options.key,
      value,
      headers: { ...options.headers, [options.handlerHeader ?? "php_worker"]: handler },
    }],
  });
  return metadata;
}
