/**
 * Types for handler authors. Import them with `import type` (erased before the sandbox runs,
 * so the handler still reads no file but its own).
 *
 * @example
 * ```ts
 * import type { Context, Task } from "../runner/handler_types.ts";
 * export default async function (task: Task<{ to: string }>, ctx: Context) {
 *   console.log(`hello ${task.payload.to} from ${ctx.handler}`);
 * }
 * ```
 * @module
 */

/** What a handler receives: the message's parsed payload and where it came from. */
export interface Task<P = unknown> {
  /** The message value, parsed from JSON. */
  payload: P;
  /** Message headers as UTF-8 text (the handler name header included). */
  headers: Record<string, string>;
  /** Message key as UTF-8 text, or null. */
  key: string | null;
  topic: string;
  partition: number;
  /** Offset as a decimal string (offsets are 64-bit). */
  offset: string;
  /** Message timestamp, ISO 8601. */
  timestamp: string;
  /** 1 for the first run; higher when the function has `retries` and an attempt failed. */
  attempt: number;
}

/** The second argument of a handler. */
export interface Context {
  /** The handler's name. */
  handler: string;
  /** When the runner will stop this task (SIGTERM, then SIGKILL). */
  deadline: Date;
}

/** The shape of a handler module's default export. */
export type Handler<P = unknown> = (task: Task<P>, ctx: Context) => unknown | Promise<unknown>;
