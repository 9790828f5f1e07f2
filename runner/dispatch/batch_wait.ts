/**
 * How a batch waits inside `eachBatch` (for a slot, room in a ledger, waiting tasks to drain)
 * without sleeping or polling: it is woken by the dispatcher's changes and heartbeats the
 * group meanwhile, so kafkajs fetches nothing more and the member stays in the group.
 * @module
 */
import type { Clock } from "../clock.ts";
import type { BatchControl } from "./job.ts";

/** Batches that wait, and the signal that wakes them. */
export class BatchWaits {
  readonly #clock: Clock;
  readonly #heartbeatMs: number;
  readonly #waiting = new Set<() => void>();

  /**
   * @param clock the timers for heartbeats.
   * @param heartbeatMs how often a waiting batch heartbeats the group.
   */
  constructor(clock: Clock, heartbeatMs: number) {
    this.#clock = clock;
    this.#heartbeatMs = heartbeatMs;
  }

  /** True while a batch waits. */
  get blocked(): boolean {
    return this.#waiting.size > 0;
  }

  /** Something changed (a slot freed, a task ended, a stop): waiting batches check again. */
  changed(): void {
    for (const check of this.#waiting) check();
  }

  /**
   * Wait until `condition()` holds (it may take a slot), heartbeating meanwhile. Resolves
   * false when `stopped()` or the batch is no longer active; rejects if a heartbeat fails.
   */
  until(control: BatchControl, condition: () => boolean, stopped: () => boolean): Promise<boolean> {
    return new Promise<boolean>((resolve, reject) => {
      const check = () => {
        if (stopped() || !control.active()) return done(false);
        if (condition()) done(true);
      };
      const done = (value: boolean, error?: unknown) => {
        if (!this.#waiting.delete(check)) return;
        this.#clock.clearInterval(beat);
        if (error) reject(error);
        else resolve(value);
      };
      const beat = this.#clock.setInterval(() => {
        control.heartbeat().catch((error) => done(false, error));
        check();
      }, this.#heartbeatMs);
      this.#waiting.add(check);
      check();
    });
  }
}
