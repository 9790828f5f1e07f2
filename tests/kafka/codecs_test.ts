/** The codecs of every Kafka codec id, without a broker: round trips, framings, bounds. */
import { Buffer } from "node:buffer";
import * as snappy from "snappyjs";
import xxh32 from "lz4js/xxh32.js";
import { assert, assertEquals, assertMatch } from "../helpers/assert.ts";
import { CodecError, CODECS, GZIP, LZ4, SNAPPY, ZSTD } from "../../runner/kafka/codecs.ts";

const TEXT = new TextEncoder().encode(JSON.stringify({ rows: Array(400).fill({ a: 1, b: "x" }) }));
const MAX = 1 << 20;

async function refusal(promise: Promise<unknown>): Promise<CodecError> {
  try {
    await promise;
  } catch (error) {
    assert(error instanceof CodecError, `expected a CodecError, got ${error}`);
    return error;
  }
  throw new Error("expected a refusal");
}

Deno.test("each codec round-trips and actually compresses", async () => {
  for (const [id, codec] of Object.entries(CODECS)) {
    const compressed = await codec.compress({ buffer: TEXT });
    assert(compressed.length < TEXT.length / 4, `codec ${id}: ${compressed.length} bytes`);
    assertEquals(Buffer.compare(await codec.decompress(compressed, MAX), Buffer.from(TEXT)), 0);
  }
});

Deno.test("each codec refuses output over maxBytes and garbage input", async () => {
  for (const [id, codec] of Object.entries(CODECS)) {
    const compressed = await codec.compress({ buffer: TEXT });
    const big = await refusal(codec.decompress(compressed, 100));
    assertMatch(big.message, /more than 100 bytes|too big/, `codec ${id}`);
    await refusal(codec.decompress(new Uint8Array([0xff, 0xfe, 0xfd, 0, 1, 2, 3, 4]), MAX));
  }
});

Deno.test("snappy reads xerial framing (Java producers) as well as raw blocks", async () => {
  const half = TEXT.length >> 1;
  const chunks = [snappy.compress(TEXT.subarray(0, half)), snappy.compress(TEXT.subarray(half))];
  const header = [0x82, 0x53, 0x4e, 0x41, 0x50, 0x50, 0x59, 0x00, 0, 0, 0, 1, 0, 0, 0, 1];
  const parts = [Buffer.from(header)];
  for (const chunk of chunks) {
    const size = Buffer.alloc(4);
    size.writeInt32BE(chunk.length);
    parts.push(size, Buffer.from(chunk));
  }
  const framed = Buffer.concat(parts);
  assertEquals(Buffer.compare(await SNAPPY.decompress(framed, MAX), Buffer.from(TEXT)), 0);
  const cut = await refusal(SNAPPY.decompress(framed.subarray(0, framed.length - 3), MAX));
  assertMatch(cut.message, /runs past the data/);
});

/** An LZ4 frame of uncompressed blocks, with checksums, as librdkafka may write it. */
function lz4Frame(data: Uint8Array, options: { corruptContentSum?: boolean } = {}): Buffer {
  const flags = 0x40 | 0x20 | 0x10 | 0x04;
  const head = Buffer.from([0x04, 0x22, 0x4d, 0x18, flags, 0x40, 0]);
  head[6] = (xxh32.hash(0, head, 4, 2) >>> 8) & 0xff;
  const size = Buffer.alloc(4);
  size.writeUInt32LE((data.length | 0x80000000) >>> 0);
  const blockSum = Buffer.alloc(4);
  blockSum.writeUInt32LE(xxh32.hash(0, data, 0, data.length));
  const contentSum = Buffer.alloc(4);
  const sum = xxh32.hash(0, data, 0, data.length);
  contentSum.writeUInt32LE((options.corruptContentSum ? sum ^ 1 : sum) >>> 0);
  return Buffer.concat([head, size, Buffer.from(data), blockSum, Buffer.alloc(4), contentSum]);
}

Deno.test("lz4 frames with block and content checksums decode; a wrong checksum is refused", async () => {
  assertEquals(Buffer.compare(await LZ4.decompress(lz4Frame(TEXT), MAX), Buffer.from(TEXT)), 0);
  const bad = await refusal(LZ4.decompress(lz4Frame(TEXT, { corruptContentSum: true }), MAX));
  assertEquals(bad.message, "lz4: content checksum mismatch");
  const frame = lz4Frame(TEXT);
  frame[20] ^= 0xff; // inside the block: the block checksum catches it
  assertEquals((await refusal(LZ4.decompress(frame, MAX))).message, "lz4: block checksum mismatch");
});

Deno.test("gzip and zstd go through node:zlib", async () => {
  assertEquals(GZIP.decompress === ZSTD.decompress, false);
  const zstd = await ZSTD.compress({ buffer: TEXT });
  assertEquals([...zstd.subarray(0, 4)], [0x28, 0xb5, 0x2f, 0xfd]); // zstd frame magic
});
