/**
 * Time as the runner's cores see it: injected so that tests can move it (backoff, heartbeats,
 * pacing) without waiting, as std's `FakeTime` does for timers.
 * @module
 */

/** An opaque timer handle. */
export type TimerId = ReturnType<typeof setTimeout>;

/** The clock a core module reads and sets timers on. */
export interface Clock {
  /** Milliseconds, monotonic (as `performance.now()`). */
  now(): number;
  /** Call `fn` once after `ms`. */
  setTimeout(fn: () => void, ms: number): TimerId;
  clearTimeout(id: TimerId): void;
  /** Call `fn` every `ms`. */
  setInterval(fn: () => void, ms: number): TimerId;
  clearInterval(id: TimerId): void;
}

/** The real clock: `performance.now()` and the global timers. */
export const systemClock: Clock = Object.freeze({
  now: () => performance.now(),
  setTimeout: (fn: () => void, ms: number) => setTimeout(fn, ms),
  clearTimeout: (id: TimerId) => clearTimeout(id),
  setInterval: (fn: () => void, ms: number) => setInterval(fn, ms),
  clearInterval: (id: TimerId) => clearInterval(id),
});
