/**
 * The dispatcher: from fetched messages to started tasks, and from outcomes to commits.
 *
 * It takes a slot of the cap for each task that starts (a task needs one only while it runs),
 * keeps a ledger per partition that decides what may be committed, holds the tasks waiting
 * for their key or for a retry (they hold no slot), and owns the commit point: an at-most-once
 * task is committed before it gets its task (its process may start meanwhile, see
 * {@link Executor.prepare}), an at-least-once task once it reached its final outcome. Every
 * start goes through one path, `#launch`.
 * @module
 */
import type { KafkaMessage } from "kafkajs";
import { type Clock, systemClock } from "../clock.ts";
import { TaskRejectedError } from "../errors.ts";
import { PartitionLedger } from "../intake/partition_ledger.ts";
import { PartitionMap, type TopicPartition } from "../intake/topic_partition.ts";
import type { DecodedTask } from "../intake/task_decoder.ts";
import type { ChildResult } from "../sandbox/process_source.ts";
import type { ConcurrencyCap, Slot } from "./concurrency_cap.ts";
import { backoffMs } from "./delivery_policy.ts";
import type {
  BatchControl,
  Executor,
  Job,
  PartitionOffsets,
  Rejected,
  Reporter,
  TaskSource,
} from "./job.ts";
import { KeyLocks } from "./key_locks.ts";

export type * from "./job.ts";

interface PartitionState {
  ledger: PartitionLedger;
  commits: Promise<void>;
  /** Inherited offsets the last commit's metadata had no room for (reported on change). */
  dropped: number;
}

/** Options of a {@link Dispatcher}. */
export interface DispatcherOptions {
  /** The concurrency cap: a task holds a slot from its start to its outcome. */
  cap: ConcurrencyCap;
  /** Decodes messages and names each handler's delivery rules. */
  source: TaskSource;
  /** The group's offsets (the consumer). */
  offsets: PartitionOffsets;
  /** Runs tasks. */
  executor: Executor;
  /** Hears outcomes and the other events. */
  reporter: Reporter;
  /** Most jobs waiting for their key or a retry before fetching holds back. @default 1000 */
  maxWaiting?: number;
  /** Heartbeat interval while a batch waits. @default 3000 */
  heartbeatIntervalMs?: number;
  /** Time and timers (backoff, heartbeats). @default the system clock */
  clock?: Clock;
}

/** Moves tasks from their partitions to their processes (see the module documentation). */
export class Dispatcher {
  readonly #cap: ConcurrencyCap;
  readonly #source: TaskSource;
  readonly #offsets: PartitionOffsets;
  readonly #executor: Executor;
  readonly #reporter: Reporter;
  readonly #clock: Clock;
  readonly #maxWaiting: number;
  readonly #heartbeatMs: number;
  readonly #partitions = new PartitionMap<PartitionState>();
  /** Partition states being read from the group's committed offsets. */
  readonly #loading = new PartitionMap<Promise<PartitionState>>();
  /** The partitions of the last assignment (null before the first). */
  #assigned: PartitionMap<true> | null = null;
  /** Jobs that may start as soon as a slot frees (retries due, next of a key). */
  readonly #ready: Job[] = [];
  /** Ordering by key: who holds each key, who waits behind it. */
  readonly #keys = new KeyLocks<Job>();
  readonly #backoff = new Map<Job, ReturnType<Clock["setTimeout"]>>();
  readonly #changed = new Set<() => void>();
  readonly #active = new Set<Promise<void>>();
  /** Jobs whose process runs now. */
  readonly #running = new Set<Job>();
  /** Jobs waiting for a key or a retry (no slot held). */
  #waiting = 0;
  #blocked = 0;
  #stopping = false;

  constructor(options: DispatcherOptions) {
    const maxWaiting = options.maxWaiting ?? 1000;
    const heartbeatMs = options.heartbeatIntervalMs ?? 3000;
    for (
      const [name, value] of [["maxWaiting", maxWaiting], ["heartbeatIntervalMs", heartbeatMs]]
    ) {
      if (!Number.isSafeInteger(value) || (value as number) < 1) {
        throw new RangeError(
          `Cannot create dispatcher: "${name}" must be a positive integer, got ${value}`,
        );
      }
    }
    this.#cap = options.cap;
    this.#source = options.source;
    this.#offsets = options.offsets;
    this.#executor = options.executor;
    this.#reporter = options.reporter;
    this.#clock = options.clock ?? systemClock;
    this.#maxWaiting = maxWaiting;
    this.#heartbeatMs = heartbeatMs;
    this.#cap.onSlotFree(() => this.#pump());
  }

  /** True while a batch waits (for a slot, room in a ledger, or waiting jobs to drain). */
  get blocked(): boolean {
    return this.#blocked > 0;
  }

  /** Take a batch: reject, park or start each message in order, as slots allow. */
  async ingest(tp: TopicPartition, messages: KafkaMessage[], control: BatchControl): Promise<void> {
    const source = { topic: tp.topic, partition: tp.partition };
    const state = await this.#state(source);
    const fetchedAt = this.#clock.now();
    const starting: Job[] = [];
    const rejected: Rejected[] = [];
    let last: string | null = null;

    const flush = async () => {
      if (last === null) return;
      try {
        await this.#launch(state, starting.splice(0), rejected.splice(0));
      } catch (error) {
        // Nothing uncommitted has started. Forget this partition's state: kafkajs fetches the
        // batch again and the state is rebuilt from what Kafka has committed. Its tasks that
        // wait to start are read again with it; those started here are adopted by the new state.
        if (this.#partitions.get(source) === state) {
          this.#partitions.delete(source);
          const dropped = this.#dropWaiting((job) =>
            job.attempt === 1 && job.topic === source.topic && job.partition === source.partition
          );
          if (dropped.length) this.#reporter.handedOver(dropped, "its partition's commit failed");
        }
        throw error;
      }
      control.resolveOffset(last);
      last = null;
    };

    for (const message of messages) {
      if (this.#stopping || !control.active()) break;
      const offset = BigInt(message.offset);
      if (state.ledger.seen(offset)) continue; // delivered again after a rebalance: ours already
      const skipped = state.ledger.skip(offset);
      if (skipped) {
        this.#reporter.skipped(source, message.offset, skipped === "started");
        last = message.offset;
        continue;
      }
      if (state.ledger.room - starting.length - rejected.length <= 0) {
        // The commit metadata is as large as it may be: wait for tasks of this partition to end.
        await flush();
        if (!(await this.#until(control, () => state.ledger.room > 0))) break;
      }
      let task: DecodedTask;
      try {
        task = this.#source.decode(source, message);
      } catch (error) {
        if (!(error instanceof TaskRejectedError)) throw error;
        state.ledger.add(offset, true);
        rejected.push({ ...source, message, error });
        last = message.offset;
        continue;
      }
      const policy = this.#source.policyFor(task.handler);
      const job: Job = {
        ...source,
        message,
        task,
        policy,
        attempt: 1,
        slot: null,
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
      let slot: Slot | null = this.#cap.tryAcquire();
      if (!slot) {
        await flush();
        if (!(await this.#until(control, () => (slot = this.#cap.tryAcquire()) !== null))) break;
      }
      job.slot = slot;
      state.ledger.add(offset, policy.atMostOnce);
      if (key !== null) this.#keys.acquireOrWait(key, job);
      job.readyAt = this.#clock.now();
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
  retain(assigned: readonly TopicPartition[]): void {
    const kept = new PartitionMap<true>();
    for (const tp of assigned) kept.set(tp, true);
    this.#assigned = kept;
    for (const [tp] of [...this.#partitions.entries()]) {
      if (!kept.has(tp)) this.#partitions.delete(tp);
    }
    const dropped = this.#dropWaiting((job) => !kept.has(job));
    if (dropped.length) this.#reporter.handedOver(dropped, "partition revoked by a rebalance");
    // Read the new partitions' offsets now, before their first batch: the previous owner's
    // lost tasks are named even when nothing more arrives, and the first batch waits less.
    // A failure here is not lost: the first batch reads them again and fails visibly.
    for (const tp of assigned) this.#state(tp).catch(() => {});
  }

  /**
   * Stop taking work: batches stop, waiting jobs are dropped (they were not committed as
   * done, so the next run reads them again). Running jobs go on; call {@link flushCommits}
   * once they have ended.
   */
  stop(): void {
    this.#stopping = true;
    const dropped = this.#dropWaiting(() => true);
    if (dropped.length) this.#reporter.handedOver(dropped, "not started before shutdown");
    this.#notify();
  }

  /** Wait for every commit in progress, then commit what is left. */
  async flushCommits(): Promise<void> {
    for (const [tp, state] of [...this.#partitions.entries()]) {
      await this.#commit(tp, state, false).catch(() => {});
    }
  }

  /** Resolves when no job is running or finishing (outcome published and logged). */
  async settled(): Promise<void> {
    while (this.#active.size > 0) await Promise.allSettled([...this.#active]);
  }

  /** The state of a partition, read from the group's committed offset the first time. */
  #state(tp: TopicPartition): Promise<PartitionState> {
    const known = this.#partitions.get(tp);
    if (known) return Promise.resolve(known);
    let loading = this.#loading.get(tp);
    if (!loading) {
      const load = async () => {
        const ledger = new PartitionLedger(await this.#offsets.committed(tp));
        const state: PartitionState = { ledger, commits: Promise.resolve(), dropped: 0 };
        if (this.#assigned && !this.#assigned.has(tp)) return state; // revoked meanwhile
        // Tasks this process started under an earlier state of the partition are its own.
        for (const job of this.#startedHere(tp)) {
          ledger.adopt(BigInt(job.message.offset), job.policy.atMostOnce);
        }
        // Started by the previous owner below its committed offset: never fetched again here.
        for (const lost of ledger.takeLostBelow()) {
          this.#reporter.skipped(tp, lost.toString(), true);
        }
        this.#partitions.set(tp, state);
        return state;
      };
      loading = load().finally(() => this.#loading.delete(tp));
      this.#loading.set(tp, loading);
    }
    return loading;
  }

  /**
   * The one way tasks start. Rejected messages are reported and made final; the jobs are
   * marked started; if any is an at-most-once first run, its process is prepared, the
   * partition committed, and only then do the jobs get their tasks. Rejects (with the slots
   * freed and nothing started) when that commit fails.
   */
  async #launch(state: PartitionState, jobs: Job[], rejected: Rejected[]): Promise<void> {
    for (const r of rejected) {
      await this.#reporter.reject(r);
      state.ledger.final(BigInt(r.message.offset));
    }
    if (jobs.length === 0 && rejected.length === 0) return;
    const tp = jobs[0] ?? rejected[0];
    for (const job of jobs) state.ledger.started(BigInt(job.message.offset));
    const gated = jobs.filter((job) => job.attempt === 1 && job.policy.atMostOnce);
    if (gated.length === 0) {
      this.#commit(tp, state, false);
      for (const job of jobs) this.#run(job);
      return;
    }
    // The processes start now and get their tasks once the commit is back: its round trip
    // overlaps their start-up instead of coming before it.
    for (const job of gated) this.#executor.prepare(job);
    try {
      await this.#commit(tp, state, true);
    } catch (error) {
      for (const job of gated) this.#executor.discard(job);
      for (const job of jobs) job.slot?.release();
      throw error;
    }
    for (const job of jobs) this.#run(job);
  }

  /** Commits are chained per partition; each takes the latest state, so they coalesce. */
  #commit(tp: TopicPartition, state: PartitionState, strict: boolean): Promise<void> {
    const next = state.commits.catch(() => {}).then(async () => {
      if (this.#partitions.get(tp) !== state) return; // revoked meanwhile
      const commit = state.ledger.pendingCommit();
      if (!commit) return;
      if (commit.dropped !== state.dropped && commit.dropped > 0) {
        this.#reporter.metadataFull(tp, commit.dropped);
      }
      state.dropped = commit.dropped;
      await this.#offsets.commit(tp, commit);
      state.ledger.committed(commit);
    });
    state.commits = next;
    if (!strict) next.catch((error) => this.#reporter.commitFailed(tp, error as Error));
    return next;
  }

  #run(job: Job): void {
    this.#running.add(job);
    const run = this.#executor.execute(job).then((result) => this.#ended(job, result));
    this.#active.add(run);
    run.finally(() => this.#active.delete(run));
  }

  /** Jobs of `tp` started here that have not ended: running, or waiting for their retry. */
  #startedHere(tp: TopicPartition): Job[] {
    const same = (job: Job) => job.topic === tp.topic && job.partition === tp.partition;
    return [...this.#running, ...this.#backoff.keys(), ...this.#ready.filter((j) => j.attempt > 1)]
      .filter(same)
      .sort((a, b) => (BigInt(a.message.offset) < BigInt(b.message.offset) ? -1 : 1));
  }

  async #ended(job: Job, result: ChildResult): Promise<void> {
    this.#running.delete(job);
    try {
      await this.#settle(job, result);
    } finally {
      // Released only now, so that "in flight" (started, not final) never exceeds the cap.
      job.slot?.release();
    }
  }

  async #settle(job: Job, result: ChildResult): Promise<void> {
    const { policy } = job;
    const retry = result.outcome !== "ok" && job.attempt < policy.attempts;
    if (retry && this.#stopping) {
      // Not final, so not committed as done: the next run retries it (at-least-once).
      this.#reporter.retrying(job, result, null);
      this.#reporter.handedOver([job], "retry left for the next run");
      return;
    }
    if (retry) {
      const delay = backoffMs(job.attempt, policy);
      this.#reporter.retrying(job, result, delay);
      this.#waiting++;
      const next: Job = { ...job, attempt: job.attempt + 1, slot: null };
      this.#backoff.set(
        next,
        this.#clock.setTimeout(() => {
          this.#backoff.delete(next);
          this.#ready.push(next);
          this.#pump();
        }, delay),
      );
      return;
    }
    await this.#reporter.finish(job, result);
    const state = this.#partitions.get(job);
    state?.ledger.final(BigInt(job.message.offset));
    this.#releaseKey(job);
    if (state) this.#commit(job, state, false);
    this.#notify(); // room in the ledger for a batch that waits for it
  }

  /** Start ready jobs (retries due, next of a key) while slots are free. */
  #pump(): void {
    for (let i = 0; i < this.#ready.length && !this.#stopping;) {
      const job = this.#ready[i];
      const state = this.#partitions.get(job);
      if (!state) {
        this.#ready.splice(i, 1);
        this.#waiting--;
        this.#reporter.handedOver([job], "partition revoked by a rebalance");
        continue;
      }
      // A first run is a new start for the ledger; a retry has started already.
      if (job.attempt === 1 && state.ledger.room <= 0) {
        i++;
        continue;
      }
      const slot = this.#cap.tryAcquire();
      if (!slot) break;
      this.#ready.splice(i, 1);
      this.#waiting--;
      job.slot = slot;
      job.readyAt = this.#clock.now();
      this.#launch(state, [job], []).catch((error) => {
        // Not committed, so not started: the next owner or run reads it again.
        this.#reporter.commitFailed(job, error as Error);
        this.#reporter.handedOver([job], "its commit failed");
      });
    }
    this.#notify();
  }

  #keyOf(job: Job): string | null {
    const key = job.message.key;
    return job.policy.byKey && key
      ? `${job.topic}\u0000${job.partition}\u0000${key.toString("hex")}`
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
      this.#clock.clearTimeout(timer);
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
        this.#clock.clearInterval(beat);
        if (error) reject(error);
        else resolve(value);
      };
      const beat = this.#clock.setInterval(() => {
        control.heartbeat().catch((error) => done(false, error));
        check();
      }, this.#heartbeatMs);
      this.#changed.add(check);
      check();
    });
  }
}
