/**
 * Child side of the sandbox: runs inside the restricted `deno run`, as its main module.
 *
 * It reads one task from stdin (a JSON envelope line, then the raw JSON payload), imports the
 * handler through a variable specifier (so every module of the handler's graph is checked
 * against the read permission, which covers only the handler's own file), calls its default
 * export once and exits. It imports nothing: it runs with almost no permissions.
 *
 * Exit codes the runner translates into words: 0 ok, 1 the handler threw, 64 the module has
 * no default export function, 65 the module failed to load, 66 the task on stdin was
 * unreadable, 67 the handler returned a value that is not JSON, 124 the runner went away
 * while the task ran. A JSON return value goes to stderr as one line prefixed with the nonce
 * the runner sent on stdin.
 * @module
 */

interface Envelope {
  handler: string;
  url: string;
  timeoutMs: number;
  payloadBytes: number;
  /** Prefix of the result line on stderr; handlers never see it (it came on stdin). */
  nonce: string;
  task: Record<string, unknown>;
}

function die(code: number, message: string): never {
  console.error(`task-runner: ${message}`);
  Deno.exit(code);
}

// The runner writes one JSON envelope line, then `payloadBytes` of raw JSON payload, and keeps
// stdin open while the task runs. Synchronous reads: going through Deno.stdin.readable costs
// ~9 ms more per task.
let buffer = new Uint8Array(64 * 1024);
let length = 0;
function readAtLeast(wanted: number): void {
  while (length < wanted) {
    if (length === buffer.length) {
      const bigger = new Uint8Array(buffer.length * 2);
      bigger.set(buffer);
      buffer = bigger;
    }
    const n = Deno.stdin.readSync(buffer.subarray(length));
    if (n === null) die(66, `stdin ended after ${length} bytes, before the whole task`);
    length += n;
  }
}

let envelope: Envelope;
let payload: unknown;
try {
  let newline = -1;
  while (newline === -1) {
    readAtLeast(length + 1);
    newline = buffer.subarray(0, length).indexOf(10);
  }
  const decoder = new TextDecoder();
  envelope = JSON.parse(decoder.decode(buffer.subarray(0, newline)));
  readAtLeast(newline + 1 + envelope.payloadBytes);
  payload = JSON.parse(
    decoder.decode(buffer.subarray(newline + 1, newline + 1 + envelope.payloadBytes)),
  );
} catch (error) {
  die(66, `cannot read the task from stdin: ${(error as Error).message}`);
}

// Lifeline: the runner holds stdin open until this process exits. End of input means the
// runner is gone (even after SIGKILL), so the task ends too rather than live on as an orphan.
// An event, not a timer: a pending timer alone costs a no-op task ~9 ms of start-up.
Deno.stdin.read(new Uint8Array(1)).then((n) => {
  if (n === null) die(124, "the runner is gone (stdin closed); stopping");
});

let module: Record<string, unknown>;
try {
  const specifier = envelope.url;
  module = await import(specifier);
} catch (error) {
  die(65, `cannot load handler ${envelope.handler}: ${(error as Error).message}`);
}
const handler = module.default;
if (typeof handler !== "function") {
  die(
    64,
    `handler ${envelope.handler} has no default export function ` +
      `(found ${handler === undefined ? "no default export" : typeof handler}); ` +
      "write `export default async function (task, ctx) { ... }`",
  );
}

let result: unknown;
try {
  result = await handler({ ...envelope.task, payload }, {
    handler: envelope.handler,
    deadline: new Date(Date.now() + envelope.timeoutMs),
  });
} catch (error) {
  console.error(error instanceof Error ? (error.stack ?? String(error)) : String(error));
  die(1, `handler ${envelope.handler} threw`);
}
if (result !== undefined) {
  let json: string | undefined;
  try {
    json = JSON.stringify(result);
  } catch (error) {
    die(
      67,
      `handler ${envelope.handler} returned a value that is not JSON: ${(error as Error).message}`,
    );
  }
  if (json !== undefined) {
    const frame = new TextEncoder().encode(`\n${envelope.nonce} ${json}\n`);
    for (let n = 0; n < frame.length;) n += Deno.stderr.writeSync(frame.subarray(n));
  }
}
Deno.exit(0);
