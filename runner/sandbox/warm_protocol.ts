/**
 * The runner's half of the warm sandbox protocol (the child's half is `warm_loader.ts`, which
 * describes it in full): the handshake and task frames it writes to a warm process's stdin,
 * and the control frames it reads back from the process's stderr.
 * @module
 */
import { describeExit } from "./exit_words.ts";
import type { SandboxTask } from "./task_sandbox.ts";

/** Longest JSON return value a warm process passes back, in bytes. */
export const MAX_RESULT_BYTES = 1_048_576;

const ENCODER = new TextEncoder();

/** What the loader learns before it imports the handler. */
export interface Handshake {
  /** Marks the control frames; the handler never sees it. */
  nonce: string;
  handler: string;
  /** file: URL of the handler module. */
  url: string;
  concurrency: number;
  maxLineBytes: number;
  maxResultBytes: number;
}

/** A control frame from a warm process: `<nonce> <kind> <id> <n> <text>`. */
export interface Frame {
  /** `o`/`e` an output line of task `id`, `r` task `id` ended, `f` a fatal line. */
  kind: string;
  /** The task it concerns; 0 for none. */
  id: number;
  /** `o`/`e`: bytes cut off the line; `r`: 0 returned, 1 threw, 67 not JSON. */
  n: number;
  text: string;
}

/** 128 random bits in hex: unguessable, and never given to the handler. */
export function newNonce(): string {
  return Array.from(
    crypto.getRandomValues(new Uint8Array(16)),
    (b) => b.toString(16).padStart(2, "0"),
  )
    .join("");
}

/** The first line a warm process reads. */
export function encodeHandshake(handshake: Handshake): Uint8Array {
  return ENCODER.encode(JSON.stringify(handshake) + "\n");
}

/** One task: a JSON header line, then the raw payload. */
export function encodeTask(id: number, task: SandboxTask): Uint8Array {
  const header = ENCODER.encode(
    JSON.stringify({
      id,
      payloadBytes: task.payload.length,
      deadline: Date.now() + task.timeoutMs,
      task: task.task,
    }) + "\n",
  );
  const frame = new Uint8Array(header.length + task.payload.length);
  frame.set(header);
  frame.set(task.payload, header.length);
  return frame;
}

/**
 * Find the control frame in a stderr line. Anything before the nonce is the rest of a partial
 * line the handler wrote directly (`before`); a line without the nonce is no frame at all.
 */
export function parseFrame(line: string, nonce: string): { before: string; frame: Frame } | null {
  const at = line.indexOf(nonce);
  if (at === -1) return null;
  const from = at + nonce.length + 1;
  const idEnd = line.indexOf(" ", from + 2);
  const nEnd = idEnd === -1 ? -1 : line.indexOf(" ", idEnd + 1);
  return {
    before: line.slice(0, at),
    frame: {
      kind: line[from] ?? "",
      id: Number(idEnd === -1 ? NaN : line.slice(from + 2, idEnd)),
      n: Number(line.slice(idEnd + 1, nEnd === -1 ? line.length : nEnd)),
      text: nEnd === -1 ? "" : line.slice(nEnd + 1),
    },
  };
}

/** Bytes of `text` in UTF-8, without encoding it. */
export function utf8Length(text: string): number {
  let bytes = text.length;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    // 2 bytes below U+0800, 4 per surrogate pair (2 units), else 3
    if (c >= 0x80) bytes += c < 0x800 || (c >= 0xd800 && c < 0xe000) ? 1 : 2;
  }
  return bytes;
}

/** Exit codes of the warm loader that mean something else than in task mode. */
const WARM_CODES: Readonly<Record<number, string>> = {
  0: "exit 0: the warm sandbox exited while tasks ran (Deno.exit in a handler?)",
  1: "exit 1: the warm sandbox exited (Deno.exit(1) in a handler, or a runtime error)",
  66: "exit 66: the warm sandbox could not read its input",
  70: "exit 70: an error escaped every task (uncaught exception or unhandled rejection)",
};

/** A warm process's exit status in words: `exit 70: an error escaped every task (…)`. */
export function describeWarmExit(code: number, signal: Deno.Signal | null): string {
  return signal ? describeExit(code, signal) : WARM_CODES[code] ?? describeExit(code, null);
}
