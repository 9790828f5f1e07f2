/**
 * Bounded line splitting of a child's stdout or stderr.
 *
 * A handler that prints gigabytes must not exhaust the runner: lines are cut at `maxLineBytes`,
 * and once `maxTotalBytes` have been passed on, the rest is read and counted but dropped. The
 * stream is always read to its end so that the child never blocks on a full pipe.
 * @module
 */

/** Limits of {@link pumpLines}. */
export interface PumpLimits {
  /** Longest line passed on; longer lines are cut and marked. @default 8192 */
  maxLineBytes?: number;
  /** Bytes passed on per stream before the rest is dropped. @default 1048576 */
  maxTotalBytes?: number;
}

/** What {@link pumpLines} saw of a stream. */
export interface PumpSummary {
  /** Bytes read from the stream. */
  bytes: number;
  /** Bytes read but not passed on because the total budget was spent. */
  droppedBytes: number;
}

/**
 * Read `stream` to its end, calling `onLine` for each line (without its newline).
 *
 * @example
 * ```ts
 * await pumpLines(child.stdout, (line) => log.info(line));
 * ```
 */
export async function pumpLines(
  stream: ReadableStream<Uint8Array>,
  onLine: (line: string, truncated: boolean) => void,
  limits: PumpLimits = {},
): Promise<PumpSummary> {
  const maxLine = limits.maxLineBytes ?? 8192;
  const maxTotal = limits.maxTotalBytes ?? 1_048_576;
  const decoder = new TextDecoder();
  let line = new Uint8Array(Math.min(1024, maxLine)); // grows up to maxLine as lines need it
  let length = 0;
  let cut = false;
  let passed = 0;
  let bytes = 0;
  let dropped = 0;

  const flush = () => {
    if (passed + length + 1 <= maxTotal) {
      onLine(decoder.decode(line.subarray(0, length)), cut);
      passed += length + 1;
    } else {
      dropped += length + 1;
    }
    length = 0;
    cut = false;
  };

  for await (const chunk of chunks(stream)) {
    bytes += chunk.length;
    let start = 0;
    while (start < chunk.length) {
      const nl = chunk.indexOf(10, start);
      const end = nl === -1 ? chunk.length : nl;
      const take = Math.min(end - start, maxLine - length);
      if (length + take > line.length) {
        const bigger = new Uint8Array(Math.min(maxLine, Math.max(line.length * 2, length + take)));
        bigger.set(line.subarray(0, length));
        line = bigger;
      }
      line.set(chunk.subarray(start, start + take), length);
      length += take;
      if (take < end - start) {
        // Over-long line: pass on what fits, count the rest as dropped.
        dropped += end - start - take;
        cut = true;
      }
      if (nl === -1) break;
      flush();
      start = nl + 1;
    }
  }
  if (length > 0 || cut) flush();
  return { bytes, droppedBytes: dropped };
}

/** Bytes read at most per read of a byte stream; the buffer is reused from read to read. */
const READ_BYTES = 16_384;

/**
 * The chunks of `stream`. A byte stream (a child's stdout or stderr) is read into one buffer
 * that each read hands back, instead of a new 64 KiB buffer per read that lives until the next
 * garbage collection: at thousands of small reads per second those buffers were most of the
 * runner's memory churn. Each chunk is valid until the next one is taken.
 */
async function* chunks(stream: ReadableStream<Uint8Array>): AsyncGenerator<Uint8Array> {
  let reader: ReadableStreamBYOBReader;
  try {
    reader = stream.getReader({ mode: "byob" });
  } catch {
    yield* stream; // not a byte stream
    return;
  }
  try {
    let buffer = new ArrayBuffer(READ_BYTES);
    while (true) {
      const { value, done } = await reader.read(new Uint8Array(buffer));
      if (done || !value) return;
      yield value;
      buffer = value.buffer;
    }
  } finally {
    reader.releaseLock();
  }
}

/** Bytes of `text` in UTF-8, without encoding it. */
export function utf8Length(text: string): number {
  let bytes = text.length;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    // 2 bytes below U+0800, 4 per surrogate pair (2 units), else 3
    if (c >= 0x80) bytes += c < 0x800 || (c >= 0xd800 && c < 0xe000) ? 1 : 2;
  }
  return bytes;
}
