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
 * unreadable, 124 the backstop deadline passed (the runner itself was gone).
 * @module
 */

interface Envelope {
  handler: string;
  url: string;
  timeoutMs: number;
  backstopMs: number;
  task: Record<string, unknown>;
}

function die(code: number, message: string): never {
  console.error(`task-runner: ${message}`);
  Deno.exit(code);
}

const input = new Uint8Array(await new Response(Deno.stdin.readable).arrayBuffer());
const newline = input.indexOf(10);
let envelope: Envelope;
let payload: unknown;
try {
  const decoder = new TextDecoder();
  envelope = JSON.parse(decoder.decode(input.subarray(0, newline)));
  payload = JSON.parse(decoder.decode(input.subarray(newline + 1)));
} catch (error) {
  die(66, `cannot read the task from stdin: ${(error as Error).message}`);
}

// Backstop for a child whose runner died without killing it: it ends on its own, later than
// the runner's own timeout and kill grace would have ended it.
Deno.unrefTimer(
  setTimeout(() => die(124, `backstop of ${envelope.backstopMs} ms passed`), envelope.backstopMs),
);

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

try {
  await handler({ ...envelope.task, payload }, {
    handler: envelope.handler,
    deadline: new Date(Date.now() + envelope.timeoutMs),
  });
} catch (error) {
  console.error(error instanceof Error ? (error.stack ?? String(error)) : String(error));
  die(1, `handler ${envelope.handler} threw`);
}
Deno.exit(0);
