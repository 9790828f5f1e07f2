/**
 * Closing the ways a handler could read the warm loader's memory, where the frame nonce lives
 * (issue 17 item 7). What Deno 2.9.6 allows without any permission, as tested:
 * - `node:v8` `getHeapSnapshot()`: a snapshot holds every string and every typed array's bytes,
 *   so a secret cannot be hidden in the heap; `queryObjects` and `setFlagsFromString` reach
 *   further still. `writeHeapSnapshot` needs a write grant, which a function may have.
 * - `Deno[Deno.internal].core`: every op, including writes to any resource.
 * - `node:inspector` needs `--allow-sys=inspector`, which a grant may give.
 * The ES modules `node:v8` and `node:inspector` are mapped to empty modules by the warm
 * process's import map (`warm_process.ts`); this module closes the other routes to the same
 * objects: `process.getBuiltinModule` and `require` (both return the CommonJS built-in objects
 * neutered here) and `Deno[Deno.internal]`.
 * @module
 */

/** Built-ins whose every export is replaced by a function that throws. */
const CLOSED = ["v8", "inspector", "inspector/promises"];

/** Close the routes above. Call it before the handler is imported. */
export function closeIntrospection(): void {
  const deno = Deno as unknown as Record<symbol, unknown> & { internal?: symbol };
  if (deno.internal !== undefined) delete deno[deno.internal];
  const process = (globalThis as { process?: { getBuiltinModule?: (id: string) => unknown } })
    .process;
  // All loaded before any is changed: inspector/promises extends inspector's classes.
  const loaded = CLOSED.map((name) => ({
    name,
    exports: process?.getBuiltinModule?.(`node:${name}`) as Record<string, unknown> | undefined,
  }));
  for (const { name, exports } of loaded) {
    if (!exports) continue;
    for (const key of Object.keys(exports)) {
      exports[key] = () => {
        throw new Error(`task-runner: node:${name} is not available to warm handlers`);
      };
    }
    Object.freeze(exports);
  }
}

/** The import map of a warm process: the ES modules of {@link CLOSED} are empty. */
export const CLOSED_IMPORT_MAP = JSON.stringify({
  imports: Object.fromEntries(
    CLOSED.map((name) => [`node:${name}`, "data:text/javascript,export{}"]),
  ),
});
