/**
 * Counts words, lines and the most frequent words of a text:
 * `deno task enqueue word_count '{"text":"to be or not to be"}'`. Needs no permissions.
 */
import type { Task } from "../runner/handler_types.ts";

export default function wordCount(task: Task<{ text: string; top?: number }>): void {
  const { text, top = 5 } = task.payload;
  if (typeof text !== "string") throw new TypeError("payload.text must be a string");
  const words = text.toLowerCase().match(/[\p{L}\p{N}']+/gu) ?? [];
  const counts = new Map<string, number>();
  for (const w of words) counts.set(w, (counts.get(w) ?? 0) + 1);
  const frequent = [...counts].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0])).slice(
    0,
    top,
  );
  console.log(JSON.stringify({
    words: words.length,
    lines: text.split("\n").length,
    distinct: counts.size,
    top: Object.fromEntries(frequent),
  }));
}
