/**
 * The partitions this member holds, as the dispatcher keeps them: each one's ledger, read
 * from the group's committed offset when it is taken, and its commits, chained one at a time.
 * @module
 */
import { PartitionGoneError } from "../errors.ts";
import { PartitionLedger } from "../intake/partition_ledger.ts";
import { PartitionMap, type TopicPartition } from "../intake/topic_partition.ts";
import type { Job, PartitionOffsets, Reporter } from "./job.ts";

/** One held partition. */
export interface PartitionState {
  readonly ledger: PartitionLedger;
  /** The last commit in the chain. */
  commits: Promise<void>;
  /** The commit queued behind the chain and not begun yet, which later callers share. */
  queued: QueuedCommit | null;
  /** Inherited offsets the last commit's metadata had no room for (reported on change). */
  dropped: number;
  /** Offsets that reached their outcome here since the last commit that recorded them. */
  readonly unrecorded: Set<bigint>;
}

/** A commit not begun yet: it takes the state when it begins, so every caller until then shares it. */
interface QueuedCommit {
  promise: Promise<void>;
  /** A caller waits for it before starting tasks: fail it if the partition is gone. */
  strict: boolean;
  /** A caller does not wait for it: report its failure. */
  lenient: boolean;
}

/** Options of a {@link PartitionBook}. */
export interface PartitionBookOptions {
  /** The group's offsets (the consumer). */
  offsets: PartitionOffsets;
  /** Told of lost tasks, failed commits and full metadata. */
  reporter: Pick<Reporter, "skipped" | "commitFailed" | "metadataFull">;
  /** Tasks of `tp` this process started and that have not ended (adopted by a new state). */
  startedHere(tp: TopicPartition): Job[];
}

/** The held partitions and their commits. */
export class PartitionBook {
  readonly #options: PartitionBookOptions;
  readonly #states = new PartitionMap<PartitionState>();
  /** States forgotten after a failed commit, until their partition is read again. */
  readonly #forgotten = new PartitionMap<PartitionState>();
  /**
   * Offsets of tasks that ended here with no commit recording it before their partition was
   * revoked (a commit failed, or they ended after the revocation): if the partition comes back,
   * its state read from Kafka still lists them as started. Taken over when it is read again;
   * at most the tasks in flight or unrecorded at each revocation.
   */
  readonly #endedUnheld = new PartitionMap<Set<bigint>>();
  /** States being read from the group's committed offsets. */
  readonly #loading = new PartitionMap<Promise<PartitionState>>();
  /** The partitions of the last assignment (null before the first). */
  #assigned: PartitionMap<true> | null = null;

  constructor(options: PartitionBookOptions) {
    this.#options = options;
  }

  /** The state of `tp`, if it is held and read. */
  get(tp: TopicPartition): PartitionState | undefined {
    return this.#states.get(tp);
  }

  /**
   * `offset` of `tp` reached its outcome: mark it final in the partition's state, or, between
   * a failed commit and the state being read again, in the forgotten one (whose finished
   * offsets the new state takes over). Returns the current state, to commit, if there is one.
   */
  finished(tp: TopicPartition, offset: bigint): PartitionState | undefined {
    const state = this.#states.get(tp) ?? this.#forgotten.get(tp);
    if (state) {
      state.ledger.final(offset);
      state.unrecorded.add(offset);
    } else {
      this.#keepEnded(tp, [offset]);
    }
    return this.#states.get(tp);
  }

  /** Every held state. */
  entries(): Array<[TopicPartition, PartitionState]> {
    return [...this.#states.entries()];
  }

  /**
   * Keep only `assigned` (after a rebalance): the others are forgotten, so that nothing is
   * committed for them from here, and the new ones are read now, before their first batch (the
   * previous owner's lost tasks are named even when nothing more arrives). A failure to read
   * is not lost: the first batch reads the state again and fails visibly.
   */
  retain(assigned: readonly TopicPartition[]): PartitionMap<true> {
    const kept = new PartitionMap<true>();
    for (const tp of assigned) kept.set(tp, true);
    this.#assigned = kept;
    for (const [tp, state] of this.entries()) {
      if (kept.has(tp)) continue;
      this.#states.delete(tp);
      this.#keepEnded(tp, state.unrecorded);
    }
    for (const [tp, state] of [...this.#forgotten.entries()]) {
      if (kept.has(tp)) continue;
      this.#forgotten.delete(tp);
      this.#keepEnded(tp, state.unrecorded);
    }
    for (const tp of assigned) this.load(tp).catch(() => {});
    return kept;
  }

  /** Keep `offsets`, ended here with no commit recording them, for a later read of `tp`. */
  #keepEnded(tp: TopicPartition, offsets: Iterable<bigint>): void {
    const ended = this.#endedUnheld.get(tp) ?? new Set<bigint>();
    for (const offset of offsets) ended.add(offset);
    if (ended.size > 0) this.#endedUnheld.set(tp, ended);
  }

  /** Forget `state` of `tp` (its commit failed): it is read again from Kafka. */
  forget(tp: TopicPartition, state: PartitionState): boolean {
    if (this.#states.get(tp) !== state) return false;
    this.#states.delete(tp);
    this.#forgotten.set(tp, state);
    return true;
  }

  /** The state of `tp`, read from the group's committed offset the first time. */
  load(tp: TopicPartition): Promise<PartitionState> {
    const known = this.#states.get(tp);
    if (known) return Promise.resolve(known);
    let loading = this.#loading.get(tp);
    if (!loading) {
      loading = this.#read(tp).finally(() => this.#loading.delete(tp));
      this.#loading.set(tp, loading);
    }
    return loading;
  }

  async #read(tp: TopicPartition): Promise<PartitionState> {
    const ledger = new PartitionLedger(await this.#options.offsets.committed(tp));
    const state: PartitionState = {
      ledger,
      commits: Promise.resolve(),
      queued: null,
      dropped: 0,
      unrecorded: new Set(),
    };
    if (this.#assigned && !this.#assigned.has(tp)) return state; // revoked meanwhile
    // Tasks this process started under an earlier state of the partition are its own, and so
    // are the ones that earlier state saw finish.
    for (const job of this.#options.startedHere(tp)) {
      ledger.adopt(BigInt(job.message.offset), job.policy.atMostOnce);
    }
    // Finished here and not yet recorded by a commit: still unrecorded in the new state, until
    // one of its commits succeeds (if that fails too, the next read needs them again).
    for (const offset of this.#forgotten.get(tp)?.unrecorded ?? []) state.unrecorded.add(offset);
    for (const offset of this.#endedUnheld.get(tp) ?? []) state.unrecorded.add(offset);
    for (const offset of state.unrecorded) ledger.adoptFinished(offset);
    this.#forgotten.delete(tp);
    this.#endedUnheld.delete(tp);
    // Started by the previous owner below its committed offset: never fetched again here.
    for (const lost of ledger.takeLostBelow()) {
      this.#options.reporter.skipped(tp, lost.toString(), true);
    }
    this.#states.set(tp, state);
    return state;
  }

  /**
   * Commit what `state` says now. Commits are chained per partition and each takes the state
   * when it begins, so the calls made while one is on its way share the next one (one snapshot
   * and one round trip for many task ends). `strict`: the caller waits for it and must not start
   * tasks if it fails (a partition no longer held fails it too); otherwise a failure is reported
   * and the next commit carries the state.
   */
  commit(tp: TopicPartition, state: PartitionState, strict: boolean): Promise<void> {
    let queued = state.queued;
    if (!queued) {
      const entry: QueuedCommit = { promise: Promise.resolve(), strict: false, lenient: false };
      entry.promise = state.commits.catch(() => {}).then(async () => {
        state.queued = null; // what changes from here on needs the commit after this one
        if (this.#states.get(tp) !== state) {
          // Revoked (or read again) meanwhile: tasks waiting for this commit must not start.
          if (entry.strict) throw new PartitionGoneError(tp);
          return;
        }
        const commit = state.ledger.pendingCommit();
        const recorded = [...state.unrecorded];
        if (!commit) return;
        if (commit.dropped !== state.dropped && commit.dropped > 0) {
          this.#options.reporter.metadataFull(tp, commit.dropped);
        }
        state.dropped = commit.dropped;
        await this.#options.offsets.commit(tp, commit);
        state.ledger.committed(commit);
        for (const offset of recorded) state.unrecorded.delete(offset);
      });
      entry.promise.catch((error) => {
        if (entry.lenient && !(error instanceof PartitionGoneError)) {
          this.#options.reporter.commitFailed(tp, error as Error);
        }
      });
      queued = state.queued = entry;
      state.commits = entry.promise;
    }
    if (strict) queued.strict = true;
    else queued.lenient = true;
    return queued.promise;
  }
}
