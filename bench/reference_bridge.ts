/**
 * A minimal hand-rolled reference for function mode: kafkajs `eachBatch` → one warm Deno
 * process over a pipe, no ledger, no logs, no commits, no sandbox (bench/reference_child.ts).
 * What is left between it and the runner is the runner's own work.
 * @module
 */
import { fileURLToPath } from "node:url";
import { createKafka } from "../runner/kafka/client.ts";
import { unique } from "../tests/helpers/harness.ts";

/** Options of {@link referenceBridge}. */
export interface ReferenceOptions {
  brokers: string;
  /** Tasks to produce and run. */
  count: number;
  /** The handler file. */
  file: string;
  /** Produces `count` no-op tasks to a new 4-partition topic. */
  produce(topic: string, count: number): Promise<void>;
}

/** Tasks per second through the reference bridge. */
export async function referenceBridge(options: ReferenceOptions): Promise<number> {
  const topic = unique("reference");
  await options.produce(topic, options.count);
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      `--allow-read=${options.file}`,
      fileURLToPath(new URL("./reference_child.ts", import.meta.url)),
      options.file,
    ],
    stdin: "piped",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const writer = child.stdin.getWriter();
  const encoder = new TextEncoder();
  const acks = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let acked = 0;
  const waiting: { until: number; resolve: (() => void) | null } = { until: 0, resolve: null };
  (async () => {
    for (;;) {
      const { value, done } = await acks.read();
      if (done) return;
      for (const c of value) if (c === "\n") acked++;
      if (waiting.resolve && acked >= waiting.until) waiting.resolve();
    }
  })();
  const kafka = createKafka({ brokers: options.brokers.split(","), clientId: "reference" });
  const consumer = kafka.consumer({ groupId: topic, maxWaitTimeInMs: 500 });
  // Timed from the group join, as the runner is: fetching is part of the work.
  consumer.on(consumer.events.GROUP_JOIN, () => (started = performance.now()));
  await consumer.connect();
  await consumer.subscribe({ topics: [topic], fromBeginning: true });
  let sent = 0;
  let started = 0;
  const all = Promise.withResolvers<void>();
  await consumer.run({
    autoCommit: false,
    eachBatch: async ({ batch }) => {
      let text = "";
      for (const m of batch.messages) text += `${m.value}\n`;
      sent += batch.messages.length;
      await writer.write(encoder.encode(text));
      if (acked < sent) {
        waiting.until = sent;
        await new Promise<void>((resolve) => (waiting.resolve = resolve));
        waiting.resolve = null;
      }
      if (acked >= options.count) all.resolve();
    },
  });
  await all.promise;
  const rate = options.count / ((performance.now() - started) / 1000);
  await consumer.disconnect();
  await writer.close();
  await child.status;
  return rate;
}
