/**
 * The concurrency cap: counts live children and idle prewarmed children, and says when a slot
 * frees.
 * @module
 */

/** A slot held by an idle prewarmed child (see {@link Pool.reserve}). */
export interface Reservation {
  /** Give the slot back: a task took the child, or the child ended. Idempotent. */
  release(): void;
}

/**
 * Holds at most `capacity` slots: one per live task, one per idle prewarmed child
 * (`running + reserved <= capacity`). Reservations never hold back a task: a task that finds
 * the pool full takes the slot of the longest-reserved idle child, which is evicted.
 */
export class Pool {
  readonly capacity: number;
  #running = 0;
  #peak = 0;
  /** Reservations and how to evict their child, oldest first. */
  readonly #reserved = new Map<Reservation, () => void>();
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

  /** Slots held by idle prewarmed children right now. */
  get reserved(): number {
    return this.#reserved.size;
  }

  /** Highest number of live children seen since start. */
  get peak(): number {
    return this.#peak;
  }

  /** Free slots right now (neither running nor reserved). */
  get free(): number {
    return this.capacity - this.#running - this.#reserved.size;
  }

  /**
   * Take a slot for a task. When none is free but an idle prewarmed child holds one, that
   * child is evicted (the oldest reservation) and its slot taken: false only when every slot
   * runs a task.
   */
  tryAcquire(): boolean {
    if (this.free <= 0) {
      const oldest = this.#reserved.entries().next();
      if (oldest.done) return false;
      const [reservation, evict] = oldest.value;
      this.#reserved.delete(reservation);
      evict();
    }
    this.#running++;
    if (this.#running > this.#peak) this.#peak = this.#running;
    return true;
  }

  /** Give a slot back; listeners registered with {@link onSlotFree} are told. */
  release(): void {
    if (this.#running === 0) throw new Error("Pool.release() called with no slot taken");
    this.#running--;
    this.#notifyFree();
    if (this.#running === 0 && this.#idle) {
      this.#idle.resolve();
      this.#idle = null;
    }
  }

  /**
   * Reserve a free slot for an idle prewarmed child, or return null when none is free.
   * `evict` is called (at most once, and then the reservation is already gone) when a task
   * needs the slot: it must end the child at once.
   */
  reserve(evict: () => void): Reservation | null {
    if (this.free <= 0) return null;
    const reservation: Reservation = {
      release: () => {
        if (this.#reserved.delete(reservation)) this.#notifyFree();
      },
    };
    this.#reserved.set(reservation, evict);
    return reservation;
  }

  /** Call `listener` each time a slot frees. Returns a function that removes it. */
  onSlotFree(listener: () => void): () => void {
    this.#onFree.add(listener);
    return () => this.#onFree.delete(listener);
  }

  /** Resolves when no task holds a slot (reservations do not count). */
  idle(): Promise<void> {
    if (this.#running === 0) return Promise.resolve();
    if (!this.#idle) {
      const { promise, resolve } = Promise.withResolvers<void>();
      this.#idle = { promise, resolve };
    }
    return this.#idle.promise;
  }

  #notifyFree(): void {
    for (const listener of this.#onFree) listener();
  }
}
