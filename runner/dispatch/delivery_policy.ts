/**
 * How one function's tasks are delivered: commit point, retries, ordering, results.
 * @module
 */
import type { FunctionConfig, KeyConcurrency, RateLimit } from "../function_config.ts";

/** The resolved delivery settings of one function. */
export interface DeliveryPolicy {
  /** Commit before the task starts (true) or once it reached a final outcome (false). */
  atMostOnce: boolean;
  /** Attempts in all; 1 means no retry. */
  attempts: number;
  /** First backoff, in ms. */
  baseMs: number;
  /** Longest backoff, in ms. */
  maxMs: number;
  /** Tasks with one key run one at a time, in offset order. */
  byKey: boolean;
  /** Topic for the handler's return value, if any. */
  resultTopic: string | null;
  /** Flow control: live tasks of the function at once (null: only the global cap). */
  maxRunning: number | null;
  /** Flow control: live tasks per key value. */
  concurrency: Readonly<KeyConcurrency> | null;
  /** Flow control: a token bucket per function or key value. */
  rateLimit: Readonly<Required<Omit<RateLimit, "key">> & Pick<RateLimit, "key">> | null;
}

/** The policy of a function from its grants (defaults: the PHP daemon's behaviour). */
export function deliveryPolicy(grants: Readonly<FunctionConfig> | undefined): DeliveryPolicy {
  return {
    atMostOnce: (grants?.delivery ?? "at-most-once") === "at-most-once",
    attempts: grants?.retries?.attempts ?? 1,
    baseMs: grants?.retries?.baseMs ?? 1000,
    maxMs: grants?.retries?.maxMs ?? 60_000,
    byKey: grants?.ordering === "key",
    resultTopic: grants?.resultTopic ?? null,
    maxRunning: grants?.maxRunning ?? null,
    concurrency: grants?.concurrency ?? null,
    rateLimit: grants?.rateLimit
      ? {
        perSecond: grants.rateLimit.perSecond,
        burst: grants.rateLimit.burst ?? Math.max(1, Math.ceil(grants.rateLimit.perSecond)),
        key: grants.rateLimit.key,
      }
      : null,
  };
}

/**
 * Backoff before attempt `attempt + 1` after `attempt` failed: exponential, capped, with
 * "equal jitter" (between half and all of the step), so retries of many tasks spread out but
 * never come back sooner than half the step.
 *
 * @example
 * ```ts
 * backoffMs(1, policy); // between baseMs/2 and baseMs
 * ```
 */
export function backoffMs(
  attempt: number,
  policy: Pick<DeliveryPolicy, "baseMs" | "maxMs">,
  random: () => number = Math.random,
): number {
  const step = Math.min(policy.maxMs, policy.baseMs * 2 ** (attempt - 1));
  return Math.round(step / 2 + random() * (step / 2));
}
