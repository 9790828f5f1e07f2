/**
 * Exit statuses of handler processes, in words for the outcome log: one table for both
 * loaders, whose codes are `EXIT` of `child/protocol.ts`.
 * @module
 */
import { EXIT, MAX_RESULT_BYTES, type ThrownError } from "./child/protocol.ts";

/**
 * What an exit code means: `task` for a task-mode child, `warm` for a warm process that
 * exited while tasks ran there (when it differs; else the task words apply).
 */
const CODES: Readonly<Record<number, { task?: string; warm?: string }>> = {
  [EXIT.ok]: { warm: "the warm sandbox exited while tasks ran (Deno.exit in a handler?)" },
  [EXIT.threw]: {
    task: "handler threw (see its stderr)",
    warm: "the warm sandbox exited (Deno.exit(1) in a handler, or a runtime error)",
  },
  [EXIT.noDefault]: { task: "invalid handler: no default export function" },
  [EXIT.loadFailed]: {
    task:
      "handler failed to load (syntax error, missing import or permission denied; see its stderr)",
  },
  [EXIT.badInput]: {
    task: "task could not be read from stdin",
    warm: "the warm sandbox could not read its input",
  },
  [EXIT.notJson]: { task: "the handler returned a value that is not JSON (see its stderr)" },
  [EXIT.resultTooBig]: {
    task: `the handler returned a value over ${MAX_RESULT_BYTES} bytes as JSON (the result limit)`,
  },
  [EXIT.escaped]: {
    warm: "an error escaped every task (uncaught exception or unhandled rejection)",
  },
  [EXIT.runnerGone]: { task: "the runner went away while the task ran" },
};

/** What a handler threw, in words: `handler threw CardDeclined: card declined`. */
export function describeThrown(error: ThrownError): string {
  return error.message === ""
    ? `handler threw ${error.name}`
    : `handler threw ${error.name}: ${error.message}`;
}

/**
 * A warm task's result status in words (the loader's `r` frame): `handler threw TypeError: …`
 * when what it threw came with the frame, else the words of the same exit code in task mode.
 */
export function describeStatus(status: number, thrown?: ThrownError): string {
  if (status === EXIT.threw && thrown) return describeThrown(thrown);
  return CODES[status]?.task ?? `status ${status}`;
}

/** What a signal most likely means for a handler process. */
const SIGNALS: Partial<Record<Deno.Signal, string>> = {
  SIGTRAP: "out of memory (V8 heap cap reached)",
  SIGSEGV: "crashed (segmentation fault)",
  SIGABRT: "aborted",
};

/**
 * Describe a child's exit status: `exit 65: handler failed to load (…)`, `exit 3`,
 * `killed by SIGTRAP: out of memory (V8 heap cap reached)`. `mode` "warm" describes a warm
 * process that exited while tasks ran there. `thrown`: what a task-mode handler threw, which
 * replaces the generic words of exit 1 (`exit 1: handler threw Error: card declined`).
 */
export function describeExit(
  code: number,
  signal: Deno.Signal | null,
  mode: "task" | "warm" = "task",
  thrown?: ThrownError,
): string {
  if (signal) {
    return SIGNALS[signal] ? `killed by ${signal}: ${SIGNALS[signal]}` : `killed by ${signal}`;
  }
  if (mode === "task" && code === EXIT.threw && thrown) {
    return `exit ${code}: ${describeThrown(thrown)}`;
  }
  const words = CODES[code];
  const meaning = mode === "warm" ? words?.warm ?? words?.task : words?.task;
  return meaning ? `exit ${code}: ${meaning}` : `exit ${code}`;
}
