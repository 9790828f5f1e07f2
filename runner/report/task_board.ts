/**
 * The runner's live state for the console, read-only from outside: the tasks running now, a
 * bounded ring of recent outcomes (with their last output lines), and outcome counts in
 * ten-second buckets. The hot path does a map insert and delete per task, a ring write per
 * outcome and a bucket increment; nothing is serialised and nobody is told unless a console
 * has subscribed.
 * @module
 */
import type { Executor } from "../dispatch/job.ts";
import type { Outcome } from "./task_reporter.ts";
import type { ThrownError } from "../sandbox/child/protocol.ts";

/** A task running now. */
export interface RunningTask {
  /** Unique within this runner's life; also the id of its outcome in {@link RecentOutcome}. */
  id: number;
  handler: string;
  topic: string;
  partition: number;
  offset: string;
  key: string | null;
  attempt: number;
  /** Epoch ms when it was handed to the executor. */
  startedAt: number;
  timeoutMs: number;
}

/** A task's final outcome, as the console shows it. */
export interface RecentOutcome {
  id: number;
  outcome: Outcome;
  handler: string | null;
  topic: string;
  partition: number;
  offset: string;
  /** Epoch ms when it ended. */
  endedAt: number;
  durationMs: number;
  reason: string;
  attempts: number;
  error: ThrownError | null;
  /** The last output lines of its final attempt (at most {@link MAX_KEPT_LINES}). */
  output: Array<{ stream: "stdout" | "stderr"; line: string }>;
}

/** Outcome counts of one bucket, by handler then outcome. */
export interface OutcomeBucket {
  /** Epoch ms of the bucket's start. */
  at: number;
  counts: Record<string, Partial<Record<Outcome, number>>>;
}

/** What the board tells a subscriber. */
export type BoardEvent =
  | { kind: "started"; task: RunningTask }
  | { kind: "stopped"; position: string }
  | { kind: "ended"; outcome: RecentOutcome };

/** The runner's state the console reads (the board, plus the cap and processes). */
export interface RunnerState {
  readonly running: number;
  readonly maxRunning: number;
  readonly saturated: boolean;
  readonly prewarmedIdle: number;
  readonly warmProcesses: number;
  readonly board: TaskBoard;
}

/**
 * Output kept per task: its last lines, at most this many, and at most
 * {@link MAX_KEPT_OUTPUT_CHARS} UTF-16 units together (a long line is cut to that), so that a
 * full ring of outcomes holds a few MiB at worst.
 */
export const MAX_KEPT_LINES = 20;
/** See {@link MAX_KEPT_LINES}. */
export const MAX_KEPT_OUTPUT_CHARS = 2000;
/** Tasks whose attempt ended and whose outcome is not known yet, kept with their output. */
const MAX_STOPPED = 1000;
/** Bucket width and how many are kept (ten minutes). */
export const BUCKET_MS = 10_000;
const BUCKETS = 60;

/** Options of a {@link TaskBoard}. */
export interface TaskBoardOptions {
  /** Outcomes kept for the Recent page. @default 500 */
  recent?: number;
  /** Epoch milliseconds. @default Date.now */
  now?: () => number;
}

/** What the Runner records as tasks start, print and end. */
export class TaskBoard {
  readonly #running = new Map<
    string,
    RunningTask & { output: RecentOutcome["output"]; chars: number }
  >();
  readonly #recent: Array<RecentOutcome | undefined>;
  #next = 0;
  #ids = 0;
  readonly #stopped = new Map<string, { id: number; output: RecentOutcome["output"] }>();
  readonly #buckets: OutcomeBucket[] = [];
  readonly #subscribers = new Set<(event: BoardEvent) => void>();
  readonly #now: () => number;

  constructor(options: TaskBoardOptions = {}) {
    const size = options.recent ?? 500;
    if (!Number.isInteger(size) || size < 1) {
      throw new RangeError(`TaskBoard: "recent" must be a positive integer, got ${size}`);
    }
    this.#recent = new Array(size);
    this.#now = options.now ?? Date.now;
  }

  /** A task was handed to the executor. */
  started(task: Omit<RunningTask, "id" | "startedAt">): void {
    const entry = { ...task, id: ++this.#ids, startedAt: this.#now(), output: [], chars: 0 };
    this.#running.set(positionOf(task), entry);
    if (this.#subscribers.size > 0) this.#tell({ kind: "started", task: publicTask(entry) });
  }

  /** An output line of a running task (ignored for a task not on the board). */
  output(position: string, stream: "stdout" | "stderr", line: string): void {
    const entry = this.#running.get(position);
    if (!entry) return;
    const kept = line.length > MAX_KEPT_OUTPUT_CHARS
      ? line.slice(0, MAX_KEPT_OUTPUT_CHARS) + "…"
      : line;
    entry.output.push({ stream, line: kept });
    entry.chars += kept.length;
    while (entry.output.length > MAX_KEPT_LINES || entry.chars > MAX_KEPT_OUTPUT_CHARS + 1) {
      entry.chars -= entry.output.shift()!.line.length;
    }
  }

  /**
   * An attempt ended (retried or final): the task is no longer running. Its id and output wait
   * for its outcome ({@link ended}), among at most {@link MAX_STOPPED} such tasks.
   */
  stopped(position: string): void {
    const entry = this.#running.get(position);
    if (!entry) return;
    this.#running.delete(position);
    this.#stopped.delete(position);
    this.#stopped.set(position, { id: entry.id, output: entry.output });
    // Retried tasks wait here for their next attempt; handed-over ones never end here.
    if (this.#stopped.size > MAX_STOPPED) this.#stopped.delete(this.#stopped.keys().next().value!);
    if (this.#subscribers.size > 0) this.#tell({ kind: "stopped", position });
  }

  /** A final outcome. */
  ended(outcome: Omit<RecentOutcome, "id" | "endedAt" | "output">): void {
    const position = positionOf(outcome);
    const stopped = this.#stopped.get(position);
    this.#stopped.delete(position);
    const id = stopped?.id ?? ++this.#ids;
    const output = stopped?.output ?? [];
    const endedAt = this.#now();
    const recent: RecentOutcome = { ...outcome, id, endedAt, output };
    this.#recent[this.#next] = recent;
    this.#next = (this.#next + 1) % this.#recent.length;
    this.#count(endedAt, outcome.handler ?? "(none)", outcome.outcome);
    if (this.#subscribers.size > 0) this.#tell({ kind: "ended", outcome: recent });
  }

  /** The tasks running now, oldest first. */
  running(): RunningTask[] {
    return [...this.#running.values()].map(publicTask);
  }

  /** The recent outcomes, newest first. */
  recent(): RecentOutcome[] {
    const out: RecentOutcome[] = [];
    const n = this.#recent.length;
    for (let i = 1; i <= n; i++) {
      const entry = this.#recent[(this.#next - i + n) % n];
      if (entry) out.push(entry);
    }
    return out;
  }

  /** The outcome counts of the last ten minutes, oldest bucket first. */
  buckets(): OutcomeBucket[] {
    const since = this.#now() - BUCKETS * BUCKET_MS;
    return this.#buckets.filter((b) => b.at > since);
  }

  /** Be told of starts and ends; returns the unsubscribe function. */
  subscribe(listener: (event: BoardEvent) => void): () => void {
    this.#subscribers.add(listener);
    return () => this.#subscribers.delete(listener);
  }

  #count(at: number, handler: string, outcome: Outcome): void {
    const start = at - (at % BUCKET_MS);
    let bucket = this.#buckets.at(-1);
    if (!bucket || bucket.at !== start) {
      bucket = { at: start, counts: {} };
      this.#buckets.push(bucket);
      if (this.#buckets.length > BUCKETS) this.#buckets.shift();
    }
    const counts = bucket.counts[handler] ??= {};
    counts[outcome] = (counts[outcome] ?? 0) + 1;
  }

  #tell(event: BoardEvent): void {
    for (const listener of this.#subscribers) {
      try {
        listener(event);
      } catch {
        // A console connection that broke; it unsubscribes itself when its stream closes.
      }
    }
  }
}

/** `topic/partition@offset`, the key of a task on the board. */
export const positionOf = (t: { topic: string; partition: number; offset: string }) =>
  `${t.topic}/${t.partition}@${t.offset}`;

function publicTask(entry: RunningTask & { output?: unknown; chars?: number }): RunningTask {
  const { output: _output, chars: _chars, ...task } = entry;
  return task;
}

/** Wrap `executor` so that the board knows which tasks run (a map insert and delete each). */
export function onBoard(
  executor: Executor,
  board: TaskBoard,
  timeoutOf: (handler: string) => number,
): Executor {
  return {
    prepare: (job) => executor.prepare(job),
    discard: (job) => executor.discard(job),
    execute: async (job) => {
      const key = job.message.key;
      board.started({
        handler: job.task.handler,
        topic: job.topic,
        partition: job.partition,
        offset: job.message.offset,
        key: key === null || key === undefined ? null : String(key).slice(0, 200),
        attempt: job.attempt,
        timeoutMs: timeoutOf(job.task.handler),
      });
      try {
        return await executor.execute(job);
      } finally {
        board.stopped(positionOf({ ...job, offset: job.message.offset }));
      }
    },
  };
}
