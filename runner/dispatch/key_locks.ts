/**
 * Ordering by key: one task per key at a time, the others waiting in offset order.
 * @module
 */

/** Per key, who waits behind the task that holds it. A key is busy while it has an entry. */
export class KeyLocks<T> {
  readonly #queues = new Map<string, T[]>();

  /** Take `key` if it is free and return true; else queue `item` behind it and return false. */
  acquireOrWait(key: string, item: T): boolean {
    const queue = this.#queues.get(key);
    if (queue) {
      queue.push(item);
      return false;
    }
    this.#queues.set(key, []);
    return true;
  }

  /** Items waiting behind a holder, over all keys. */
  get queued(): number {
    let n = 0;
    for (const queue of this.#queues.values()) n += queue.length;
    return n;
  }

  /** True if `key` is held. */
  busy(key: string): boolean {
    return this.#queues.has(key);
  }

  /** The holder of `key` is done: return the next waiting item, which now holds the key. */
  release(key: string): T | undefined {
    const queue = this.#queues.get(key);
    const next = queue?.shift();
    if (next === undefined) this.#queues.delete(key);
    return next;
  }

  /** Free `key` and return whoever waited for it. */
  forget(key: string): T[] {
    const queue = this.#queues.get(key) ?? [];
    this.#queues.delete(key);
    return queue;
  }

  /** Remove and return the waiting items `which` selects. */
  drop(which: (item: T) => boolean): T[] {
    const dropped: T[] = [];
    for (const queue of this.#queues.values()) {
      for (let i = queue.length - 1; i >= 0; i--) {
        if (which(queue[i])) dropped.unshift(...queue.splice(i, 1));
      }
    }
    return dropped;
  }
}
