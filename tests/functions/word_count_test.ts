/**
 * An example test for a handler, as `deno task new` writes them: `invoke` runs functions/
 * word_count.ts in the sandbox production uses (its grants from functions.json, its limits),
 * so a handler that needed a grant it does not have fails here as it would there.
 */
import { invoke } from "../../runner/testing.ts";
import { assertEquals } from "../helpers/assert.ts";

Deno.test("word_count counts words, lines and the most frequent words", async () => {
  const run = await invoke("word_count", { text: "to be or not to be\nthat is", top: 2 });
  assertEquals(run.outcome, "ok", run.reason);
  const lines = run.output.filter((o) => o.stream === "stdout").map((o) => JSON.parse(o.line));
  assertEquals(lines, [{ words: 8, lines: 2, distinct: 6, top: { be: 2, to: 2 } }]);
});

Deno.test("word_count fails on a payload without text", async () => {
  const run = await invoke("word_count", { txt: "typo" });
  assertEquals(run.outcome, "failed");
  assertEquals(run.reason, "exit 1: handler threw TypeError: payload.text must be a string");
  assertEquals(
    run.output.some((o) =>
      o.stream === "stderr" && o.line.includes("payload.text must be a string")
    ),
    true,
  );
});
