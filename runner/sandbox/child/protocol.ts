/**
 * What both loaders and the runner agree on: the loaders' exit codes, the budget of a
 * handler's return value (and its check), and the first line each kind of child reads on
 * stdin. Importing it runs nothing but constant definitions inside the sandbox.
 * @module
 */

/**
 * Exit codes of the loaders (`exit_words.ts` puts them into words). A code means the same in
 * both loaders; 67 and 68 are exit codes in task mode and a task's result status in warm mode.
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
  /** The handler returned a value over {@link MAX_RESULT_BYTES} as JSON. */
  resultTooBig: 68,
  /** Warm mode: an error escaped every task (uncaught exception or unhandled rejection). */
  escaped: 70,
  /** Task mode: stdin ended while the task ran (the runner is gone). */
  runnerGone: 124,
} as const;

/**
 * Largest handler return value carried back, in bytes of JSON, in both modes. It has its own
 * budget: output lines do not count against it, nor it against the output limit.
 */
export const MAX_RESULT_BYTES = 1_048_576;

/** The built-ins {@link resultJson} uses, captured by the loader before the handler ran. */
export interface ResultTools {
  encode: (text: string) => Uint8Array;
  stringify: (value: unknown) => string | undefined;
  /** An error in words, whatever was thrown. */
  describe: (error: unknown) => string;
}

/**
 * The JSON of a return value, or why there is none to carry back: `EXIT.notJson` (with the
 * error) or `EXIT.resultTooBig`. `undefined` stays undefined (no result).
 */
export function resultJson(
  value: unknown,
  tools: ResultTools,
): { json: string | undefined } | { status: number; message: string } {
  const { encode, stringify, describe } = tools;
  let json: string | undefined;
  try {
    json = stringify(value);
  } catch (error) {
    return { status: EXIT.notJson, message: `it is not JSON: ${describe(error)}` };
  }
  // A UTF-16 unit is at most 3 bytes of UTF-8: most results need no encoding to be measured.
  if (json !== undefined && json.length * 3 > MAX_RESULT_BYTES) {
    const bytes = encode(json).length;
    if (bytes > MAX_RESULT_BYTES) {
      return {
        status: EXIT.resultTooBig,
        message: `it is ${bytes} bytes as JSON, over the limit of ${MAX_RESULT_BYTES}`,
      };
    }
  }
  return { json };
}

/** Longest thrown message carried back, in UTF-16 units; a longer one is cut and ends in `…`. */
export const MAX_ERROR_MESSAGE_CHARS = 1024;
/** Stack frames carried back (the first ones), each cut to {@link MAX_FRAME_CHARS}. */
export const MAX_STACK_FRAMES = 5;
/** Longest stack frame carried back, in UTF-16 units. */
export const MAX_FRAME_CHARS = 300;
/** Longest error class name carried back, in UTF-16 units. */
export const MAX_ERROR_NAME_CHARS = 100;

/**
 * What a handler threw, bounded: its class (`name`, or `typeof` for a non-Error), its message
 * and its first stack frames (`at …` lines, without the `at` indentation). The loaders send it
 * as JSON: task mode on its own stderr line prefixed with `<nonce>!`, warm mode after the heap
 * figure of its `r` frame.
 */
export interface ThrownError {
  name: string;
  message: string;
  stack: string[];
}

const cut = (text: string, max: number) => text.length > max ? text.slice(0, max) + "…" : text;

/**
 * {@link ThrownError} of whatever a handler threw. Never throws: a value whose `name`,
 * `message` or `stack` cannot be read becomes a placeholder.
 */
export function thrownError(error: unknown): ThrownError {
  const read = (get: () => unknown, fallback: string): string => {
    try {
      const value = get();
      return typeof value === "string" ? value : fallback;
    } catch {
      return fallback;
    }
  };
  if (!(error instanceof Error)) {
    const text = read(() => String(error), "(a value that cannot be turned into text)");
    return { name: typeof error, message: cut(text, MAX_ERROR_MESSAGE_CHARS), stack: [] };
  }
  const name = read(() => error.name, "Error");
  const message = read(() => error.message, "");
  const stack = read(() => error.stack, "")
    .split("\n", 200)
    .map((line) => line.trim())
    .filter((line) => line.startsWith("at "))
    .slice(0, MAX_STACK_FRAMES)
    .map((line) => cut(line, MAX_FRAME_CHARS));
  return {
    name: cut(name, MAX_ERROR_NAME_CHARS),
    message: cut(message, MAX_ERROR_MESSAGE_CHARS),
    stack,
  };
}

/** The runner's side: a loader's {@link ThrownError} JSON from `from` on, or undefined. */
export function parseThrown(text: string, from = 0): ThrownError | undefined {
  try {
    const value = JSON.parse(text.slice(from));
    if (
      typeof value?.name === "string" && typeof value.message === "string" &&
      Array.isArray(value.stack) && value.stack.every((f: unknown) => typeof f === "string")
    ) return { name: value.name, message: value.message, stack: value.stack };
  } catch {
    // Not the loader's line (it always writes valid JSON): no error to report.
  }
  return undefined;
}

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
