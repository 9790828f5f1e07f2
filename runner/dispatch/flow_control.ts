/**
 * Flow control of functions.json: `maxRunning` per function, `concurrency` per key value and
 * `rateLimit` per function or key value, checked before a task takes a slot of the cap. A task
 * held back by one of them waits in the dispatcher without a slot; the dispatcher tries it
 * again when a task of its function ends (limits) or when a token is due (one timer).
 * @module
 */
import type { Clock } from "../clock.ts";
import type { DeliveryPolicy } from "./delivery_policy.ts";
import type { DecodedTask } from "../intake/task_decoder.ts";
import { LiveCounts } from "./function_limits.ts";
import { flowKeyValue } from "./key_concurrency.ts";
import { RateLimiter } from "./rate_limiter.ts";

/** Why a task that may run waits: the labels of the waiting metrics. */
export type WaitReason =
  | "cap"
  | "function_limit"
  | "key_limit"
  | "rate_limit"
  | "delay"
  | "key_order"
  | "retry";

/** Every wait reason, in the order the metrics list them. */
export const WAIT_REASONS: readonly WaitReason[] = [
  "cap",
  "function_limit",
  "key_limit",
  "rate_limit",
  "delay",
  "key_order",
  "retry",
];

/** A task's flow-control keys, resolved once when it is decoded. */
export interface FlowKeys {
  /** The function's name in the counts and buckets. */
  fn: string;
  /** `concurrency` count name (function and key value), or null. */
  concurrency: string | null;
  /** Rate bucket name (the function's, or function and key value), or null. */
  rate: string | null;
  /** The names of its three limits in {@link Blocked.gate} (made once, not per check). */
  gates: { fn: string; key: string; rate: string };
  /** What the outcome line says about keys the task had no value for ("" when none). */
  note: string;
}

/** Why a task cannot start now. */
export interface Blocked {
  reason: "function_limit" | "key_limit" | "rate_limit";
  /** The limit that is shut (tasks behind the same one need not be asked this round). */
  gate: string;
  /** For a rate limit: milliseconds until a token is due. */
  waitMs: number;
}

const NOTHING = () => {};

/** The per-function counts and buckets of one dispatcher (see the module documentation). */
export class FlowControl {
  readonly #running = new LiveCounts();
  readonly #perKey = new LiveCounts();
  readonly #rates: RateLimiter;

  constructor(clock: Clock) {
    this.#rates = new RateLimiter(clock);
  }

  /** The keys of a task under its function's policy. */
  keysOf(task: DecodedTask, policy: DeliveryPolicy): FlowKeys {
    const fn = task.handler;
    const notes: string[] = [];
    const value = (spec: string, what: string) => {
      const v = flowKeyValue(spec, task);
      if (v.missing) notes.push(`no value for ${what} key ${spec}: shared "missing" bucket`);
      return `${fn}\u0000${v.value}`;
    };
    const concurrency = policy.concurrency ? value(policy.concurrency.key, "concurrency") : null;
    const rate = policy.rateLimit
      ? policy.rateLimit.key === undefined ? fn : value(policy.rateLimit.key, "rateLimit")
      : null;
    return {
      fn,
      concurrency,
      rate,
      note: notes.join("; "),
      gates: { fn: `f\u0000${fn}`, key: `k\u0000${concurrency}`, rate: `r\u0000${rate}` },
    };
  }

  /**
   * Null when the task may start now as far as its function's limits go, else which limit
   * holds it back. `shut` names limits already found shut (they are not asked again).
   */
  blocked(keys: FlowKeys, policy: DeliveryPolicy, shut?: ReadonlySet<string>): Blocked | null {
    if (policy.maxRunning !== null) {
      const gate = keys.gates.fn;
      if (shut?.has(gate) || this.#running.full(keys.fn, policy.maxRunning)) {
        return { reason: "function_limit", gate, waitMs: 0 };
      }
    }
    if (policy.concurrency && keys.concurrency !== null) {
      const gate = keys.gates.key;
      if (shut?.has(gate) || this.#perKey.full(keys.concurrency, policy.concurrency.max)) {
        return { reason: "key_limit", gate, waitMs: 0 };
      }
    }
    if (policy.rateLimit && keys.rate !== null) {
      const gate = keys.gates.rate;
      if (shut?.has(gate)) return { reason: "rate_limit", gate, waitMs: 0 };
      const waitMs = this.#rates.waitMs(keys.rate, policy.rateLimit);
      if (waitMs > 0) return { reason: "rate_limit", gate, waitMs };
    }
    return null;
  }

  /**
   * The task starts (it passed {@link blocked} and has its slot): count it and take its
   * token. Returns what ends its count (idempotent), to call once it reached its outcome.
   */
  take(keys: FlowKeys, policy: DeliveryPolicy): () => void {
    if (policy.rateLimit && keys.rate !== null) this.#rates.take(keys.rate, policy.rateLimit);
    const fn = policy.maxRunning !== null ? keys.fn : null;
    const key = policy.concurrency ? keys.concurrency : null;
    if (fn === null && key === null) return NOTHING;
    if (fn !== null) this.#running.take(fn);
    if (key !== null) this.#perKey.take(key);
    let held = true;
    return () => {
      if (!held) return;
      held = false;
      if (fn !== null) this.#running.release(fn);
      if (key !== null) this.#perKey.release(key);
    };
  }

  /** Live tasks of function `fn` as counted here (only functions with `maxRunning`). */
  running(fn: string): number {
    return this.#running.count(fn);
  }
}
