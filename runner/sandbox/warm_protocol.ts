/**
 * The runner's half of the warm sandbox protocol (the child's half is `warm_loader.ts`, which
 * describes it in full): the handshake and task frames it writes to a warm process's stdin,
 * and the control frames it reads back from the process's stderr.
 * @module
 */
import type { Handshake, TaskHeader } from "./child/protocol.ts";
import type { SandboxTask } from "./process_source.ts";

const ENCODER = new TextEncoder();

/** A control frame from a warm process: `<nonce> <kind> <id> <n> <text>`. */
export interface Frame {
  /** `o`/`e` an output line of task `id`, `r` task `id` ended, `f` a fatal line. */
  kind: string;
  /** The task it concerns; 0 for none. */
  id: number;
  /** `o`/`e`: bytes cut off the line; `r`: the task's status (`EXIT` of `child/protocol.ts`). */
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
  const header: TaskHeader = {
    id,
    payloadBytes: task.payload.length,
    deadline: Date.now() + task.timeoutMs,
    task: task.task,
  };
  const line = ENCODER.encode(JSON.stringify(header) + "\n");
  const frame = new Uint8Array(line.length + task.payload.length);
  frame.set(line);
  frame.set(task.payload, line.length);
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
