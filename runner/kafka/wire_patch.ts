/**
 * What task-runner changes inside kafkajs 2.2.4's wire decoding, installed once per process:
 *
 * - every compression codec id (1-7) gets a guarded codec (`batch_guard.ts`) over the
 *   implementations in `codecs.ts`, so snappy, lz4 and zstd decode, and an undecodable batch
 *   becomes rejected messages instead of a fetch that fails forever;
 * - the record decoder's header array reader is replaced by the bounded one in
 *   `record_headers.ts`, which also marks the placeholder records of undecodable batches.
 *
 * kafkajs looks both up at call time (`CompressionCodecs[id]()` per batch, and
 * `Decoder.prototype.readVarIntArray`, whose only caller is the record decoder's headers), so
 * patching them works whatever imported kafkajs first. The internal module paths are those of
 * kafkajs 2.2.4, pinned in deno.json; tests/kafka/wire_patch_test.ts fails if they move.
 * @module
 */
import { CompressionCodecs } from "kafkajs";
import Decoder from "kafkajs/src/protocol/decoder.js";
import HeaderDecoder from "kafkajs/src/protocol/recordBatch/header/v0/decoder.js";
import { guardCodec } from "./batch_guard.ts";
import { CODECS } from "./codecs.ts";
import { type HeaderSource, readHeaders, rejection, type WireHeader } from "./record_headers.ts";

/**
 * Largest decompressed records section of one batch. Kafka bounds the *compressed* batch
 * (1 MiB by default); this bounds what a small, very compressible batch may expand to.
 */
export const MAX_DECOMPRESSED_BATCH_BYTES = 64 * 1024 * 1024;

const INSTALLED = Symbol.for("task-runner.kafkaWirePatch");

type ArrayReader = (this: HeaderSource, reader: (d: HeaderSource) => WireHeader) => unknown[];

/**
 * Install the codecs and the bounded header reader into kafkajs. Idempotent; returns false when
 * they were already installed.
 */
export function installKafkaWirePatch(): boolean {
  const proto = Decoder.prototype as { readVarIntArray: ArrayReader; [INSTALLED]?: true };
  if (proto[INSTALLED]) return false;
  const reasons = new WeakMap<ArrayBufferLike, string>();
  const codecs = CompressionCodecs as unknown as Record<number, () => unknown>;
  for (let id = 1; id <= 7; id++) {
    const codec = guardCodec(id, CODECS[id], { maxBytes: MAX_DECOMPRESSED_BATCH_BYTES, reasons });
    codecs[id] = () => codec;
  }
  const original = proto.readVarIntArray;
  proto.readVarIntArray = function (reader) {
    if (reader !== HeaderDecoder) return original.call(this, reader);
    const placeholder = reasons.get(this.buffer.buffer);
    return placeholder === undefined ? readHeaders(this, reader) : rejection(placeholder);
  };
  proto[INSTALLED] = true;
  return true;
}
