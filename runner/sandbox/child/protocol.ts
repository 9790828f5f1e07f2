/**
 * What both loaders and the runner agree on: the loaders' exit codes, the budget of a
 * handler's return value, and the first line each kind of child reads on stdin. Types and
 * constants only, so that importing it runs nothing inside the sandbox.
 * @module
 */

/**
 * Exit codes of the loaders (`exit_words.ts` puts them into words). A code means the same in
 * both loaders; 67 is an exit code in task mode and a task's result status in warm mode.
 */
export const EXIT = {
  /** The task returned (task mode); end of input (warm mode). */
  ok: 0,
  /** The handler threw (task mode; in warm mode a task's result status, not an exit code). */
  threw: 1,
  /** The module has no default export function. */
  noDefault: 64,
  /** The module failed to load (syntax error, missing import, permission denied). */
  loadFailed: 65,
  /** The input on stdin could not be read (a task, a warm handshake or task header). */
  badInput: 66,
  /** The handler returned a value that is not JSON. */
  notJson: 67,
  /** Warm mode: an error escaped every task (uncaught exception or unhandled rejection). */
  escaped: 70,
  /** Task mode: stdin ended while the task ran (the runner is gone). */
  runnerGone: 124,
} as const;

/** Largest handler return value carried back, in bytes of JSON, in both modes. */
export const MAX_RESULT_BYTES = 1_048_576;

/** The line a task-mode child reads first: its one task, then `payloadBytes` of payload. */
export interface Envelope {
  handler: string;
  /** file: URL of the handler module. */
  url: string;
  timeoutMs: number;
  payloadBytes: number;
  /** Prefix of the result line on stderr; handlers never see it (it came on stdin). */
  nonce: string;
  task: Record<string, unknown>;
}

/** The line a warm process reads first, before it imports the handler. */
export interface Handshake {
  /** Marks the control frames; the handler never sees it. */
  nonce: string;
  handler: string;
  /** file: URL of the handler module. */
  url: string;
  /** Tasks run at the same time. */
  concurrency: number;
  /** Longest output line passed on; longer ones are cut and the cut bytes counted. */
  maxLineBytes: number;
}

/** A warm task's header line, then `payloadBytes` of raw JSON payload. */
export interface TaskHeader {
  id: number;
  payloadBytes: number;
  /** Epoch milliseconds, given to the handler as `ctx.deadline`. */
  deadline: number;
  task: Record<string, unknown>;
}
