import { assertEquals } from "../helpers/assert.ts";
import { pumpLines } from "../../runner/sandbox/output_lines.ts";

function streamOf(...chunks: string[]): ReadableStream<Uint8Array> {
  const encoder = new TextEncoder();
  return ReadableStream.from(chunks.map((c) => encoder.encode(c)));
}

Deno.test("lines split across chunks are joined; the last line needs no newline", async () => {
  const lines: string[] = [];
  const summary = await pumpLines(streamOf("a\nb", "c\n", "d"), (l) => lines.push(l));
  assertEquals(lines, ["a", "bc", "d"]);
  assertEquals(summary, { bytes: 6, droppedBytes: 0 });
});

Deno.test("long lines are cut and marked; the total is bounded and the rest counted", async () => {
  const seen: Array<[string, boolean]> = [];
  const summary = await pumpLines(
    streamOf("0123456789\n", "ok\n", "more\n", "dropped\n"),
    (l, cut) => seen.push([l, cut]),
    { maxLineBytes: 4, maxTotalBytes: 10 },
  );
  assertEquals(seen, [["0123", true], ["ok", false]]);
  assertEquals(summary.bytes, 27);
  assertEquals(summary.droppedBytes, 6 + 5 + 8);
});
