/**
 * Child side of a warm sandbox: the main module of a restricted `deno run` that serves many
 * tasks of one function (see `warm_sandbox.ts` for the runner side). It imports nothing from
 * outside `child/`: it runs with the same few permissions as a task-mode child.
 *
 * Protocol, runner → child on stdin:
 * - first a handshake line (`Handshake` in `protocol.ts`), read before the handler is imported;
 * - then per task a JSON header line (`TaskHeader`) followed by
 *   `payloadBytes` of raw JSON payload. End of input: the runner is gone or retires this
 *   process; it exits at once, whatever is in flight.
 *
 * Child → runner on stderr, one frame per line: `<nonce> <kind> <id> <n> <text>`.
 * - `o`/`e`: a console line of task `id` (0: no task), stdout-like or stderr-like; `n` bytes
 *   were cut off the line;
 * - `r`: task `id` ended; `n` is its status (`EXIT.ok`, `threw` or `notJson`); `text` is the
 *   heap used in bytes, then optionally a space and the JSON return value (at most
 *   `MAX_RESULT_BYTES`), or, for `threw`, what it threw (`ThrownError` as JSON, bounded);
 * - `f`: a fatal line of this loader (it exits right after: 64, 65, 66 or 70).
 *
 * The nonce comes on stdin, so the handler never sees it (argv and env are readable), and it
 * only ever passes through functions captured here before the handler is imported, so a handler
 * that replaces `TextEncoder.prototype.encode` or `Deno.stderr.writeSync` cannot intercept it.
 * Console methods are replaced by a `node:console` Console whose lines are framed with the id
 * of the task whose async context printed them (`AsyncLocalStorage`). Bytes a handler writes
 * with `Deno.stdout`/`Deno.stderr` directly are not framed: the runner attributes them to the
 * sandbox, not to a task.
 *
 * Exit codes are `EXIT` of `protocol.ts`: `ok` at end of input, `noDefault`, `loadFailed`,
 * `badInput`, `escaped`. No timers: a pending timer costs start-up time, and the runner keeps
 * time.
 * @module
 */
import { AsyncLocalStorage } from "node:async_hooks";
import { Console } from "node:console";
import type { Writable } from "node:stream";
import { describe, type Handler, importHandler } from "./handler_module.ts";
import { closeIntrospection } from "./introspection.ts";
import { guardExit, removeWebStorage } from "./lockdown.ts";
import { EXIT, type Handshake, resultJson, type TaskHeader, thrownError } from "./protocol.ts";

interface TaskFrame extends TaskHeader {
  payload: Uint8Array;
}

// Captured before any handler code runs (see the module comment).
const encoder = new TextEncoder();
const encode = encoder.encode.bind(encoder);
const decoder = new TextDecoder();
const decode = decoder.decode.bind(decoder);
const writeStderr = Deno.stderr.writeSync.bind(Deno.stderr);
const readStdin = Deno.stdin.read.bind(Deno.stdin);
const exit: (code?: number) => never = Deno.exit;
const memoryUsage = Deno.memoryUsage;
const later = queueMicrotask;
const apply = Reflect.apply;
const subarray = Uint8Array.prototype.subarray;
const parse = JSON.parse;
const stringify = JSON.stringify;
const current = new AsyncLocalStorage<number>();

removeWebStorage();

/** End of input: exit at once, before anything else (there may be no one left to tell). */
const leaveNow: (code: number) => never = guardExit(exit);
const leave: () => never = () => leaveNow(EXIT.ok);

let input = new Uint8Array(64 * 1024);
let start = 0;
let end = 0;

/** Read more of stdin into `input`; false at end of input. */
async function fill(): Promise<boolean> {
  if (end === input.length) {
    const bigger = new Uint8Array(start > input.length / 2 ? input.length : input.length * 2);
    bigger.set(input.subarray(start, end));
    input.fill(0); // nothing read stays behind in memory the handler could find
    input = bigger;
    end -= start;
    start = 0;
  }
  let n: number | null;
  try {
    n = await readStdin(input.subarray(end));
  } catch {
    n = null; // a broken stdin is the runner gone, like its end
  }
  if (n === null) return false;
  end += n;
  return true;
}

async function readLine(): Promise<string | null> {
  let scanned = start;
  for (;;) {
    const nl = input.subarray(scanned, end).indexOf(10);
    if (nl !== -1) {
      const line = decode(input.subarray(start, scanned + nl));
      start = scanned + nl + 1;
      return line;
    }
    scanned = end;
    const offset = start;
    if (!(await fill())) return null;
    scanned -= offset - start; // fill() may have moved the unread bytes to the front
  }
}

async function readBytes(count: number): Promise<Uint8Array | null> {
  while (end - start < count) {
    if (!(await fill())) return null;
  }
  const bytes = input.slice(start, start + count);
  start += count;
  return bytes;
}

let nonce = "";
let maxLineBytes = 8192;

/**
 * Tasks ended and not yet told: those that end in one go are told in one write, with one
 * reading of the heap (`Deno.memoryUsage` reads /proc: ~8 µs).
 */
let ended: { id: number; status: number; json: string | undefined }[] = [];

function endedFrames(): string {
  if (ended.length === 0) return "";
  const heap = memoryUsage().heapUsed;
  let frames = "";
  // No array methods here (a handler may have replaced them): the nonce passes only through
  // this concatenation.
  for (let i = 0; i < ended.length; i++) {
    const { id, status, json } = ended[i];
    frames += `${nonce} r ${id} ${status} ${heap}${json === undefined ? "" : " " + json}\n`;
  }
  ended = [];
  return frames;
}

/** Write `frames`, after those of tasks ended (a task's lines come before its end). */
function send(frames: string): void {
  const bytes = encode(endedFrames() + frames);
  let offset = 0;
  while (offset < bytes.length) {
    offset += writeStderr(offset === 0 ? bytes : apply(subarray, bytes, [offset]));
  }
}

/** Frame each line of `text` as output of kind `kind` of the current task. */
function sendLines(kind: "o" | "e" | "f", text: string, id = current.getStore() ?? 0): void {
  let frames = "";
  let from = 0;
  while (from < text.length || from === 0) {
    const nl = text.indexOf("\n", from);
    let line = text.slice(from, nl === -1 ? text.length : nl);
    let cut = 0;
    if (line.length * 3 > maxLineBytes) {
      const bytes = encode(line);
      if (bytes.length > maxLineBytes) {
        cut = bytes.length - maxLineBytes;
        line = decode(bytes.subarray(0, maxLineBytes));
      }
    }
    frames += `${nonce} ${kind} ${id} ${cut} ${line}\n`;
    if (nl === -1 || nl === text.length - 1) break;
    from = nl + 1;
  }
  send(frames);
}

function fatal(code: number, message: string): never {
  sendLines("f", `task-runner: ${message}`);
  exit(code);
}

const sink = (kind: "o" | "e") => ({
  write(chunk: string | Uint8Array) {
    sendLines(kind, typeof chunk === "string" ? chunk : decode(chunk));
    return true;
  },
});

function installConsole(): void {
  const framed = new Console({
    stdout: sink("o") as unknown as Writable,
    stderr: sink("e") as unknown as Writable,
    ignoreErrors: false, // with true, Console would also need the stream's event methods
  });
  const target = console as unknown as Record<string, unknown>;
  const source = framed as unknown as Record<string, unknown>;
  for (const key of Object.keys(target)) {
    const method = source[key];
    if (typeof method === "function") target[key] = method.bind(framed);
  }
}

function onEscaped(event: Event, error: unknown): void {
  if (event.defaultPrevented) return; // the handler's own listener dealt with it
  event.preventDefault();
  fatal(EXIT.escaped, `an error escaped every task: ${describe(error)}`);
}

const first = await readLine();
let handshake: Handshake;
try {
  handshake = parse(first ?? "");
} catch (error) {
  fatal(EXIT.badInput, `cannot read the handshake from stdin: ${(error as Error).message}`);
}
nonce = handshake.nonce;
maxLineBytes = handshake.maxLineBytes;
input.fill(0, 0, start); // the handshake (and its nonce) does not stay in the buffer
installConsole();

closeIntrospection(); // the nonce is in this process's memory: see introspection.ts
const handler: Handler = await importHandler(handshake.handler, handshake.url, fatal);
// After the import, so that listeners the module added itself run first and may handle it.
globalThis.addEventListener("error", (e) => onEscaped(e, e.error));
globalThis.addEventListener("unhandledrejection", (e) => onEscaped(e, e.reason));

async function run(frame: TaskFrame): Promise<void> {
  let status: number = EXIT.ok;
  let value: unknown;
  let json: string | undefined;
  try {
    const payload = parse(decode(frame.payload));
    value = await handler({ ...frame.task, payload }, {
      handler: handshake.handler,
      deadline: new Date(frame.deadline),
    });
  } catch (error) {
    status = EXIT.threw;
    sendLines("e", describe(error));
    json = stringify(thrownError(error)); // carried in the `r` frame, in place of a result
  }
  if (status === EXIT.ok) {
    const checked = resultJson(value, { encode, stringify, describe });
    if ("status" in checked) {
      status = checked.status;
      sendLines("e", `task-runner: the handler returned a value, but ${checked.message}`);
    } else {
      json = checked.json;
    }
  }
  if (ended.length === 0) later(() => send(""));
  ended[ended.length] = { id: frame.id, status, json };
}

// The runner sends no more than `concurrency` tasks at a time; frames that come early wait.
// stdin is always being read, so its end (the runner is gone) is seen even while tasks run.
const waiting: TaskFrame[] = [];
let running = 0;
function startWaiting(): void {
  while (running < handshake.concurrency && waiting.length > 0) {
    const frame = waiting.shift()!;
    running++;
    current.run(frame.id, () => run(frame)).finally(() => {
      running--;
      startWaiting();
    });
  }
}

for (;;) {
  const line = await readLine();
  if (line === null) leave();
  let frame: TaskFrame;
  try {
    frame = parse(line);
  } catch (error) {
    fatal(EXIT.badInput, `cannot read a task header from stdin: ${(error as Error).message}`);
  }
  const payload = await readBytes(frame.payloadBytes);
  if (payload === null) leave();
  frame.payload = payload;
  waiting.push(frame);
  startWaiting();
}
