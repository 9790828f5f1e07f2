import { blankCommentsAndStrings, hasDefaultExport } from "../runner/default_export.ts";
import { assertEquals } from "./helpers/assert.ts";

Deno.test("hasDefaultExport: the three forms of a default export", () => {
  assertEquals(hasDefaultExport("export default function (task) {}"), true);
  assertEquals(hasDefaultExport("export default async function run() {}"), true);
  assertEquals(hasDefaultExport("const h = () => 1;\nexport default h;"), true);
  assertEquals(hasDefaultExport("function h() {}\nexport { h as default };"), true);
  assertEquals(hasDefaultExport("export { a, h as default, b };"), true);
  assertEquals(hasDefaultExport('export { default } from "./other.ts";'), true);
  assertEquals(hasDefaultExport("export{h as default}"), true);
});

Deno.test("hasDefaultExport: no default export", () => {
  assertEquals(hasDefaultExport("export function handler() {}"), false);
  assertEquals(hasDefaultExport('export * from "./other.ts";'), false);
  assertEquals(hasDefaultExport("export { default as h } from './other.ts';"), false);
  assertEquals(hasDefaultExport("type T = 1;\nexport type { T as default };"), false);
  assertEquals(hasDefaultExport("export { type T as default };"), false);
  assertEquals(hasDefaultExport("const defaults = 1;\nexport { defaults };"), false);
  assertEquals(hasDefaultExport(""), false);
});

Deno.test("hasDefaultExport: comments and strings do not count", () => {
  assertEquals(hasDefaultExport("// export default function () {}"), false);
  assertEquals(hasDefaultExport("/* export default 1 */ export const a = 1;"), false);
  assertEquals(hasDefaultExport('const s = "export default 1";'), false);
  assertEquals(hasDefaultExport("const s = 'export { x as default }';"), false);
  assertEquals(hasDefaultExport("const s = `\nexport default 1\n`;"), false);
  assertEquals(hasDefaultExport('const s = "a \\" export default";'), false);
  assertEquals(hasDefaultExport('const url = "http://x"; export default 1;'), true);
  assertEquals(hasDefaultExport("/* } */ export default 1;"), true);
});

Deno.test("blankCommentsAndStrings keeps the quotes and the code", () => {
  assertEquals(blankCommentsAndStrings('a("xy") // c\nb'), 'a("  ")  \nb');
  assertEquals(blankCommentsAndStrings("x /* y */ z"), "x   z");
});
