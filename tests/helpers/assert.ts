/** Assertions for tests: `node:assert/strict` under the names used across the suite. */
import assertStrict from "node:assert/strict";

/** Assert `value` is truthy. */
export function assert(value: unknown, message?: string): asserts value {
  assertStrict.ok(value, message);
}

/** Assert deep strict equality. */
export function assertEquals<T>(
  actual: unknown,
  expected: T,
  message?: string,
): asserts actual is T {
  assertStrict.deepStrictEqual(actual, expected, message);
}

/** Assert `text` matches `pattern`. */
export function assertMatch(text: string, pattern: RegExp, message?: string): void {
  assertStrict.match(text, pattern, message);
}

/** `fn` throws an instance of `type` whose message includes `includes`; returns the error. */
export function assertThrows<E extends Error>(
  fn: () => unknown,
  type: new (...args: never[]) => E,
  includes = "",
): E {
  try {
    fn();
  } catch (error) {
    assert(error instanceof type, `expected ${type.name}, got ${error}`);
    assert(error.message.includes(includes), `"${error.message}" lacks "${includes}"`);
    return error;
  }
  throw new Error(`expected ${type.name}, nothing was thrown`);
}
