/**
 * The dispatcher's contract: the jobs it moves, and the four collaborators it works with:
 * where tasks come from ({@link TaskSource}), where offsets go ({@link PartitionOffsets}), what
 * runs a task ({@link Executor}) and who hears how it ended ({@link Reporter}).
 * @module
 */
import type { KafkaMessage } from "kafkajs";
import type { DeliveryPolicy } from "./delivery_policy.ts";
import type { Slot } from "./concurrency_cap.ts";
import type { TaskRejectedError } from "../errors.ts";
import type { LedgerCommit } from "../intake/partition_ledger.ts";
import type { TopicPartition } from "../intake/topic_partition.ts";
import type { DecodedTask } from "../intake/task_decoder.ts";
import type { ChildResult } from "../sandbox/process_source.ts";
import type { FlowKeys, WaitReason } from "./flow_control.ts";

/** One task on its way through the runner, from its partition to its outcome. */
export interface Job extends TopicPartition {
  message: KafkaMessage;
  task: DecodedTask;
  policy: DeliveryPolicy;
  /** 1 for the first run. */
  attempt: number;
  /** The cap's slot while the job runs (null while it waits). */
  slot: Slot | null;
  /** performance.now() when its batch reached the runner. */
  fetchedAt: number;
  /** performance.now() when it got its slot. */
  readyAt: number;
  // Flow control (issue 15); absent: no limits, no delay.
  /** Its flow-control keys, resolved when it was decoded. */
  flow?: FlowKeys;
  /** performance.now() before which it must not start (its not-before header). */
  startAt?: number;
  /** Ends its count under its function's limits (set while it runs). */
  held?: () => void;
  /** What it waited for last, and since when (for the time-waited histogram). */
  waitedFor?: WaitReason;
  waitingSince?: number;
}

/** Told how long each task waited before it started, by what it waited for last. */
export interface WaitObserver {
  taskWaited(reason: WaitReason, ms: number): void;
}

/** A rejected message, with why. */
export interface Rejected extends TopicPartition {
  message: KafkaMessage;
  error: TaskRejectedError;
}

/** Turns messages into tasks, and names each handler's delivery rules. */
export interface TaskSource {
  /** @throws {TaskRejectedError} saying what is wrong with the message. */
  decode(source: TopicPartition, message: KafkaMessage): DecodedTask;
  policyFor(handler: string): DeliveryPolicy;
}

/** The group's offsets of a partition: read once when it is taken, then written. */
export interface PartitionOffsets {
  /** The group's committed offset and metadata ("-1" when none). */
  committed(tp: TopicPartition): Promise<{ offset: string; metadata: string | null }>;
  /** Commit (fenced by the group generation). */
  commit(tp: TopicPartition, commit: LedgerCommit): Promise<void>;
}

/** Runs tasks in processes. */
export interface Executor {
  /**
   * The job is about to be committed and then executed: its process may start now, as long as
   * the task reaches it only in `execute`, after the commit. Never throws.
   */
  prepare(job: Job): void;
  /** The job's commit failed, so it will not be executed: stop what `prepare` started. */
  discard(job: Job): void;
  /** Run the job's task to its end; resolves with how it ended. Never rejects. */
  execute(job: Job): Promise<ChildResult>;
}

/** Hears how tasks end, and the other events of the dispatch (logs, dead letters, results). */
export interface Reporter {
  /** Final outcome of a job: publish (result, dead letter) and log. Never rejects. */
  finish(job: Job, result: ChildResult): Promise<void>;
  /**
   * A rejected message: publish (dead letter) and log. Called before its offset is committed,
   * so a failed commit can make it happen twice. Never rejects.
   */
  reject(rejected: Rejected): Promise<void>;
  /** A failed attempt that will be retried after `delayMs` (null: by the next run). */
  retrying(job: Job, result: ChildResult, delayMs: number | null): void;
  /** An offset an earlier owner already handled (`started`: it ran, its end is unknown). */
  skipped(tp: TopicPartition, offset: string, started: boolean): void;
  /** Jobs dropped here because this member no longer owns their partition, or is stopping. */
  handedOver(jobs: Job[], why: string): void;
  /** A commit that failed (it is retried with the next one). */
  commitFailed(tp: TopicPartition, error: Error): void;
  /** Offsets inherited from the previous owner that the commit metadata had no room for. */
  metadataFull(tp: TopicPartition, dropped: number): void;
}

/** What a batch loop needs from kafkajs. */
export interface BatchControl {
  /** False once the batch must stop (stopping, rebalancing). */
  active(): boolean;
  heartbeat(): Promise<void>;
  resolveOffset(offset: string): void;
}
