/**
 * Compressed tasks, produced the way other teams' producers do: kcat (librdkafka) with each of
 * Kafka's codecs, and a corrupt lz4 batch that the broker accepts (Kafka does not check lz4
 * content checksums) but that cannot be decoded. None of them stops the consumer.
 */
import { Buffer } from "node:buffer";
import { CompressionCodecs, CompressionTypes } from "kafkajs";
import xxh32 from "lz4js/xxh32.js";
import { assertEquals, assertMatch } from "../helpers/assert.ts";
import {
  brokers,
  createTopic,
  functionsConfig,
  kafkaClients,
  RunnerProcess,
  unique,
} from "../helpers/harness.ts";

/** A JSON payload of `kb` KiB that compresses well: librdkafka sends small batches raw. */
function bigPayload(codec: string, n: number, kb = 6): string {
  const rows = Array.from({ length: kb * 16 }, (_, i) => ({ row: i, codec, text: "lorem ipsum" }));
  return JSON.stringify({ codec, n, rows });
}

/** Produce `values` in one kcat run compressed with `codec` (librdkafka's compression.codec). */
async function kcatCompressed(
  topic: string,
  codec: string,
  values: string[],
  options: { headers: Record<string, string>; partition: number },
): Promise<void> {
  const args = ["-b", brokers(), "-P", "-t", topic, "-z", codec, "-D", "\u0001"];
  for (const [k, v] of Object.entries(options.headers)) args.push("-H", `${k}=${v}`);
  args.push("-p", String(options.partition), "-X", "linger.ms=50");
  const child = new Deno.Command("kcat", { args, stdin: "piped", stdout: "piped", stderr: "piped" })
    .spawn();
  const writer = child.stdin.getWriter();
  await writer.write(new TextEncoder().encode(values.join("\u0001")));
  await writer.close();
  const { code, stderr } = await child.output();
  if (code !== 0) throw new Error(`kcat failed (${code}): ${new TextDecoder().decode(stderr)}`);
}

const CODECS = ["gzip", "snappy", "lz4", "zstd"];

Deno.test("tasks compressed by kcat with gzip, snappy, lz4 and zstd all run, in both delivery modes", async () => {
  const topic = unique("codecs");
  await using config = await functionsConfig({ echo_at_least_once: { delivery: "at-least-once" } });
  await using runner = RunnerProcess.onTopic(topic, {
    TOPIC_PARTITIONS: "2",
    FUNCTIONS_CONFIG: config.path,
  });
  await runner.ready();
  for (const codec of CODECS) {
    const values = [bigPayload(codec, 0), bigPayload(codec, 1)];
    await kcatCompressed(topic, codec, values, { headers: { php_worker: "echo" }, partition: 0 });
    await kcatCompressed(topic, codec, values, {
      headers: { php_worker: "echo_at_least_once" },
      partition: 1,
    });
  }
  const outcomes = await runner.waitForOutcomes(CODECS.length * 4, 90_000);
  assertEquals(outcomes.filter((o) => o.outcome !== "ok"), []);
  for (const handler of ["echo", "echo_at_least_once"]) {
    const seen = runner.output(handler).map((line) => JSON.parse(line).payload);
    for (const codec of CODECS) {
      for (const n of [0, 1]) {
        const payload = seen.find((p) => p.codec === codec && p.n === n);
        assertEquals(payload, JSON.parse(bigPayload(codec, n)), `${handler} ${codec} #${n}`);
      }
    }
  }
  assertEquals(runner.raw.filter((l) => /compression not implemented/i.test(l)), []);
});

/** An LZ4 frame of one uncompressed block whose content checksum is wrong. */
function corruptLz4Frame(data: Uint8Array): Buffer {
  const flags = 0x40 | 0x20 | 0x04; // version 1, independent blocks, content checksum
  const head = Buffer.from([0x04, 0x22, 0x4d, 0x18, flags, 0x40, 0]);
  head[6] = (xxh32.hash(0, head, 4, 2) >>> 8) & 0xff;
  const size = Buffer.alloc(4);
  size.writeUInt32LE((data.length | 0x80000000) >>> 0);
  const sum = Buffer.alloc(4);
  sum.writeUInt32LE((xxh32.hash(0, data, 0, data.length) ^ 0x5a5a5a5a) >>> 0);
  return Buffer.concat([head, size, Buffer.from(data), Buffer.alloc(4), sum]);
}

Deno.test("an undecodable compressed batch is one rejected, dead-lettered task; all else runs", async () => {
  const topic = unique("badbatch");
  const dlq = `${topic}.dlq`;
  await using clients = await kafkaClients();
  await createTopic(clients.admin, topic, 2);
  await createTopic(clients.admin, dlq, 1);
  await using runner = RunnerProcess.onTopic(topic, { DLQ_TOPIC: dlq });
  await runner.ready();
  const codecs = CompressionCodecs as unknown as Record<number, () => unknown>;
  const lz4 = codecs[CompressionTypes.LZ4];
  codecs[CompressionTypes.LZ4] = () => ({
    compress: (encoder: { buffer: Uint8Array }) => Promise.resolve(corruptLz4Frame(encoder.buffer)),
  });
  try {
    await clients.producer.send({
      topic,
      compression: CompressionTypes.LZ4,
      messages: [{ partition: 0, value: '{"bad":1}', headers: { php_worker: "echo" } }],
    });
  } finally {
    codecs[CompressionTypes.LZ4] = lz4;
  }
  for (const partition of [0, 1, 0, 1]) {
    await clients.producer.send({
      topic,
      messages: [{ partition, value: `{"p":${partition}}`, headers: { php_worker: "echo" } }],
    });
  }
  const outcomes = await runner.waitForOutcomes(5);
  const rejected = outcomes.filter((o) => o.outcome === "rejected");
  assertEquals(rejected.length, 1);
  assertEquals([rejected[0].topic, rejected[0].partition, rejected[0].offset], [topic, 0, "0"]);
  assertMatch(
    String(rejected[0].reason),
    /^compressed batch \(lz4, offset 0, 1 messages\) cannot be decoded: lz4: content checksum mismatch$/,
  );
  assertEquals(rejected[0].deadLetter, dlq);
  const ok = outcomes.filter((o) => o.outcome === "ok");
  assertEquals(ok.map((o) => `${o.partition}:${o.offset}`).sort(), ["0:1", "0:2", "1:0", "1:1"]);
  await new Promise((r) => setTimeout(r, 1500));
  assertEquals(runner.outcomes().length, 5, "the bad batch ends in exactly one outcome");
});

Deno.test("our own codecs compress batches the broker accepts and the runner decodes", async () => {
  const topic = unique("ourcodecs");
  await using clients = await kafkaClients();
  await createTopic(clients.admin, topic, 1);
  await using runner = RunnerProcess.onTopic(topic);
  await runner.ready();
  const types = {
    gzip: CompressionTypes.GZIP,
    snappy: CompressionTypes.Snappy,
    lz4: CompressionTypes.LZ4,
    zstd: CompressionTypes.ZSTD,
  };
  for (const [codec, compression] of Object.entries(types)) {
    await clients.producer.send({
      topic,
      compression,
      messages: [0, 1].map((n) => ({
        value: bigPayload(codec, n),
        headers: { php_worker: "echo" },
      })),
    });
  }
  const outcomes = await runner.waitForOutcomes(8);
  assertEquals(outcomes.map((o) => o.outcome), Array(8).fill("ok"));
  const seen = runner.output("echo").map((line) => JSON.stringify(JSON.parse(line).payload));
  const sent = CODECS.flatMap((codec) => [0, 1].map((n) => bigPayload(codec, n)));
  assertEquals(seen.sort(), sent.sort());
});
