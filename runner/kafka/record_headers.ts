/**
 * Record headers, decoded within bounds.
 *
 * kafkajs 2.2.4 builds a record's header object with `reduce((obj, h) => ({ ...obj, ... }))`,
 * which copies the object once per header: 10,000 headers cost about 20 s of one core, long
 * enough for the runner to miss its heartbeats and be dropped from the group. {@link readHeaders}
 * replaces kafkajs's header array reader (see `wire_patch.ts`): it refuses a record with more
 * than {@link MAX_HEADERS} headers or {@link MAX_HEADER_BYTES} bytes of them before decoding a
 * single one, so the quadratic step only ever sees a bounded array, and the refusal travels to
 * the task decoder as a {@link WIRE_REJECTION} entry on the message's headers.
 * @module
 */

/** Most headers a message may carry; a message with more is rejected. */
export const MAX_HEADERS = 100;

/**
 * Most bytes a message's headers may take as encoded on the wire (names, values and their
 * length prefixes); a message with more is rejected.
 */
export const MAX_HEADER_BYTES = 64 * 1024;

/**
 * Key, on a message's `headers` object, of the reason the message cannot be run, when the Kafka
 * layer already knows it (too many headers, an undecodable batch). A symbol: no producer can set
 * it, and `Object.entries`, `Object.keys` and kafkajs's producer skip it.
 */
export const WIRE_REJECTION: unique symbol = Symbol("task-runner.wireRejection");

/** One decoded header, as kafkajs's header decoder returns it. */
export interface WireHeader {
  key: string | typeof WIRE_REJECTION;
  value: unknown;
}

/** The part of kafkajs's `Decoder` that header decoding uses. */
export interface HeaderSource {
  buffer: Uint8Array;
  offset: number;
  readVarInt(): number;
}

/** Limits of {@link readHeaders}. */
export interface HeaderLimits {
  /** Most headers accepted. @default MAX_HEADERS */
  maxHeaders?: number;
  /** Most encoded header bytes accepted. @default MAX_HEADER_BYTES */
  maxHeaderBytes?: number;
}

/**
 * Read the headers array of one record from `decoder`, which kafkajs positions at the headers,
 * the last field of a record whose bytes the decoder holds alone. Over a limit, returns a single
 * {@link WIRE_REJECTION} entry with the reason instead, in constant time.
 */
export function readHeaders(
  decoder: HeaderSource,
  readHeader: (decoder: HeaderSource) => WireHeader,
  limits: HeaderLimits = {},
): WireHeader[] {
  const maxHeaders = limits.maxHeaders ?? MAX_HEADERS;
  const maxHeaderBytes = limits.maxHeaderBytes ?? MAX_HEADER_BYTES;
  const bytes = decoder.buffer.length - decoder.offset;
  const count = decoder.readVarInt();
  if (count === -1) return [];
  if (count < 0) return rejection(`the record's header count is ${count}`);
  if (count > maxHeaders) {
    return rejection(`message has ${count} headers, more than the limit of ${maxHeaders}`);
  }
  if (bytes > maxHeaderBytes) {
    return rejection(
      `message headers take ${bytes} bytes, more than the limit of ${maxHeaderBytes}`,
    );
  }
  const headers = new Array<WireHeader>(count);
  for (let i = 0; i < count; i++) headers[i] = readHeader(decoder);
  return headers;
}

/** A header list that carries only `reason`. */
export function rejection(reason: string): WireHeader[] {
  return [{ key: WIRE_REJECTION, value: reason }];
}

/**
 * The reason the Kafka layer refused `message`, or undefined when it did not.
 *
 * @example
 * const reason = wireRejection(message);
 * if (reason !== undefined) throw new TaskRejectedError(reason);
 */
export function wireRejection(message: { headers?: unknown }): string | undefined {
  const headers = message.headers as Record<symbol, unknown> | undefined;
  const reason = headers?.[WIRE_REJECTION];
  return typeof reason === "string" ? reason : undefined;
}
