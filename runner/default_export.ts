/**
 * Does a handler file have a default export? Answered from its text, without running it.
 *
 * Importing a handler would execute its top-level code with the checker's permissions, which is
 * exactly what the sandbox exists to prevent. So this blanks out comments and the insides of
 * string and template literals with a small lexer, then looks for the three forms of a default
 * export: `export default ...`, `export { x as default }` and `export { default } from "..."`.
 *
 * Limits (good enough for a diagnosis, not a parser): a regular-expression literal containing a
 * quote or `//` can confuse the lexer; code inside a template literal's `${...}` is skipped; an
 * `export *` never re-exports a default (true in ECMAScript too), so it is not counted.
 * @module
 */

/** `source` with comments removed and string/template contents blanked (quotes kept). */
export function blankCommentsAndStrings(source: string): string {
  let out = "";
  let i = 0;
  while (i < source.length) {
    const c = source[i];
    const next = source[i + 1];
    if (c === "/" && next === "/") {
      const end = source.indexOf("\n", i);
      i = end < 0 ? source.length : end;
      out += " ";
    } else if (c === "/" && next === "*") {
      const end = source.indexOf("*/", i + 2);
      i = end < 0 ? source.length : end + 2;
      out += " ";
    } else if (c === '"' || c === "'" || c === "`") {
      let j = i + 1;
      while (j < source.length && source[j] !== c) {
        if (source[j] === "\\") j++;
        else if (c !== "`" && source[j] === "\n") break; // unterminated: stop at the line end
        j++;
      }
      out += c + " ".repeat(Math.max(0, j - i - 1)) + c;
      i = j + 1;
    } else {
      out += c;
      i++;
    }
  }
  return out;
}

const EXPORT_DEFAULT = /(?:^|[^\w$.])export\s+default\b/;
/** `export {...}` lists; group 1 is `type` for a type-only list, group 2 the specifiers. */
const EXPORT_LIST = /(?:^|[^\w$.])export\s*(type\s*)?\{([^}]*)\}/g;

/**
 * True when `source` (TypeScript or JavaScript module text) has a default export.
 * @example
 * ```ts
 * hasDefaultExport("export default function (task) {}"); // true
 * hasDefaultExport("export function handler() {}");      // false
 * ```
 */
export function hasDefaultExport(source: string): boolean {
  const code = blankCommentsAndStrings(source);
  if (EXPORT_DEFAULT.test(code)) return true;
  for (const [, typeOnly, list] of code.matchAll(EXPORT_LIST)) {
    if (typeOnly) continue; // `export type { X as default }` exports nothing at run time
    for (const specifier of list.split(",")) {
      // `a`, `a as b`: the exported name is the last word; `type a as b` is type-only.
      const words = specifier.trim().split(/\s+/).filter(Boolean);
      if (words.at(-1) === "default" && words[0] !== "type") return true;
    }
  }
  return false;
}
