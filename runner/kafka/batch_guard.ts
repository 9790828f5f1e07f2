/**
 * Compressed batches that cannot be decoded become rejected messages instead of a stuck consumer.
 *
 * kafkajs decodes a fetch response in one piece: if one RecordBatch's `decompress` throws, the
 * whole fetch fails and is retried forever, so no task runs on any partition. The codec that
 * {@link guardCodec} builds never throws for a Kafka v2 batch. When decompression fails, or the
 * decompressed bytes do not hold the records the batch header announces, it returns instead one
 * placeholder record per announced record (same count, offsets inside the batch, no key, value
 * or headers) and files the reason under the placeholder's memory in `reasons`; the header
 * reader (`wire_patch.ts`) turns that into a {@link WIRE_REJECTION} entry, and the task decoder
 * into a `rejected` outcome (dead-lettered when a DLQ is set).
 *
 * The codec gets only the compressed bytes; the batch header comes from the 61 bytes before
 * them. kafkajs hands over a view into the fetch response (`Buffer#slice`), and every field read
 * there is checked against what kafkajs itself read (magic byte, codec bits, batch length), so a
 * change in kafkajs fails the unit test instead of misplacing offsets.
 * @module
 */
import { Buffer } from "node:buffer";
import { type Codec, CODEC_NAMES, CodecError } from "./codecs.ts";

/** What a v2 RecordBatch header says about its records. */
export interface BatchHeader {
  /** Offset of the first record, as a decimal string. */
  firstOffset: string;
  /** Offset of the last record minus the first. */
  lastOffsetDelta: number;
  /** Number of records in the batch. */
  count: number;
}

/** Bytes of a v2 RecordBatch header, from base offset to the record count inclusive. */
export const BATCH_HEADER_BYTES = 61;
const BATCH_LENGTH_OVERHEAD = 49; // header bytes counted by the batch's length field
const MAGIC_V2 = 2;
const CODEC_MASK = 0x07;

/**
 * The header of the batch whose compressed records section is `records`, when `records` is a
 * view directly after a v2 batch header compressed with `codecId`; null otherwise.
 */
export function batchHeaderBefore(records: Uint8Array, codecId: number): BatchHeader | null {
  const start = records.byteOffset - BATCH_HEADER_BYTES;
  if (start < 0) return null;
  const view = new DataView(records.buffer, start, BATCH_HEADER_BYTES);
  const length = view.getInt32(8);
  const magic = view.getInt8(16);
  const attributes = view.getInt16(21);
  const count = view.getInt32(57);
  const lastOffsetDelta = view.getInt32(23);
  if (
    magic !== MAGIC_V2 || (attributes & CODEC_MASK) !== codecId ||
    length !== BATCH_LENGTH_OVERHEAD + records.length || count < 0 || lastOffsetDelta < count - 1
  ) return null;
  return { firstOffset: view.getBigInt64(0).toString(), lastOffsetDelta, count };
}

function readVarInt(bytes: Uint8Array, at: number): [value: number, next: number] {
  let raw = 0;
  for (let shift = 0; shift < 35; shift += 7) {
    if (at >= bytes.length) throw new CodecError("records end inside a varint");
    const byte = bytes[at++];
    raw |= (byte & 0x7f) << shift;
    if (byte < 0x80) return [(raw >>> 1) ^ -(raw & 1), at];
  }
  throw new CodecError("varint longer than 5 bytes");
}

function skipVarLong(bytes: Uint8Array, at: number): number {
  for (let i = 0; i < 10; i++) {
    if (at >= bytes.length) throw new CodecError("records end inside a varlong");
    if (bytes[at++] < 0x80) return at;
  }
  throw new CodecError("varlong longer than 10 bytes");
}

// The smallest record: attributes, timestamp delta, offset delta, key, value, header count.
const MIN_RECORD_BYTES = 6;

/**
 * Check that `records` holds `header.count` records whose offsets increase inside the batch,
 * which is what kafkajs's record decoder needs in order not to throw or invent offsets.
 * @throws {CodecError} saying what does not fit.
 */
export function checkRecords(records: Uint8Array, header: BatchHeader): void {
  let at = 0;
  let previous = -1;
  for (let i = 0; i < header.count; i++) {
    const [length, body] = readVarInt(records, at);
    if (length < MIN_RECORD_BYTES || body + length > records.length) {
      throw new CodecError(`record ${i} of ${header.count} has an impossible length ${length}`);
    }
    const [delta] = readVarInt(records, skipVarLong(records, body + 1));
    if (delta <= previous || delta > header.lastOffsetDelta) {
      throw new CodecError(`record ${i} has offset delta ${delta} outside the batch`);
    }
    previous = delta;
    at = body + length;
  }
}

function varInt(value: number): number[] {
  const out: number[] = [];
  let zigzag = (value << 1) ^ (value >> 31);
  while (zigzag >= 0x80 || zigzag < 0) {
    out.push((zigzag & 0x7f) | 0x80);
    zigzag >>>= 7;
  }
  out.push(zigzag);
  return out;
}

/**
 * `header.count` records with no key, value or headers, at offset deltas 0, 1, ... and the
 * batch's last offset for the last one (so that finishing them moves past the whole batch).
 */
export function placeholderRecords(header: BatchHeader): Buffer {
  const bytes: number[] = [];
  for (let i = 0; i < header.count; i++) {
    const delta = i === header.count - 1 ? header.lastOffsetDelta : i;
    // attributes, timestamp delta 0, offset delta, key null, value null, no headers
    const body = [0, 0, ...varInt(delta), 1, 1, 0];
    bytes.push(...varInt(body.length), ...body);
  }
  // A fresh ArrayBuffer: `reasons` is keyed by it, and pooled Buffers would share one.
  return Buffer.from(new Uint8Array(bytes).buffer);
}

/** Options of {@link guardCodec}. */
export interface GuardOptions {
  /** Largest decompressed records section accepted, in bytes. */
  maxBytes: number;
  /** Where the reason for each placeholder goes, keyed by the placeholder's memory. */
  reasons: WeakMap<ArrayBufferLike, string>;
}

function offsets(header: BatchHeader): string {
  if (header.lastOffsetDelta === 0) return `offset ${header.firstOffset}`;
  const last = BigInt(header.firstOffset) + BigInt(header.lastOffsetDelta);
  return `offsets ${header.firstOffset}-${last}`;
}

/** A kafkajs codec for codec id `id` whose `decompress` cannot stop the consumer. */
export function guardCodec(
  id: number,
  codec: Codec | undefined,
  options: GuardOptions,
): { compress: Codec["compress"]; decompress(buffer: Uint8Array): Promise<Buffer> } {
  const name = CODEC_NAMES[id] ?? `unknown codec id ${id}`;
  return {
    compress(encoder) {
      if (!codec) throw new CodecError(`cannot compress with ${name}: Kafka defines ids 1-4`);
      return codec.compress(encoder);
    },
    async decompress(buffer) {
      const header = batchHeaderBefore(buffer, id);
      if (!header) {
        // Not a v2 batch as kafkajs 2.2.4 lays it out: no offsets to place a rejection at.
        if (!codec) throw new CodecError(`${name}: cannot decompress`);
        return await codec.decompress(buffer, options.maxBytes);
      }
      let why: string;
      try {
        if (!codec) throw new CodecError("no such compression codec (Kafka defines ids 1-4)");
        const records = await codec.decompress(buffer, options.maxBytes);
        checkRecords(records, header);
        return records;
      } catch (error) {
        why = (error as Error).message;
      }
      const placeholder = placeholderRecords(header);
      options.reasons.set(
        placeholder.buffer,
        `compressed batch (${name}, ${offsets(header)}, ${header.count} messages) cannot be ` +
          `decoded: ${why}`,
      );
      return placeholder;
    },
  };
}
