/**
 * Exit statuses of handler processes, in words for the outcome log.
 * @module
 */

/** Exit codes the sandbox loader uses for its own failures (see `child/task_loader.ts`). */
const LOADER_CODES: Readonly<Record<number, string>> = {
  1: "handler threw (see its stderr)",
  64: "invalid handler: no default export function",
  65: "handler failed to load (syntax error, missing import or permission denied; see its stderr)",
  66: "task could not be read from stdin",
  67: "the handler returned a value that is not JSON",
  124: "the runner went away while the task ran",
};

/** What a signal most likely means for a handler process. */
const SIGNALS: Partial<Record<Deno.Signal, string>> = {
  SIGTRAP: "out of memory (V8 heap cap reached)",
  SIGSEGV: "crashed (segmentation fault)",
  SIGABRT: "aborted",
};

/** Describe a child's exit status: `exit 133: out of memory (V8 heap cap reached)`. */
export function describeExit(code: number, signal: Deno.Signal | null): string {
  if (signal) {
    return SIGNALS[signal] ? `killed by ${signal}: ${SIGNALS[signal]}` : `killed by ${signal}`;
  }
  const meaning = LOADER_CODES[code];
  return meaning ? `exit ${code}: ${meaning}` : `exit ${code}`;
}
