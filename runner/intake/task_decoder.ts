/**
 * Turns a Kafka message into a task, or into the reason it is rejected.
 * @module
 */
import type { KafkaMessage } from "kafkajs";
import { TaskRejectedError } from "../errors.ts";
import { handlerPath } from "../handler_name.ts";
import type { Task } from "../handler_types.ts";
import { wireRejection } from "../kafka/record_headers.ts";

/** A task ready to run. */
export interface DecodedTask {
  handler: string;
  file: string;
  payload: Uint8Array;
  /** What the handler receives besides the payload (and the attempt, set per run). */
  fields: Omit<Task, "payload" | "attempt">;
}

/** Options of {@link decodeTask}. */
export interface DecodeOptions {
  /** Header naming the handler. */
  handlerHeader: string;
  /** Folder of handlers. */
  functionsDir: string;
  /** Largest payload accepted. */
  maxPayloadBytes: number;
}

const DECODER = new TextDecoder();

function headerText(value: unknown): string {
  if (value === undefined || value === null) return "";
  if (Array.isArray(value)) return headerText(value[value.length - 1]);
  return typeof value === "string" ? value : DECODER.decode(value as Uint8Array);
}

/**
 * Reject a message the Kafka layer already refused (too many headers, undecodable batch).
 * @throws {TaskRejectedError} with the Kafka layer's reason.
 */
function rejectWireFailure(message: KafkaMessage): void {
  const reason = wireRejection(message);
  if (reason !== undefined) throw new TaskRejectedError(reason);
}

/**
 * Decode `message`. The handler file must exist (checked now, so a file dropped in is used by
 * the next task without a restart), and the payload must be JSON within the size limit.
 *
 * @throws {TaskRejectedError} saying what was wrong.
 */
export function decodeTask(
  topic: string,
  partition: number,
  message: KafkaMessage,
  options: DecodeOptions,
): DecodedTask {
  rejectWireFailure(message);
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(message.headers ?? {})) {
    headers[name] = headerText(value);
  }
  const handler = headers[options.handlerHeader];
  if (handler === undefined) {
    throw new TaskRejectedError(
      `missing header "${options.handlerHeader}" naming the handler`,
    );
  }
  const file = handlerPath(options.functionsDir, handler);
  try {
    if (!Deno.statSync(file).isFile) throw new Deno.errors.NotFound(file);
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
    throw new TaskRejectedError(`unknown handler ${handler}: no file ${file}`);
  }
  const payload = message.value ?? new Uint8Array();
  if (payload.length > options.maxPayloadBytes) {
    throw new TaskRejectedError(
      `payload of ${payload.length} bytes is over the limit of ${options.maxPayloadBytes} (MAX_PAYLOAD_BYTES)`,
    );
  }
  try {
    JSON.parse(DECODER.decode(payload));
  } catch (error) {
    const hint = payload.length === 0 ? "empty payload" : (error as Error).message;
    throw new TaskRejectedError(`payload is not valid JSON: ${hint}`);
  }
  return {
    handler,
    file,
    payload,
    fields: {
      headers,
      key: message.key ? DECODER.decode(message.key) : null,
      topic,
      partition,
      offset: message.offset,
      timestamp: new Date(Number(message.timestamp)).toISOString(),
    },
  };
}
