/**
 * Delayed tasks: the not-before header (`x-task-runner-not-before`, ISO 8601 or epoch
 * milliseconds) and the bound on how far ahead it may be.
 * @module
 */
import { TaskRejectedError } from "../errors.ts";

/** The default bound on a delay (`MAX_DELAY_MS`): 15 minutes. */
export const DEFAULT_MAX_DELAY_MS = 15 * 60_000;

/** ISO 8601 date-time with a zone (`Z` or `±hh:mm`), as `Date.parse` reads it. */
const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:?\d{2})$/;

/**
 * The epoch milliseconds of a not-before value, or a rejection naming the header.
 * @throws {TaskRejectedError} when the value is neither epoch milliseconds nor ISO 8601 with a zone.
 */
export function parseNotBefore(raw: string, header: string): number {
  const text = raw.trim();
  const ms = /^\d{1,16}$/.test(text) ? Number(text) : ISO.test(text) ? Date.parse(text) : NaN;
  if (!Number.isSafeInteger(ms)) {
    throw new TaskRejectedError(
      `header "${header}" must be epoch milliseconds or an ISO 8601 time with a zone ` +
        `(2026-01-02T03:04:05Z), got ${JSON.stringify(text.slice(0, 64))}`,
    );
  }
  return ms;
}

/**
 * Milliseconds a task must still wait (0: none), from its not-before time and the wall clock.
 * @throws {TaskRejectedError} when it is further ahead than `maxDelayMs`.
 */
export function delayMs(
  notBefore: number,
  wallNow: number,
  maxDelayMs: number,
  header: string,
): number {
  const wait = notBefore - wallNow;
  if (wait > maxDelayMs) {
    throw new TaskRejectedError(
      `header "${header}" asks for a start in ${Math.round(wait / 1000)} s, more than ` +
        `MAX_DELAY_MS (${maxDelayMs} ms) allows: a delayed task waits in the runner's memory and ` +
        "holds back its partition's committed offset, so enqueue it nearer its time",
    );
  }
  return Math.max(0, Math.ceil(wait));
}
