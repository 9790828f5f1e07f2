/**
 * Child side of the sandbox: runs inside the restricted `deno run`, as its main module.
 *
 * It reads one task from stdin (a JSON envelope line, then the raw JSON payload), imports the
 * handler (`handler_module.ts`), calls its default export once and exits. It imports nothing
 * from outside `child/`: it runs with almost no permissions.
 *
 * Started with no arguments (cold), it reads the task first, then imports the handler.
 * Started prewarmed, with `<handler> <url> <ready token>` as arguments, it first starts an
 * async read of stdin (so that it is first in line, before any handler code could read), then
 * imports the handler while it waits and prints the ready token on stderr once it is imported;
 * a handler that fails to load ends the process at once, before any task. A prewarmed process
 * still serves exactly one task.
 *
 * Exit codes are `EXIT` of `protocol.ts`. A JSON return value goes to stderr as one line
 * prefixed with the nonce the runner sent on stdin (`<nonce> <json>`); what a handler threw,
 * bounded, as `<nonce>!<json>` (`ThrownError`).
 * @module
 */
import { describe, type Handler, importHandler } from "./handler_module.ts";
import { guardExit, removeWebStorage } from "./lockdown.ts";
import { type Envelope, EXIT, resultJson, thrownError } from "./protocol.ts";

type Read = (into: Uint8Array) => number | null | Promise<number | null>;

// Captured before any handler code runs: a prewarmed process runs the handler's top-level code
// before it reads the task, and a handler that replaces these must not see the nonce through
// them nor keep this loader from writing its result or exiting.
const Bytes = Uint8Array;
const { indexOf, set, subarray } = Uint8Array.prototype;
const apply = Reflect.apply;
const parse = JSON.parse;
const stringify = JSON.stringify;
const decoder = new TextDecoder();
const decode = decoder.decode.bind(decoder);
const encoder = new TextEncoder();
const encode = encoder.encode.bind(encoder);
const writeStderr = Deno.stderr.writeSync.bind(Deno.stderr);
const readSync: Read = Deno.stdin.readSync.bind(Deno.stdin);
const read: Read = Deno.stdin.read.bind(Deno.stdin);
const exit: (code: number) => never = Deno.exit;
const then = Promise.prototype.then;

removeWebStorage();

/** End of input: the runner is gone. Exit at once; there is no one left to tell why. */
const leave: (code: number) => never = guardExit(exit);

function writeLine(text: string): void {
  const bytes = encode(`${text}\n`);
  for (let n = 0; n < bytes.length;) n += writeStderr(apply(subarray, bytes, [n]));
}

function die(code: number, message: string): never {
  try {
    writeLine(`task-runner: ${message}`);
  } finally {
    exit(code); // even when stderr is broken: a failed write must not leave the process running
  }
}

/**
 * Read the envelope line and `payloadBytes` of payload. `read` is `readSync` when cold:
 * going through Deno.stdin.readable costs ~9 ms more per task.
 */
async function readTask(read: Read): Promise<{ envelope: Envelope; payload: unknown }> {
  let buffer = new Bytes(64 * 1024);
  let length = 0;
  const readAtLeast = async (wanted: number) => {
    while (length < wanted) {
      if (length === buffer.length) {
        const bigger = new Bytes(buffer.length * 2);
        apply(set, bigger, [buffer]);
        buffer = bigger;
      }
      const n = await read(apply(subarray, buffer, [length]));
      if (n === null) leave(EXIT.badInput); // the runner is gone before the whole task came
      length += n;
    }
  };
  try {
    let newline = -1;
    while (newline === -1) {
      await readAtLeast(length + 1);
      newline = apply(indexOf, apply(subarray, buffer, [0, length]), [10]);
    }
    const envelope: Envelope = parse(decode(apply(subarray, buffer, [0, newline])));
    const end = newline + 1 + envelope.payloadBytes;
    await readAtLeast(end);
    return { envelope, payload: parse(decode(apply(subarray, buffer, [newline + 1, end]))) };
  } catch (error) {
    die(EXIT.badInput, `cannot read the task from stdin: ${(error as Error).message}`);
  }
}

// Lifeline: the runner holds stdin open until this process exits. End of input means the
// runner is gone (even after SIGKILL), so the task ends too rather than live on as an orphan.
// An event, not a timer: a pending timer alone costs a no-op task ~9 ms of start-up. Through
// the captured `then`, with no rejection left for a handler's listener to swallow: exit first.
function holdLifeline(): void {
  apply(then, read(new Bytes(1)), [
    (n: number | null) => n === null && leave(EXIT.runnerGone),
    () => leave(EXIT.runnerGone),
  ]);
}

const [prewarmName, prewarmUrl, readyToken] = Deno.args;
let task: { envelope: Envelope; payload: unknown };
let handler: Handler;
if (prewarmUrl === undefined) {
  task = await readTask(readSync);
  holdLifeline();
  handler = await importHandler(task.envelope.handler, task.envelope.url, die);
} else {
  // An idle prewarmed process whose runner goes away sees end of input here and exits (66).
  const reading = readTask(read);
  handler = await importHandler(prewarmName, prewarmUrl, die);
  writeLine(`\n${readyToken}`); // on a line of its own, whatever the handler printed before
  task = await reading;
  if (task.envelope.url !== prewarmUrl) {
    die(EXIT.badInput, `a task for ${task.envelope.url} was sent to the process of ${prewarmUrl}`);
  }
  holdLifeline();
}

const { envelope, payload } = task;
let result: unknown;
try {
  result = await handler({ ...envelope.task, payload }, {
    handler: envelope.handler,
    deadline: new Date(Date.now() + envelope.timeoutMs),
  });
} catch (error) {
  writeLine(describe(error));
  // What it threw, for the outcome's reason and the dead letter: the runner reads this line.
  writeLine(`\n${envelope.nonce}!${stringify(thrownError(error))}`);
  die(EXIT.threw, `handler ${envelope.handler} threw`);
}
const checked = resultJson(result, { encode, stringify, describe });
if ("status" in checked) {
  die(checked.status, `handler ${envelope.handler} returned a value, but ${checked.message}`);
}
if (checked.json !== undefined) writeLine(`\n${envelope.nonce} ${checked.json}`);
exit(EXIT.ok);
