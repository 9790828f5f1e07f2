/**
 * The dispatcher's contract: the jobs it moves and the hooks through which the runner starts
 * them, commits for them and reports on them.
 * @module
 */
import type { KafkaMessage } from "kafkajs";
import type { DeliveryPolicy } from "./delivery_policy.ts";
import type { TaskRejectedError } from "../errors.ts";
import type { LedgerCommit } from "../intake/partition_ledger.ts";
import type { ChildResult } from "../sandbox/task_sandbox.ts";
import type { DecodedTask } from "../intake/task_decoder.ts";

/** One task on its way through the runner. */
export interface Job {
  topic: string;
  partition: number;
  message: KafkaMessage;
  task: DecodedTask;
  policy: DeliveryPolicy;
  /** 1 for the first run. */
  attempt: number;
  /** performance.now() when its batch reached the runner. */
  fetchedAt: number;
  /** performance.now() when it got its slot. */
  readyAt: number;
}

/** A rejected message, with why. */
export interface Rejected {
  topic: string;
  partition: number;
  message: KafkaMessage;
  error: TaskRejectedError;
}

/** Where the dispatcher's decisions go: the runner implements this. */
export interface DispatcherHooks {
  decode(topic: string, partition: number, message: KafkaMessage): DecodedTask;
  policyFor(handler: string): DeliveryPolicy;
  /**
   * Start the job's child (a slot is held until its outcome is final or its retry scheduled);
   * resolves with how it ended. Never rejects.
   */
  execute(job: Job): Promise<ChildResult>;
  /**
   * The job is about to be committed and then executed: its process may start now, as long as
   * the task reaches it only in `execute`, after the commit. Never throws.
   */
  prepare(job: Job): void;
  /** The job's commit failed, so it will not be executed: stop what `prepare` started. */
  discard(job: Job): void;
  commit(topic: string, partition: number, commit: LedgerCommit): Promise<void>;
  /** The group's committed offset and metadata for a partition ("-1" when none). */
  committed(topic: string, partition: number): Promise<{ offset: string; metadata: string | null }>;
  /** Final outcome of a job: publish (result, dead letter) and log. Never rejects. */
  finish(job: Job, result: ChildResult): Promise<void>;
  /**
   * A rejected message: publish (dead letter) and log. Called before its offset is committed,
   * so a failed commit can make it happen twice. Never rejects.
   */
  reject(rejected: Rejected): Promise<void>;
  /** A failed attempt that will be retried after `delayMs` (null: by the next run). */
  retrying(job: Job, result: ChildResult, delayMs: number | null): void;
  /** An offset an earlier owner already handled. */
  skipped(topic: string, partition: number, offset: string, started: boolean): void;
  /** Jobs dropped here because this member no longer owns their partition, or is stopping. */
  handedOver(jobs: Job[], why: string): void;
  /** A commit that failed (it is retried with the next one). */
  commitFailed(topic: string, partition: number, error: Error): void;
}

/** What a batch loop needs from kafkajs. */
export interface BatchControl {
  /** False once the batch must stop (stopping, rebalancing). */
  active(): boolean;
  heartbeat(): Promise<void>;
  resolveOffset(offset: string): void;
}
