/**
 * The dispatcher: from fetched messages to started tasks, and from outcomes to commits.
 *
 * It takes a slot of the cap for each task that starts (a task needs one only while it runs),
 * keeps a ledger per partition that decides what may be committed, holds the tasks waiting
 * for their key or for a retry (they hold no slot), and owns the commit point: an at-most-once
 * task is committed before it gets its task (its process may start meanwhile, see
 * {@link Executor.prepare}), an at-least-once task once it reached its final outcome. Every
 * start goes through one path, `#launch`.
 *
 * Flow control (functions.json `maxRunning`, `concurrency`, `rateLimit`, and the not-before
 * header) is checked before a task takes its slot: a task held back waits like a retry, without
 * a slot, in `#ready` (limits: tried again when a task ends or a token is due) or on a timer
 * (delays, backoff), and the batch goes on with the next message. A waiting task is tracked as
 * waiting in its partition's ledger, so the committed offset stays below it until it starts.
 * @module
 */
import type { KafkaMessage } from "kafkajs";
import { type Clock, systemClock } from "../clock.ts";
import { TaskRejectedError } from "../errors.ts";
import type { TopicPartition } from "../intake/topic_partition.ts";
import { BatchWaits } from "./batch_wait.ts";
import { PartitionBook, type PartitionState } from "./partition_book.ts";
import type { DecodedTask } from "../intake/task_decoder.ts";
import type { ChildResult } from "../sandbox/process_source.ts";
import type { ConcurrencyCap, Slot } from "./concurrency_cap.ts";
import { backoffMs } from "./delivery_policy.ts";
import { DEFAULT_MAX_DELAY_MS, delayMs, parseNotBefore } from "./delays.ts";
import { type Blocked, FlowControl, WAIT_REASONS, type WaitReason } from "./flow_control.ts";
import type {
  BatchControl,
  Executor,
  Job,
  PartitionOffsets,
  Rejected,
  Reporter,
  TaskSource,
  WaitObserver,
} from "./job.ts";
import { KeyLocks } from "./key_locks.ts";

export type * from "./job.ts";

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
  /** Header with a task's not-before time (ISO 8601 or epoch ms). @default "x-task-runner-not-before" */
  notBeforeHeader?: string;
  /** Longest delay accepted; a task further ahead is rejected. @default 900000 (15 minutes) */
  maxDelayMs?: number;
  /** Wall-clock time in epoch ms, for not-before times. @default Date.now */
  wallClock?: () => number;
  /** Told how long each task waited before it started. @default none */
  waitObserver?: WaitObserver;
}

/** A job that cannot start yet: held back by a limit, or by the cap. */
type Held = Blocked | { reason: "cap" };

/** Moves tasks from their partitions to their processes (see the module documentation). */
export class Dispatcher {
  readonly #cap: ConcurrencyCap;
  readonly #source: TaskSource;
  readonly #offsets: PartitionOffsets;
  readonly #executor: Executor;
  readonly #reporter: Reporter;
  readonly #clock: Clock;
  readonly #maxWaiting: number;
  readonly #notBeforeHeader: string;
  readonly #maxDelayMs: number;
  readonly #wallClock: () => number;
  readonly #waitObserver: WaitObserver | undefined;
  readonly #flow: FlowControl;
  /** The one timer that tries `#ready` again when a rate-limit token is due. */
  #wake: { at: number; timer: ReturnType<Clock["setTimeout"]> } | null = null;
  /** Batches waiting inside `ingest` for a slot (for the waiting-by-reason metric). */
  #capWaits = 0;
  readonly #partitions: PartitionBook;
  /** Jobs that may start as soon as a slot frees (retries due, next of a key). */
  readonly #ready: Job[] = [];
  /** Ordering by key: who holds each key, who waits behind it. */
  readonly #keys = new KeyLocks<Job>();
  /** Jobs on a timer: a retry's backoff, or a delay. */
  readonly #backoff = new Map<
    Job,
    { timer: ReturnType<Clock["setTimeout"]>; reason: "retry" | "delay" }
  >();
  readonly #waits: BatchWaits;
  readonly #active = new Set<Promise<void>>();
  /** Jobs whose process runs now. */
  readonly #running = new Set<Job>();
  /** Jobs waiting for a key, a retry, a limit or their time (no slot held). */
  #waiting = 0;
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
    this.#notBeforeHeader = options.notBeforeHeader ?? "x-task-runner-not-before";
    this.#maxDelayMs = options.maxDelayMs ?? DEFAULT_MAX_DELAY_MS;
    if (!Number.isSafeInteger(this.#maxDelayMs) || this.#maxDelayMs < 0) {
      throw new RangeError(
        `Cannot create dispatcher: "maxDelayMs" must be an integer >= 0, got ${options.maxDelayMs}`,
      );
    }
    this.#wallClock = options.wallClock ?? Date.now;
    this.#waitObserver = options.waitObserver;
    this.#flow = new FlowControl(this.#clock);
    this.#waits = new BatchWaits(this.#clock, heartbeatMs);
    this.#partitions = new PartitionBook({
      offsets: options.offsets,
      reporter: options.reporter,
      startedHere: (tp) => this.#startedHere(tp),
    });
    this.#cap.onSlotFree(() => this.#pump());
  }

  /** True while a batch waits (for a slot, room in a ledger, or waiting jobs to drain). */
  get blocked(): boolean {
    return this.#waits.blocked;
  }

  /**
   * Tasks waiting now, by what they wait for (a batch waiting for a slot counts as one `cap`).
   * Costs one pass over the waiting tasks (at most `maxWaiting`): for scrapes, not hot paths.
   */
  waitingByReason(): Record<WaitReason, number> {
    const counts = Object.fromEntries(WAIT_REASONS.map((r) => [r, 0])) as Record<
      WaitReason,
      number
    >;
    for (const job of this.#ready) counts[job.waitedFor ?? "cap"]++;
    for (const { reason } of this.#backoff.values()) counts[reason]++;
    counts.key_order += this.#keys.queued;
    counts.cap += this.#capWaits;
    return counts;
  }

  /** Take a batch: reject, park or start each message in order, as slots allow. */
  async ingest(tp: TopicPartition, messages: KafkaMessage[], control: BatchControl): Promise<void> {
    const source = { topic: tp.topic, partition: tp.partition };
    const state = await this.#partitions.load(source);
    const fetchedAt = this.#clock.now();
    const starting: Job[] = [];
    const rejected: Rejected[] = [];
    let last: string | null = null;

    // What has been taken so far starts now (one commit for it if it holds at-most-once first
    // runs), without waiting for that commit before taking the next messages: while it is on
    // its way, the next launches queue behind it and the commit after it covers them all.
    // Offsets are resolved in order, each once its own launch (its commit) succeeded.
    let launched = Promise.resolve();
    let failure: unknown = null;
    const forget = () => {
      // Nothing uncommitted has started. Forget this partition's state: kafkajs fetches the
      // batch again and the state is rebuilt from what Kafka has committed. Its tasks that
      // wait to start are read again with it; those started here are adopted by the new state.
      if (!this.#partitions.forget(source, state)) return;
      const dropped = this.#dropWaiting((job) =>
        job.attempt === 1 && job.topic === source.topic && job.partition === source.partition
      );
      if (dropped.length) this.#reporter.handedOver(dropped, "its partition's commit failed");
    };
    const flush = () => {
      if (last === null) return;
      const upTo = last;
      last = null;
      const launch = this.#launch(state, starting.splice(0), rejected.splice(0));
      launched = launched.then(() => launch).then(
        () => {
          if (failure === null) control.resolveOffset(upTo);
        },
        (error) => {
          failure ??= error;
          forget();
        },
      );
    };

    for (const message of messages) {
      if (this.#stopping || failure !== null || !control.active()) break;
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
        flush();
        if (!(await this.#until(control, () => failure !== null || state.ledger.room > 0))) break;
      }
      let task: DecodedTask;
      let delay = 0;
      try {
        task = this.#source.decode(source, message);
        const notBefore = task.fields.headers[this.#notBeforeHeader];
        if (notBefore !== undefined) {
          const header = this.#notBeforeHeader;
          const at = parseNotBefore(notBefore, header);
          delay = delayMs(at, this.#wallClock(), this.#maxDelayMs, header);
        }
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
        flow: this.#flow.keysOf(task, policy),
        startAt: delay > 0 ? this.#clock.now() + delay : 0,
        waitingSince: fetchedAt,
      };
      // Read for the last time by the flow keys: a big payload is not held twice while it runs.
      task.json = undefined;
      const key = this.#keyOf(job);
      const keyBusy = key !== null && this.#keys.busy(key);
      let admitted: Slot | Held = keyBusy || delay > 0 ? { reason: "cap" } : this.#admit(job);
      if (!keyBusy && delay === 0 && "reason" in admitted && admitted.reason === "cap") {
        job.waitedFor = "cap";
        flush();
        this.#capWaits++;
        const got = await this.#until(control, () => {
          if (failure !== null) return true;
          admitted = this.#admit(job);
          return !("reason" in admitted && admitted.reason === "cap");
        }).finally(() => this.#capWaits--);
        if (!got || failure !== null) break;
      }
      if (keyBusy || delay > 0 || "reason" in admitted) {
        // It waits without a slot (for its key, its time or a limit); the batch goes on.
        let waitedForRoom = false;
        if (this.#waiting >= this.#maxWaiting) {
          flush();
          if (
            !(await this.#until(
              control,
              () => failure !== null || this.#waiting < this.#maxWaiting,
            ))
          ) break;
          waitedForRoom = true;
        }
        state.ledger.add(offset, policy.atMostOnce);
        this.#waiting++;
        last = message.offset;
        if (key !== null && !this.#keys.acquireOrWait(key, job)) {
          job.waitedFor = "key_order";
          continue;
        }
        if (delay > 0) this.#delay(job);
        else {
          job.waitedFor = (admitted as Held).reason;
          this.#ready.push(job);
          // Its limit may have opened while this batch waited for room (else nothing changed
          // since #admit said no, and a pump per parked task would cost a pass over #ready).
          if (waitedForRoom) this.#pump();
          else if ((admitted as Held).reason === "rate_limit") {
            this.#wakeIn((admitted as Blocked).waitMs);
          }
        }
        continue;
      }
      job.slot = admitted;
      state.ledger.add(offset, policy.atMostOnce);
      if (key !== null) this.#keys.acquireOrWait(key, job);
      this.#started(job);
      starting.push(job);
      last = message.offset;
    }
    flush();
    await launched;
    if (failure !== null) throw failure;
  }

  /**
   * Keep only the partitions in `assigned` (after a rebalance): the others' waiting jobs are
   * dropped (the new owner reads them again) and their ledgers forgotten, so that nothing is
   * committed for them from here.
   */
  retain(assigned: readonly TopicPartition[]): void {
    const kept = this.#partitions.retain(assigned);
    const dropped = this.#dropWaiting((job) => !kept.has(job));
    if (dropped.length) this.#reporter.handedOver(dropped, "partition revoked by a rebalance");
  }

  /**
   * Stop taking work: batches stop, waiting jobs are dropped (they were not committed as
   * done, so the next run reads them again). Running jobs go on; call {@link flushCommits}
   * once they have ended.
   */
  stop(): void {
    this.#stopping = true;
    if (this.#wake) this.#clock.clearTimeout(this.#wake.timer);
    this.#wake = null;
    const dropped = this.#dropWaiting(() => true);
    if (dropped.length) this.#reporter.handedOver(dropped, "not started before shutdown");
    this.#notify();
  }

  /** Wait for every commit in progress, then commit what is left. */
  async flushCommits(): Promise<void> {
    for (const [tp, state] of this.#partitions.entries()) {
      await this.#partitions.commit(tp, state, false).catch(() => {});
    }
  }

  /** Resolves when no job is running or finishing (outcome published and logged). */
  async settled(): Promise<void> {
    while (this.#active.size > 0) await Promise.allSettled([...this.#active]);
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
      this.#partitions.commit(tp, state, false);
      for (const job of jobs) this.#run(job);
      return;
    }
    // The processes start now and get their tasks once the commit is back: its round trip
    // overlaps their start-up instead of coming before it.
    for (const job of gated) this.#executor.prepare(job);
    try {
      await this.#partitions.commit(tp, state, true);
    } catch (error) {
      for (const job of gated) this.#executor.discard(job);
      for (const job of jobs) {
        job.held?.();
        job.slot?.release();
      }
      throw error;
    }
    for (const job of jobs) this.#run(job);
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
    const retries = [...this.#backoff.keys(), ...this.#ready].filter((j) => j.attempt > 1);
    return [...this.#running, ...retries]
      .filter(same)
      .sort((a, b) => (BigInt(a.message.offset) < BigInt(b.message.offset) ? -1 : 1));
  }

  async #ended(job: Job, result: ChildResult): Promise<void> {
    this.#running.delete(job);
    try {
      await this.#settle(job, result);
    } finally {
      // Released only now, so that "in flight" (started, not final) never exceeds the cap (or
      // the function's limits); the limits first, so that the slot's pump sees them free.
      job.held?.();
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
      const next: Job = {
        ...job,
        attempt: job.attempt + 1,
        slot: null,
        held: undefined,
        waitedFor: "retry",
        waitingSince: this.#clock.now(),
      };
      this.#timed(next, "retry", delay);
      return;
    }
    const note = job.flow?.note;
    await this.#reporter.finish(
      job,
      note ? { ...result, reason: `${result.reason}; ${note}` } : result,
    );
    const state = this.#partitions.finished(job, BigInt(job.message.offset));
    this.#releaseKey(job);
    if (state) this.#partitions.commit(job, state, false);
    this.#notify(); // room in the ledger for a batch that waits for it
  }

  /**
   * Take the slot for `job` if its limits let it start now (its time has come): the slot, or
   * what holds it back. On success its limits are taken too.
   */
  #admit(job: Job): Slot | Held {
    // The cap first: when it is full the batch waits for it (as without limits), and a task
    // is parked only when its own limits hold it back.
    if (this.#cap.free <= 0 && this.#cap.reserved === 0) return { reason: "cap" };
    if (job.flow) {
      const blocked = this.#flow.blocked(job.flow, job.policy);
      if (blocked) return blocked;
    }
    const slot = this.#cap.tryAcquire();
    if (!slot) return { reason: "cap" };
    if (job.flow) job.held = this.#flow.take(job.flow, job.policy);
    return slot;
  }

  /** The job has its slot and starts now. */
  #started(job: Job): void {
    job.readyAt = this.#clock.now();
    if (job.waitedFor !== undefined && this.#waitObserver) {
      this.#waitObserver.taskWaited(job.waitedFor, job.readyAt - (job.waitingSince ?? job.readyAt));
    }
  }

  /** Park a waiting job on a timer; when it fires the job is ready. */
  #timed(job: Job, reason: "retry" | "delay", ms: number): void {
    const timer = this.#clock.setTimeout(() => {
      this.#backoff.delete(job);
      this.#ready.push(job);
      this.#pump();
    }, ms);
    this.#backoff.set(job, { timer, reason });
  }

  /** A waiting job (it holds its key, if any) whose time has not come: wait for it. */
  #delay(job: Job): void {
    job.waitedFor = "delay";
    this.#timed(job, "delay", Math.max(0, (job.startAt ?? 0) - this.#clock.now()));
  }

  /** Try `#ready` again in `ms` (one timer: the earliest wins). */
  #wakeIn(ms: number): void {
    const at = this.#clock.now() + ms;
    if (this.#wake && this.#wake.at <= at) return;
    if (this.#wake) this.#clock.clearTimeout(this.#wake.timer);
    this.#wake = {
      at,
      timer: this.#clock.setTimeout(() => {
        this.#wake = null;
        this.#pump();
      }, ms),
    };
  }

  /** Start ready jobs (retries due, next of a key, limits open again) while slots are free. */
  #pump(): void {
    const now = this.#clock.now();
    /** Limits found shut in this pass: the jobs behind them keep their places. */
    const shut = new Set<string>();
    let wakeMs = Infinity;
    for (let i = 0; i < this.#ready.length && !this.#stopping;) {
      const job = this.#ready[i];
      const state = this.#partitions.get(job);
      if (!state) {
        this.#ready.splice(i, 1);
        this.#waiting--;
        this.#reporter.handedOver([job], "partition revoked by a rebalance");
        continue;
      }
      // A first run is a new start for the ledger; a retry has started already. The task at
      // the committed offset starts even so: only its start (or end) moves that offset and
      // gives room back, so without it a partition whose room is taken by finished tasks above
      // a waiting one (a delay, a limit, a key) would wait forever. That is at most one entry
      // beyond MAX_ACTIVE per partition (about 27 bytes, inside the metadata's last third).
      if (
        job.attempt === 1 && state.ledger.room <= 0 &&
        state.ledger.watermark !== BigInt(job.message.offset)
      ) {
        i++;
        continue;
      }
      if ((job.startAt ?? 0) > now) {
        this.#ready.splice(i, 1);
        this.#delay(job);
        continue;
      }
      if (job.flow) {
        const blocked = this.#flow.blocked(job.flow, job.policy, shut);
        if (blocked) {
          shut.add(blocked.gate);
          job.waitedFor = blocked.reason;
          if (blocked.waitMs > 0) wakeMs = Math.min(wakeMs, blocked.waitMs);
          i++;
          continue;
        }
      }
      const slot = this.#cap.tryAcquire();
      if (!slot) {
        job.waitedFor = "cap";
        break;
      }
      if (job.flow) job.held = this.#flow.take(job.flow, job.policy);
      this.#ready.splice(i, 1);
      this.#waiting--;
      job.slot = slot;
      this.#started(job);
      this.#launch(state, [job], []).catch((error) => {
        // Not committed, so not started: the next owner or run reads it again.
        this.#reporter.commitFailed(job, error as Error);
        this.#reporter.handedOver([job], "its commit failed");
      });
    }
    if (wakeMs < Infinity && !this.#stopping) this.#wakeIn(wakeMs);
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
    for (const [job, { timer }] of this.#backoff) {
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
    this.#waits.changed();
  }

  /** Wait until `condition()` holds (it may take a slot), heartbeating meanwhile. */
  #until(control: BatchControl, condition: () => boolean): Promise<boolean> {
    return this.#waits.until(control, condition, () => this.#stopping);
  }
}
