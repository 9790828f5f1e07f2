/**
 * Rate limits (`rateLimit` in functions.json): a token bucket per function or per key value,
 * on the injected {@link Clock}. The dispatcher asks how long until a start is allowed and
 * sets one timer for it; nothing polls.
 * @module
 */
import type { Clock } from "../clock.ts";

/** A token bucket: `perSecond` tokens a second, at most `burst` saved up; it starts full. */
export class TokenBucket {
  readonly #perMs: number;
  readonly #burst: number;
  #tokens: number;
  #at: number;

  constructor(perSecond: number, burst: number, now: number) {
    if (!(perSecond > 0) || !Number.isFinite(perSecond)) {
      throw new RangeError(
        `Cannot create a token bucket: "perSecond" must be above 0, got ${perSecond}`,
      );
    }
    if (!Number.isSafeInteger(burst) || burst < 1) {
      throw new RangeError(
        `Cannot create a token bucket: "burst" must be a positive integer, got ${burst}`,
      );
    }
    this.#perMs = perSecond / 1000;
    this.#burst = burst;
    this.#tokens = burst;
    this.#at = now;
  }

  /** Milliseconds until a token is there (0: now). */
  waitMs(now: number): number {
    this.#refill(now);
    return this.#tokens >= 1 ? 0 : Math.ceil((1 - this.#tokens) / this.#perMs);
  }

  /** Take a token (call after `waitMs` returned 0). */
  take(now: number): void {
    this.#refill(now);
    this.#tokens -= 1;
  }

  /** True when the bucket is full again (it is then the same as a new one). */
  full(now: number): boolean {
    this.#refill(now);
    return this.#tokens >= this.#burst;
  }

  #refill(now: number): void {
    if (now > this.#at) {
      this.#tokens = Math.min(this.#burst, this.#tokens + (now - this.#at) * this.#perMs);
      this.#at = now;
    }
  }
}

/** The settings of one bucket. */
export interface BucketSpec {
  perSecond: number;
  burst: number;
}

/** Buckets by name, created on first use; full ones are forgotten once there are many. */
export class RateLimiter {
  readonly #clock: Clock;
  readonly #buckets = new Map<string, TokenBucket>();
  readonly #sweepAbove: number;

  /** @param sweepAbove buckets kept before full ones are dropped (a full bucket is a new one). @default 10000 */
  constructor(clock: Clock, sweepAbove = 10_000) {
    this.#clock = clock;
    this.#sweepAbove = sweepAbove;
  }

  /** Milliseconds until bucket `name` allows a start (0: now). */
  waitMs(name: string, spec: BucketSpec): number {
    return this.#bucket(name, spec).waitMs(this.#clock.now());
  }

  /** Take a token of bucket `name`. */
  take(name: string, spec: BucketSpec): void {
    this.#bucket(name, spec).take(this.#clock.now());
  }

  /** Buckets held now. */
  get size(): number {
    return this.#buckets.size;
  }

  #bucket(name: string, spec: BucketSpec): TokenBucket {
    let bucket = this.#buckets.get(name);
    if (!bucket) {
      if (this.#buckets.size >= this.#sweepAbove) this.#sweep();
      bucket = new TokenBucket(spec.perSecond, spec.burst, this.#clock.now());
      this.#buckets.set(name, bucket);
    }
    return bucket;
  }

  #sweep(): void {
    const now = this.#clock.now();
    for (const [name, bucket] of this.#buckets) if (bucket.full(now)) this.#buckets.delete(name);
  }
}
