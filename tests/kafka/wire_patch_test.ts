/**
 * The patch of kafkajs's wire decoding, through kafkajs's own RecordBatch encoder and decoder
 * (the code a fetch runs), without a broker.
 */
import { Buffer } from "node:buffer";
import { CompressionCodecs, CompressionTypes } from "kafkajs";
import Decoder from "kafkajs/src/protocol/decoder.js";
import RecordBatchDecoder from "kafkajs/src/protocol/recordBatch/v0/decoder.js";
import { RecordBatch } from "kafkajs/src/protocol/recordBatch/v0/index.js";
import Record from "kafkajs/src/protocol/recordBatch/record/v0/index.js";
import { assert, assertEquals, assertMatch } from "../helpers/assert.ts";
import { installKafkaWirePatch } from "../../runner/kafka/wire_patch.ts";
import { MAX_HEADERS, wireRejection } from "../../runner/kafka/record_headers.ts";
import { batchHeaderBefore, checkRecords } from "../../runner/kafka/batch_guard.ts";

installKafkaWirePatch();

interface Decoded {
  offset: string;
  value: Buffer | null;
  headers: Record<string, unknown>;
}

async function encodeBatch(
  compression: number,
  values: string[],
  options: { firstOffset?: number; headers?: Record<string, string | string[]> } = {},
): Promise<Buffer> {
  const records = values.map((value, i) =>
    Record({ offsetDelta: i, value: Buffer.from(value), headers: options.headers ?? {} })
  );
  // A prefix, so that the batch sits inside a larger buffer as in a fetch response.
  const batch = await RecordBatch({
    compression,
    firstOffset: BigInt(options.firstOffset ?? 0).toString(),
    lastOffsetDelta: values.length - 1,
    records,
  });
  return Buffer.concat([Buffer.from([9, 9, 9]), batch.buffer]).subarray(3);
}

async function decodeBatch(bytes: Buffer): Promise<Decoded[]> {
  return (await RecordBatchDecoder(new Decoder(bytes))).records;
}

const VALUES = [0, 1, 2].map((n) => JSON.stringify({ n, pad: "x".repeat(200) }));

Deno.test("installing is idempotent and registers a codec for every id 1-7", () => {
  assertEquals(installKafkaWirePatch(), false);
  const codecs = CompressionCodecs as unknown as Record<number, () => { decompress: unknown }>;
  for (let id = 1; id <= 7; id++) assertEquals(typeof codecs[id]().decompress, "function");
});

Deno.test("kafkajs decodes batches of every codec through the registered codecs", async () => {
  for (const type of ["GZIP", "Snappy", "LZ4", "ZSTD"] as const) {
    const bytes = await encodeBatch(CompressionTypes[type], VALUES, { firstOffset: 40 });
    const records = await decodeBatch(bytes);
    assertEquals(records.map((r) => r.offset), ["40", "41", "42"], type);
    assertEquals(records.map((r) => r.value?.toString()), VALUES, type);
    assertEquals(records.map((r) => wireRejection(r)), [undefined, undefined, undefined]);
  }
});

Deno.test("an undecodable batch decodes to one rejected placeholder per record, at its offsets", async () => {
  const bytes = await encodeBatch(CompressionTypes.Snappy, VALUES, { firstOffset: 7 });
  // Corrupt the compressed records (after the 61-byte header).
  for (let i = 61 + 2; i < bytes.length; i += 3) bytes[i] ^= 0x55;
  const records = await decodeBatch(bytes);
  assertEquals(records.map((r) => r.offset), ["7", "8", "9"]);
  assertEquals(records.map((r) => r.value), [null, null, null]);
  for (const record of records) {
    assertMatch(
      String(wireRejection(record)),
      /^compressed batch \(snappy, offsets 7-9, 3 messages\) cannot be decoded: /,
    );
    assertEquals(Object.keys(record.headers), []);
  }
});

Deno.test("an unknown codec id is rejected, not decoded as if uncompressed", async () => {
  const bytes = await encodeBatch(CompressionTypes.GZIP, VALUES, { firstOffset: 100 });
  bytes.writeInt16BE(bytes.readInt16BE(21) | 0x07, 21); // attributes: codec id 7
  const records = await decodeBatch(bytes);
  assertEquals(records.map((r) => r.offset), ["100", "101", "102"]);
  assertMatch(String(wireRejection(records[0])), /unknown codec id 7.*no such compression codec/);
});

Deno.test("the batch header is read from the bytes before the records, and checked", async () => {
  const bytes = await encodeBatch(CompressionTypes.GZIP, VALUES, { firstOffset: 5 });
  const records = bytes.subarray(61);
  assertEquals(batchHeaderBefore(records, 1), { firstOffset: "5", lastOffsetDelta: 2, count: 3 });
  assertEquals(batchHeaderBefore(records, 2), null, "codec bits differ");
  assertEquals(batchHeaderBefore(records.subarray(1), 1), null, "length differs");
  assertEquals(batchHeaderBefore(Buffer.from(records), 1), null, "not a view after a header");
  let refused = "";
  try {
    checkRecords(new Uint8Array([0x0c, 0, 0, 0, 1, 1, 0]), {
      firstOffset: "0",
      lastOffsetDelta: 0,
      count: 2,
    });
  } catch (error) {
    refused = (error as Error).message;
  }
  assertEquals(refused, "records end inside a varint");
});

Deno.test("headers within the limit decode as kafkajs decodes them, repeats as arrays", async () => {
  const headers = { php_worker: "echo", trace: ["a", "b"] };
  const [record] = await decodeBatch(await encodeBatch(CompressionTypes.None, ["{}"], { headers }));
  assertEquals(record.headers.php_worker?.toString(), "echo");
  assertEquals((record.headers.trace as Buffer[]).map(String), ["a", "b"]);
  assertEquals(wireRejection(record), undefined);
});

Deno.test("20,000 headers are refused in constant time, without building them", async () => {
  const headers: Record<string, string> = {};
  for (let i = 0; i < 20_000; i++) headers[`h${i}`] = "v";
  const bytes = await encodeBatch(CompressionTypes.None, ["{}"], { headers });
  const started = performance.now();
  const [record] = await decodeBatch(bytes);
  const ms = performance.now() - started;
  assertEquals(
    wireRejection(record),
    `message has 20000 headers, more than the limit of ${MAX_HEADERS}`,
  );
  assertEquals(Object.keys(record.headers), []);
  assert(ms < 200, `decoding took ${ms.toFixed(1)} ms`);
});

Deno.test("headers over 64 KiB are refused even when few", async () => {
  const headers = { php_worker: "echo", big: "z".repeat(70_000) };
  const [record] = await decodeBatch(await encodeBatch(CompressionTypes.None, ["{}"], { headers }));
  assertMatch(
    String(wireRejection(record)),
    /^message headers take 700\d\d bytes, more than the limit of 65536$/,
  );
});
