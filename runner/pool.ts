/**
 * The concurrency cap: counts live children and says when a slot frees.
 * @module
 */

/** Holds at most `capacity` slots; one slot per live child. */
export class Pool {
  readonly capacity: number;
  #running = 0;
  #peak = 0;
  #onFree = new Set<() => void>();
  #idle: { promise: Promise<void>; resolve: () => void } | null = null;

  /** @param capacity the cap (MAX_RUNNING), a positive integer. */
  constructor(capacity: number) {
    if (!Number.isSafeInteger(capacity) || capacity < 1) {
      throw new RangeError(
        `Cannot create pool: "capacity" must be a positive integer, got ${capacity}`,
      );
    }
    this.capacity = capacity;
  }

  /** Live children right now. */
  get running(): number {
    return this.#running;
  }

  /** Highest number of live children seen since start. */
  get peak(): number {
    return this.#peak;
  }

  /** Free slots right now. */
  get free(): number {
    return this.capacity - this.#running;
  }

  /** Take a slot if one is free. */
  tryAcquire(): boolean {
    if (this.#running >= this.capacity) return false;
    this.#running++;
    if (this.#running > this.#peak) this.#peak = this.#running;
    return true;
  }

  /** Give a slot back; listeners registered with {@link onSlotFree} are told. */
  release(): void {
    if (this.#running === 0) throw new Error("Pool.release() called with no slot taken");
    this.#running--;
    for (const listener of this.#onFree) listener();
    if (this.#running === 0 && this.#idle) {
      this.#idle.resolve();
      this.#idle = null;
    }
  }

  /** Call `listener` each time a slot frees. Returns a function that removes it. */
  onSlotFree(listener: () => void): () => void {
    this.#onFree.add(listener);
    return () => this.#onFree.delete(listener);
  }

  /** Resolves when no slot is taken. */
  idle(): Promise<void> {
    if (this.#running === 0) return Promise.resolve();
    if (!this.#idle) {
      const { promise, resolve } = Promise.withResolvers<void>();
      this.#idle = { promise, resolve };
    }
    return this.#idle.promise;
  }
}
