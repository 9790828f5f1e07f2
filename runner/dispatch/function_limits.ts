/**
 * Live-task counts per name (a function, or a function's key value) against a maximum: the
 * per-function `maxRunning` and the per-key `concurrency.max` of functions.json.
 * @module
 */

/** Counts of live tasks by name; a name is forgotten when its count is back at 0. */
export class LiveCounts {
  readonly #counts = new Map<string, number>();

  /** Live tasks under `name` now. */
  count(name: string): number {
    return this.#counts.get(name) ?? 0;
  }

  /** True when `name` has `max` live tasks or more. */
  full(name: string, max: number): boolean {
    return this.count(name) >= max;
  }

  /** One more live task under `name`. */
  take(name: string): void {
    this.#counts.set(name, this.count(name) + 1);
  }

  /** One task under `name` ended. */
  release(name: string): void {
    const n = this.count(name) - 1;
    if (n > 0) this.#counts.set(name, n);
    else this.#counts.delete(name);
  }

  /** Names with live tasks (memory is bounded by the tasks that run). */
  get size(): number {
    return this.#counts.size;
  }
}
