/**
 * A clock whose time moves only when the test says so (as std's `FakeTime`), for the cores
 * that take a {@link Clock}: backoff, heartbeats, pacing.
 * @module
 */
import type { Clock, TimerId } from "../../runner/clock.ts";

interface Timer {
  at: number;
  fn: () => void;
  every: number | null;
}

/** A fake clock: `tick(ms)` moves time and runs the timers that come due, in order. */
export class FakeClock implements Clock {
  #now = 0;
  #nextId = 1;
  readonly #timers = new Map<number, Timer>();

  now(): number {
    return this.#now;
  }

  setTimeout(fn: () => void, ms: number): TimerId {
    return this.#add(fn, ms, null);
  }

  clearTimeout(id: TimerId): void {
    this.#timers.delete(id as unknown as number);
  }

  setInterval(fn: () => void, ms: number): TimerId {
    return this.#add(fn, ms, Math.max(1, ms));
  }

  clearInterval(id: TimerId): void {
    this.#timers.delete(id as unknown as number);
  }

  /** Timers set and not yet run or cleared. */
  get pending(): number {
    return this.#timers.size;
  }

  /** Move time by `ms`, running every timer due meanwhile (and the microtasks after each). */
  async tick(ms: number): Promise<void> {
    const end = this.#now + ms;
    while (true) {
      let next: [number, Timer] | null = null;
      for (const entry of this.#timers) {
        if (entry[1].at <= end && (next === null || entry[1].at < next[1].at)) next = entry;
      }
      if (next === null) break;
      const [id, timer] = next;
      this.#now = timer.at;
      if (timer.every === null) this.#timers.delete(id);
      else timer.at += timer.every;
      timer.fn();
      await flushMicrotasks();
    }
    this.#now = end;
    await flushMicrotasks();
  }

  #add(fn: () => void, ms: number, every: number | null): TimerId {
    const id = this.#nextId++;
    this.#timers.set(id, { at: this.#now + Math.max(0, ms), fn, every });
    return id as unknown as TimerId;
  }
}

/** Let pending promise callbacks run (a real macrotask turn). */
export function flushMicrotasks(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 0));
}
