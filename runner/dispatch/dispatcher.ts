/**
 * The dispatcher: from fetched messages to started tasks, and from outcomes to commits.
 *
 * It holds the cap (a task needs a slot only while it runs), the per-partition ledgers that
 * decide what may be committed, the tasks waiting for their key or for a retry (they hold no
 * slot), and the commit order: an at-most-once task is committed before it starts, an
 * at-least-once task once it reached its final outcome. A batch's processes may start while its
 * commit is on its way (`prepare`); their tasks reach them only after it (`execute`).
 * @module
 */
import type { KafkaMessage } from "kafkajs";
import { backoffMs } from "./delivery_policy.ts";
import type { BatchControl, DispatcherHooks, Job, Rejected } from "./job.ts";
import { TaskRejectedError } from "../errors.ts";
import { KeyLocks } from "./key_locks.ts";
import { parseSkipSet, PartitionLedger, type SkipSet } from "../intake/partition_ledger.ts";
import type { Pool } from "./concurrency_cap.ts";
import type { ChildResult } from "../sandbox/task_sandbox.ts";
import type { DecodedTask } from "../intake/task_decoder.ts";

export type { BatchControl, DispatcherHooks, Job, Rejected } from "./job.ts";

interface PartitionState {
  ledger: PartitionLedger;
  skip: SkipSet;
  commits: Promise<void>;
}

/** Options of a {@link Dispatcher}. */
export interface DispatcherOptions {
  pool: Pool;
  hooks: DispatcherHooks;
  /** Most jobs waiting for their key or a retry before fetching holds back. @default 1000 */
  maxWaiting?: number;
  /** Heartbeat interval while a batch waits. @default 3000 */
  heartbeatIntervalMs?: number;
}

const tp = (topic: string, partition: number) => `${topic}\u0000${partition}`;

/** See the module documentation. */
export class Dispatcher {
  readonly #pool: Pool;
  readonly #hooks: DispatcherHooks;
  readonly #maxWaiting: number;
  readonly #heartbeatMs: number;
  readonly #partitions = new Map<string, PartitionState>();
  /** Jobs that may start as soon as a slot frees (retries due, next of a key). */
  readonly #ready: Job[] = [];
  /** Ordering by key: who holds each key, who waits behind it. */
  readonly #keys = new KeyLocks<Job>();
  readonly #backoff = new Map<Job, ReturnType<typeof setTimeout>>();
  readonly #changed = new Set<() => void>();
  readonly #active = new Set<Promise<void>>();
  #waiting = 0;
  #blocked = 0;
  #stopping = false;

  constructor(options: DispatcherOptions) {
    this.#pool = options.pool;
    this.#hooks = options.hooks;
    this.#maxWaiting = options.maxWaiting ?? 1000;
    this.#heartbeatMs = options.heartbeatIntervalMs ?? 3000;
    this.#pool.onSlotFree(() => {
      this.#pump();
      this.#notify();
    });
  }

  /** True while a batch waits (for a slot, or for waiting jobs to drain). */
  get blocked(): boolean {
    return this.#blocked > 0;
  }

  /** Jobs waiting for a key or a retry (no slot held). */
  get waiting(): number {
    return this.#waiting;
  }

  /** Take a batch: reject, park or start each message in order, as slots allow. */
  async ingest(
    topic: string,
    partition: number,
    messages: KafkaMessage[],
    control: BatchControl,
  ): Promise<void> {
    const state = await this.#state(topic, partition);
    const fetchedAt = performance.now();
    const starting: Job[] = [];
    const rejected: Rejected[] = [];
    let last: string | null = null;

    const flush = async () => {
      if (last === null) return;
      for (const r of rejected) {
        await this.#hooks.reject(r);
        state.ledger.final(BigInt(r.message.offset));
      }
      for (const job of starting) state.ledger.started(BigInt(job.message.offset));
      // The processes start now and get their tasks once the commit is back: its round trip
      // overlaps their start-up instead of coming before it.
      for (const job of starting) this.#hooks.prepare(job);
      try {
        await this.#commit(topic, partition, state, true);
      } catch (error) {
        for (const job of starting) {
          this.#hooks.discard(job);
          this.#pool.release();
        }
        // Nothing uncommitted has started. Forget this partition's state: kafkajs fetches the
        // batch again and the state is rebuilt from what Kafka has committed.
        if (this.#partitions.get(tp(topic, partition)) === state) {
          this.#partitions.delete(tp(topic, partition));
        }
        throw error;
      }
      control.resolveOffset(last);
      last = null;
      rejected.length = 0;
      for (const job of starting.splice(0)) this.#run(job);
    };

    for (const message of messages) {
      if (this.#stopping || !control.active()) break;
      const offset = BigInt(message.offset);
      if (state.ledger.has(offset)) continue; // delivered again after a rebalance: ours already
      if (state.skip.started.has(offset) || state.skip.finished.has(offset)) {
        this.#hooks.skipped(topic, partition, message.offset, state.skip.started.has(offset));
        state.ledger.add(offset, true);
        state.ledger.final(offset);
        last = message.offset;
        continue;
      }
      let task: DecodedTask;
      try {
        task = this.#hooks.decode(topic, partition, message);
      } catch (error) {
        if (!(error instanceof TaskRejectedError)) throw error;
        state.ledger.add(offset, true);
        rejected.push({ topic, partition, message, error });
        last = message.offset;
        continue;
      }
      const policy = this.#hooks.policyFor(task.handler);
      const job: Job = {
        topic,
        partition,
        message,
        task,
        policy,
        attempt: 1,
        fetchedAt,
        readyAt: 0,
      };
      const key = this.#keyOf(job);
      if (key !== null && this.#keys.busy(key)) {
        if (this.#waiting >= this.#maxWaiting) {
          await flush();
          if (!(await this.#until(control, () => this.#waiting < this.#maxWaiting))) break;
        }
        state.ledger.add(offset, policy.atMostOnce);
        this.#keys.acquireOrWait(key, job);
        this.#waiting++;
        last = message.offset;
        continue;
      }
      if (!this.#pool.tryAcquire()) {
        await flush();
        if (!(await this.#until(control, () => this.#pool.tryAcquire()))) break;
      }
      state.ledger.add(offset, policy.atMostOnce);
      if (key !== null) this.#keys.acquireOrWait(key, job);
      job.readyAt = performance.now();
      starting.push(job);
      last = message.offset;
    }
    await flush();
  }

  /**
   * Keep only the partitions in `assigned` (after a rebalance): the others' waiting jobs are
   * dropped (the new owner reads them again) and their ledgers forgotten, so that nothing is
   * committed for them from here.
   */
  retain(assigned: ReadonlySet<string>): void {
    for (const key of [...this.#partitions.keys()]) {
      if (!assigned.has(key)) this.#partitions.delete(key);
    }
    const dropped = this.#dropWaiting((job) => !assigned.has(tp(job.topic, job.partition)));
    if (dropped.length) this.#hooks.handedOver(dropped, "partition revoked by a rebalance");
  }

  /** The key of a partition for {@link retain}. */
  static partitionKey(topic: string, partition: number): string {
    return tp(topic, partition);
  }

  /**
   * Stop taking work: batches stop, waiting jobs are dropped (they were not committed as
   * done, so the next run reads them again). Running jobs go on; call {@link flushCommits}
   * once they have ended.
   */
  stop(): void {
    this.#stopping = true;
    const dropped = this.#dropWaiting(() => true);
    if (dropped.length) this.#hooks.handedOver(dropped, "not started before shutdown");
    this.#notify();
  }

  /** Wait for every commit in progress, then commit what is left. */
  async flushCommits(): Promise<void> {
    for (const [key, state] of this.#partitions) {
      const [topic, partition] = key.split("\u0000");
      await this.#commit(topic, Number(partition), state, false).catch(() => {});
    }
  }

  async #state(topic: string, partition: number): Promise<PartitionState> {
    const key = tp(topic, partition);
    let state = this.#partitions.get(key);
    if (!state) {
      const { offset, metadata } = await this.#hooks.committed(topic, partition);
      state = {
        ledger: new PartitionLedger(),
        skip: parseSkipSet(offset, metadata),
        commits: Promise.resolve(),
      };
      this.#partitions.set(key, state);
    }
    return state;
  }

  /** Commits are chained per partition; each takes the latest state, so they coalesce. */
  #commit(topic: string, partition: number, state: PartitionState, strict: boolean): Promise<void> {
    const next = state.commits.catch(() => {}).then(async () => {
      if (this.#partitions.get(tp(topic, partition)) !== state) return; // revoked meanwhile
      const commit = state.ledger.pendingCommit();
      if (!commit) return;
      await this.#hooks.commit(topic, partition, commit);
      state.ledger.committed(commit);
    });
    state.commits = next;
    if (!strict) {
      next.catch((error) => this.#hooks.commitFailed(topic, partition, error as Error));
    }
    return next;
  }

  #run(job: Job): void {
    const run = this.#hooks.execute(job).then((result) => this.#ended(job, result));
    this.#active.add(run);
    run.finally(() => this.#active.delete(run));
  }

  /** Resolves when no job is running or finishing (outcome published and logged). */
  async settled(): Promise<void> {
    while (this.#active.size > 0) await Promise.allSettled([...this.#active]);
  }

  async #ended(job: Job, result: ChildResult): Promise<void> {
    try {
      await this.#settle(job, result);
    } finally {
      // Released only now, so that "in flight" (started, not final) never exceeds the cap.
      this.#pool.release();
    }
  }

  async #settle(job: Job, result: ChildResult): Promise<void> {
    const { policy } = job;
    const retry = result.outcome !== "ok" && job.attempt < policy.attempts;
    if (retry && this.#stopping) {
      // Not final, so not committed as done: the next run retries it (at-least-once).
      this.#hooks.retrying(job, result, null);
      this.#hooks.handedOver([job], "retry left for the next run");
      return;
    }
    if (retry) {
      const delay = backoffMs(job.attempt, policy);
      this.#hooks.retrying(job, result, delay);
      this.#waiting++;
      this.#backoff.set(
        job,
        setTimeout(() => {
          this.#backoff.delete(job);
          this.#ready.push({ ...job, attempt: job.attempt + 1 });
          this.#pump();
        }, delay),
      );
      return;
    }
    await this.#hooks.finish(job, result);
    const state = this.#partitions.get(tp(job.topic, job.partition));
    state?.ledger.final(BigInt(job.message.offset));
    this.#releaseKey(job);
    if (state) this.#commit(job.topic, job.partition, state, false);
  }

  /** Start ready jobs while slots are free. At-most-once first runs commit before starting. */
  #pump(): void {
    while (this.#ready.length > 0 && !this.#stopping && this.#pool.tryAcquire()) {
      const job = this.#ready.shift()!;
      this.#waiting--;
      this.#notify();
      job.readyAt = performance.now();
      const state = this.#partitions.get(tp(job.topic, job.partition));
      if (!state) {
        this.#pool.release();
        this.#hooks.handedOver([job], "partition revoked by a rebalance");
        continue;
      }
      if (job.attempt > 1 || !job.policy.atMostOnce) {
        this.#run(job);
        continue;
      }
      state.ledger.started(BigInt(job.message.offset));
      this.#commit(job.topic, job.partition, state, true).then(
        () => this.#run(job),
        (error) => {
          // Not committed, so not started: the next owner or run reads it again.
          this.#pool.release();
          this.#hooks.commitFailed(job.topic, job.partition, error as Error);
          this.#hooks.handedOver([job], "its commit failed");
        },
      );
    }
  }

  #keyOf(job: Job): string | null {
    const key = job.message.key;
    return job.policy.byKey && key
      ? `${tp(job.topic, job.partition)}\u0000${key.toString("hex")}`
      : null;
  }

  #releaseKey(job: Job): void {
    const key = this.#keyOf(job);
    if (key === null) return;
    const next = this.#keys.release(key);
    if (next) {
      this.#ready.push(next); // still counted as waiting until it starts
      this.#pump();
    }
  }

  #dropWaiting(which: (job: Job) => boolean): Job[] {
    const dropped: Job[] = [];
    const owners: Job[] = [];
    for (let i = this.#ready.length - 1; i >= 0; i--) {
      if (which(this.#ready[i])) owners.push(...this.#ready.splice(i, 1));
    }
    for (const [job, timer] of this.#backoff) {
      if (!which(job)) continue;
      clearTimeout(timer);
      this.#backoff.delete(job);
      owners.push(job);
    }
    // A dropped job that held its key (ready to start, or waiting for a retry) frees it, with
    // everyone queued behind it: they are read again from Kafka in order.
    for (const job of owners) {
      const key = this.#keyOf(job);
      dropped.push(job, ...(key === null ? [] : this.#keys.forget(key)));
    }
    dropped.push(...this.#keys.drop(which));
    this.#waiting -= dropped.length;
    return dropped;
  }

  #notify(): void {
    for (const listener of this.#changed) listener();
  }

  /** Wait until `condition()` holds (it may take a slot), heartbeating meanwhile. */
  #until(control: BatchControl, condition: () => boolean): Promise<boolean> {
    this.#blocked++;
    return new Promise<boolean>((resolve, reject) => {
      const check = () => {
        if (this.#stopping || !control.active()) return done(false);
        if (condition()) done(true);
      };
      const done = (value: boolean, error?: unknown) => {
        if (!this.#changed.delete(check)) return;
        this.#blocked--;
        clearInterval(beat);
        if (error) reject(error);
        else resolve(value);
      };
      const beat = setInterval(() => {
        control.heartbeat().catch((error) => done(false, error));
        check();
      }, this.#heartbeatMs);
      this.#changed.add(check);
      check();
    });
  }
}
