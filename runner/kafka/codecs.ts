/**
 * Compression codecs for every codec id Kafka has, in pure JS or Deno's built-in zlib: no native
 * build, no install-time download. Each codec turns the bytes kafkajs hands over into the
 * decompressed records section of one RecordBatch, and back.
 *
 * - gzip (1) and zstd (4): `node:zlib`, which Deno 2.9 implements natively (`zstdCompress` /
 *   `zstdDecompress` included).
 * - snappy (2): `snappyjs` for the raw blocks, with the xerial framing (`\x82SNAPPY\0`, what
 *   Java producers write) unwrapped here; librdkafka writes raw snappy, and we do too.
 * - lz4 (3): the LZ4 *frame* format read and written here, blocks by `lz4js`'s
 *   `decompressBlock` / `compressBlock`, checksums checked with its `xxh32`. lz4js's own frame reader reads a block checksum before
 *   the block instead of after it, and skips every checksum, so it is not used for decoding.
 *
 * Every decoder refuses output larger than `maxBytes`, so that a small "compression bomb" cannot
 * take the runner's memory.
 * @module
 */
import { Buffer } from "node:buffer";
import { promisify } from "node:util";
import * as zlib from "node:zlib";
import * as snappy from "snappyjs";
import lz4 from "lz4js";
import xxh32 from "lz4js/xxh32.js";

/** A codec as kafkajs calls it: `compress` gets kafkajs's encoder, `decompress` the bytes. */
export interface Codec {
  /** Compress the records section that `encoder.buffer` holds. */
  compress(encoder: { buffer: Uint8Array }): Promise<Buffer>;
  /**
   * Decompress one batch's records section.
   * @throws {CodecError} when the bytes are not valid for this codec or decompress too large.
   */
  decompress(buffer: Uint8Array, maxBytes: number): Promise<Buffer>;
}

/** Compressed bytes that this codec cannot decode. */
export class CodecError extends Error {
  override name = "CodecError";
}

/** Kafka's codec ids (the low 3 bits of a RecordBatch's attributes). */
export const CODEC_NAMES: Readonly<Record<number, string>> = {
  1: "gzip",
  2: "snappy",
  3: "lz4",
  4: "zstd",
};

const gzip = promisify(zlib.gzip);
const gunzip = promisify(zlib.unzip);
const zstdCompress = promisify(zlib.zstdCompress);
const zstdDecompress = promisify(zlib.zstdDecompress);

function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

async function zlibDecompress(
  run: (input: Uint8Array, options: zlib.ZlibOptions) => Promise<Buffer>,
  buffer: Uint8Array,
  maxBytes: number,
): Promise<Buffer> {
  try {
    return await run(buffer, { maxOutputLength: maxBytes });
  } catch (error) {
    const e = error as Error & { code?: string };
    if (e.code === "ERR_BUFFER_TOO_LARGE" || e instanceof RangeError) {
      throw new CodecError(`decompresses to more than ${maxBytes} bytes`);
    }
    throw new CodecError(e.message);
  }
}

/** gzip through `node:zlib` (kafkajs's own gzip codec, plus the size bound). */
export const GZIP: Codec = {
  compress: async (encoder) => await gzip(encoder.buffer),
  decompress: (buffer, maxBytes) => zlibDecompress(gunzip, buffer, maxBytes),
};

/** zstd through Deno's native `node:zlib` implementation. */
export const ZSTD: Codec = {
  compress: async (encoder) => await zstdCompress(encoder.buffer),
  decompress: (buffer, maxBytes) => zlibDecompress(zstdDecompress, buffer, maxBytes),
};

const XERIAL_MAGIC = [0x82, 0x53, 0x4e, 0x41, 0x50, 0x50, 0x59, 0x00];
const XERIAL_HEADER_BYTES = 16;

function isXerial(buffer: Uint8Array): boolean {
  return buffer.length >= XERIAL_HEADER_BYTES && XERIAL_MAGIC.every((b, i) => buffer[i] === b);
}

function snappyBlock(block: Uint8Array, maxBytes: number): Uint8Array {
  try {
    return snappy.uncompress(block, maxBytes);
  } catch (error) {
    throw new CodecError(`snappy: ${(error as Error).message}`);
  }
}

/** snappy: raw blocks (librdkafka) or xerial-framed chunks (Java's snappy-java). */
export const SNAPPY: Codec = {
  compress: (encoder) => Promise.resolve(asBuffer(snappy.compress(encoder.buffer))),
  // deno-lint-ignore require-await
  async decompress(buffer, maxBytes) {
    if (!isXerial(buffer)) return asBuffer(snappyBlock(buffer, maxBytes));
    const view = new DataView(buffer.buffer, buffer.byteOffset, buffer.byteLength);
    const chunks: Uint8Array[] = [];
    let total = 0;
    for (let at = XERIAL_HEADER_BYTES; at < buffer.length;) {
      if (at + 4 > buffer.length) throw new CodecError("snappy: truncated xerial chunk length");
      const size = view.getInt32(at);
      at += 4;
      if (size < 0 || at + size > buffer.length) {
        throw new CodecError(`snappy: xerial chunk of ${size} bytes runs past the data`);
      }
      const chunk = snappyBlock(buffer.subarray(at, at + size), maxBytes - total);
      total += chunk.length;
      chunks.push(chunk);
      at += size;
    }
    return Buffer.concat(chunks, total);
  },
};

const LZ4_MAGIC = 0x184d2204;
const LZ4_BLOCK_SIZES: Record<number, number> = { 4: 1 << 16, 5: 1 << 18, 6: 1 << 20, 7: 1 << 22 };
// LZ4's densest encoding: a 1-byte literal token extends a match by 255 bytes per input byte.
const LZ4_MAX_RATIO = 255;

function lz4Frame(src: Uint8Array, maxBytes: number): Buffer {
  const view = new DataView(src.buffer, src.byteOffset, src.byteLength);
  const need = (at: number, n: number, what: string) => {
    if (at + n > src.length) throw new CodecError(`lz4: frame ends inside the ${what}`);
  };
  need(0, 7, "frame header");
  if (view.getUint32(0, true) !== LZ4_MAGIC) throw new CodecError("lz4: not an LZ4 frame");
  const flags = src[4];
  if ((flags & 0xc0) !== 0x40) throw new CodecError(`lz4: frame version ${flags >> 6}`);
  if (flags & 0x01) throw new CodecError("lz4: frames with a dictionary id are not supported");
  const blockChecksum = (flags & 0x10) !== 0;
  const contentSize = (flags & 0x08) !== 0;
  const contentChecksum = (flags & 0x04) !== 0;
  const maxBlock = LZ4_BLOCK_SIZES[(src[5] >> 4) & 0x07];
  if (maxBlock === undefined) throw new CodecError("lz4: invalid block size in frame header");
  const descriptorEnd = 6 + (contentSize ? 8 : 0);
  need(0, descriptorEnd + 1, "frame header");
  if (((xxh32.hash(0, src, 4, descriptorEnd - 4) >>> 8) & 0xff) !== src[descriptorEnd]) {
    throw new CodecError("lz4: frame header checksum mismatch");
  }
  // First pass: the output bound, from the block sizes.
  let bound = 0;
  let at = descriptorEnd + 1;
  for (;;) {
    need(at, 4, "block size");
    const word = view.getUint32(at, true);
    at += 4;
    if (word === 0) break;
    const size = word & 0x7fffffff;
    need(at, size + (blockChecksum ? 4 : 0), "block");
    bound += word & 0x80000000 ? size : Math.min(maxBlock, size * LZ4_MAX_RATIO);
    at += size + (blockChecksum ? 4 : 0);
  }
  bound = Math.min(bound, maxBytes + 1);
  const dst = new Uint8Array(bound);
  let out = 0;
  at = descriptorEnd + 1;
  for (;;) {
    const word = view.getUint32(at, true);
    at += 4;
    if (word === 0) break;
    const size = word & 0x7fffffff;
    if (blockChecksum && xxh32.hash(0, src, at, size) !== view.getUint32(at + size, true)) {
      throw new CodecError("lz4: block checksum mismatch");
    }
    const start = out;
    if (word & 0x80000000) {
      dst.set(src.subarray(at, at + Math.min(size, bound - out)), out);
      out += size;
    } else {
      out = lz4.decompressBlock(src, dst, at, size, out);
    }
    if (out > maxBytes) throw new CodecError(`decompresses to more than ${maxBytes} bytes`);
    if (out - start > maxBlock) throw new CodecError("lz4: block larger than the frame's size");
    at += size + (blockChecksum ? 4 : 0);
  }
  if (contentChecksum) {
    need(at, 4, "content checksum");
    if (xxh32.hash(0, dst, 0, out) !== view.getUint32(at, true)) {
      throw new CodecError("lz4: content checksum mismatch");
    }
  }
  return Buffer.from(dst.buffer, 0, out);
}

const LZ4_FRAME_BLOCK = 1 << 16; // block size id 4

/**
 * An LZ4 frame of independent 64 KiB blocks. lz4js's own `compress` flags its blocks as
 * dependent, which Kafka's LZ4 reader refuses ("unexpected error" from the broker).
 */
function lz4Compress(src: Uint8Array): Buffer {
  const blocks = Math.max(1, Math.ceil(src.length / LZ4_FRAME_BLOCK));
  const out = new Uint8Array(7 + blocks * (4 + lz4.compressBound(LZ4_FRAME_BLOCK)) + 4);
  const view = new DataView(out.buffer);
  view.setUint32(0, LZ4_MAGIC, true);
  out[4] = 0x60; // version 1, independent blocks, no checksums, no content size
  out[5] = 0x40; // 64 KiB blocks
  out[6] = (xxh32.hash(0, out, 4, 2) >>> 8) & 0xff;
  let at = 7;
  const table = new Uint32Array(1 << 16);
  for (let start = 0; start < src.length; start += LZ4_FRAME_BLOCK) {
    const block = src.subarray(start, start + LZ4_FRAME_BLOCK);
    table.fill(0); // a fresh table keeps each block independent
    const size = lz4.compressBlock(block, out.subarray(at + 4), 0, block.length, table);
    if (size === 0 || size >= block.length) {
      view.setUint32(at, (block.length | 0x80000000) >>> 0, true);
      out.set(block, at + 4);
      at += 4 + block.length;
    } else {
      view.setUint32(at, size, true);
      at += 4 + size;
    }
  }
  view.setUint32(at, 0, true); // end mark
  return Buffer.from(out.buffer, 0, at + 4);
}

/** lz4, LZ4 frame format (what Kafka uses for RecordBatch v2). */
export const LZ4: Codec = {
  compress: (encoder) => Promise.resolve(lz4Compress(encoder.buffer)),
  // deno-lint-ignore require-await
  decompress: async (buffer, maxBytes) => lz4Frame(buffer, maxBytes),
};

/** The codec for each id Kafka defines. */
export const CODECS: Readonly<Record<number, Codec>> = { 1: GZIP, 2: SNAPPY, 3: LZ4, 4: ZSTD };
