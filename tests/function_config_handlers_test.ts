/** functions.json fields for handlers (issue 14): `command` (an operator grant) and `schema`. */
import assertStrict from "node:assert/strict";
import { FunctionsConfigError } from "../runner/errors.ts";
import { parseFunctionConfig } from "../runner/function_config.ts";
import { assertEquals } from "./helpers/assert.ts";

Deno.test("a command is kept as written, placeholders included", () => {
  const command = ["php", "/srv/app/core/cli/start.php", "{name}.php", "offset={offset}"];
  const table = parseFunctionConfig({ functions: { mailer: { command, timeoutMs: 30000 } } }, "f");
  assertEquals(table.get("mailer"), { command, timeoutMs: 30000 });
});

Deno.test("a bad command is refused, naming the function and what is wrong", () => {
  const cases: Array<[Record<string, unknown>, RegExp]> = [
    [{ command: "php w.php" }, /functions\.a\.command must be a non-empty array/],
    [{ command: [] }, /functions\.a\.command must be a non-empty array/],
    [{ command: ["php", ""] }, /functions\.a\.command must be a non-empty array/],
    [
      { command: ["php", "{file}"] },
      /must be free of placeholders other than \{name\}.*got \["\{file\}"\]/,
    ],
    [
      { command: ["{name}", "x"] },
      /functions\.a\.command\[0\] must be a program without placeholders/,
    ],
    [{ command: ["php"], isolation: "function" }, /absent with isolation "function"/],
    [{ command: ["php"], prewarm: 2 }, /absent with prewarm > 0/],
  ];
  for (const [entry, pattern] of cases) {
    assertStrict.throws(
      () => parseFunctionConfig({ functions: { a: entry } }, "f.json"),
      (e: Error) => e instanceof FunctionsConfigError && pattern.test(e.message),
      JSON.stringify(entry),
    );
  }
});

Deno.test("a schema path is made absolute from the config file's folder; inline is copied", () => {
  const inline = { type: "object" };
  const table = parseFunctionConfig({
    functions: {
      a: { schema: "schemas/a.json" },
      b: { schema: "/abs/b.json" },
      c: { schema: inline },
    },
  }, "/etc/task-runner/functions.json");
  assertEquals(table.get("a")?.schema, "/etc/task-runner/schemas/a.json");
  assertEquals(table.get("b")?.schema, "/abs/b.json");
  assertEquals(table.get("c")?.schema, inline);
  assertStrict.notEqual(table.get("c")?.schema, inline);
});
