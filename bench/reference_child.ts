/**
 * The child of the reference bridge: one warm Deno process that imports a handler once and
 * runs one task per stdin line, answering one "ok" line each. No sandbox flags, no framing
 * beyond lines: the least a Kafka-to-warm-process bridge can do.
 */
const handler = (await import(Deno.args[0])).default as (task: unknown) => unknown;
const encoder = new TextEncoder();
const decoder = new TextDecoder();
let pending = "";
for await (const chunk of Deno.stdin.readable) {
  const lines = (pending + decoder.decode(chunk, { stream: true })).split("\n");
  pending = lines.pop()!;
  const acks: Promise<unknown>[] = [];
  for (const line of lines) acks.push(Promise.resolve(handler({ payload: JSON.parse(line) })));
  await Promise.all(acks);
  await Deno.stdout.write(encoder.encode("ok\n".repeat(lines.length)));
}
