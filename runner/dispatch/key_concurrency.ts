/**
 * The value of a flow-control key (`concurrency.key`, `rateLimit.key` in functions.json) for
 * one task: the message key (`"key"`), a header (`"header:tenant"`) or a field of the parsed
 * payload (`"payload.shopId"`, a dotted path).
 * @module
 */
import type { DecodedTask } from "../intake/task_decoder.ts";

/** The shared value of tasks that have no value for the key. */
export const MISSING_KEY = "\u0000missing";

/** A task's value for a key, or {@link MISSING_KEY} with `missing: true`. */
export interface FlowKeyValue {
  value: string;
  missing: boolean;
}

/**
 * The value of `spec` for `task`. Strings are used as they are; numbers and booleans as text;
 * objects and arrays as their JSON. Absent, null or empty: the shared "missing" value.
 */
export function flowKeyValue(spec: string, task: DecodedTask): FlowKeyValue {
  let raw: unknown;
  if (spec === "key") raw = task.fields.key;
  else if (spec.startsWith("header:")) raw = task.fields.headers[spec.slice(7)];
  else {
    raw = task.json;
    for (const part of spec.split(".").slice(1)) {
      raw = typeof raw === "object" && raw !== null && Object.hasOwn(raw, part)
        ? (raw as Record<string, unknown>)[part]
        : undefined;
    }
  }
  if (raw === undefined || raw === null || raw === "") return { value: MISSING_KEY, missing: true };
  const value = typeof raw === "string"
    ? raw
    : typeof raw === "object"
    ? JSON.stringify(raw)
    : String(raw);
  return { value, missing: false };
}
