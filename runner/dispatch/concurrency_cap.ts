/**
 * The concurrency cap (`MAX_RUNNING`): slots for live tasks and for idle prewarmed children,
 * and a signal when one frees.
 * @module
 */

/** A slot held by a live task. */
export interface Slot {
  /** Give the slot back. Idempotent: a second call does nothing. */
  release(): void;
}

/** A slot held by an idle prewarmed child (see {@link ConcurrencyCap.reserve}). */
export interface Reservation {
  /** Give the slot back: a task took the child, or the child ended. Idempotent. */
  release(): void;
}

/**
 * Holds at most `capacity` slots: one per live task, one per idle prewarmed child
 * (`running + reserved <= capacity`). Reservations never hold back a task: a task that finds
 * the cap full takes the slot of the longest-reserved idle child, which is evicted.
 */
export class ConcurrencyCap {
  readonly capacity: number;
  #running = 0;
  /** Reservations and how to evict their child, oldest first. */
  readonly #reserved = new Map<Reservation, () => void>();
  readonly #onFree = new Set<() => void>();
  #idle: PromiseWithResolvers<void> | null = null;

  /** @param capacity the cap (MAX_RUNNING), a positive integer. */
  constructor(capacity: number) {
    if (!Number.isSafeInteger(capacity) || capacity < 1) {
      throw new RangeError(
        `Cannot create the concurrency cap: "capacity" must be a positive integer, got ${capacity}`,
      );
    }
    this.capacity = capacity;
  }

  /** Slots held by live tasks right now. */
  get running(): number {
    return this.#running;
  }

  /** Slots held by idle prewarmed children right now. */
  get reserved(): number {
    return this.#reserved.size;
  }

  /** Free slots right now (neither running nor reserved). */
  get free(): number {
    return this.capacity - this.#running - this.#reserved.size;
  }

  /**
   * Take a slot for a task. When none is free but an idle prewarmed child holds one, that
   * child is evicted (the oldest reservation) and its slot taken: null only when every slot
   * runs a task.
   */
  tryAcquire(): Slot | null {
    if (this.free <= 0) {
      const oldest = this.#reserved.entries().next();
      if (oldest.done) return null;
      const [reservation, evict] = oldest.value;
      this.#reserved.delete(reservation);
      evict();
    }
    this.#running++;
    let held = true;
    return {
      release: () => {
        if (!held) return;
        held = false;
        this.#running--;
        this.#notifyFree();
        if (this.#running === 0 && this.#idle) {
          this.#idle.resolve();
          this.#idle = null;
        }
      },
    };
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
    this.#idle ??= Promise.withResolvers<void>();
    return this.#idle.promise;
  }

  #notifyFree(): void {
    for (const listener of this.#onFree) listener();
  }
}
