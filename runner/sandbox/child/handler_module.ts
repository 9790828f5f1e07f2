/**
 * Importing a handler module and checking its default export, and putting what a handler threw
 * into words, for both loaders. It runs inside the sandbox.
 * @module
 */
import { EXIT } from "./protocol.ts";

/** What a handler threw, in words (its stack when it has one), whatever it threw. */
export function describe(error: unknown): string {
  try {
    return error instanceof Error ? (error.stack ?? String(error)) : String(error);
  } catch {
    return "(an error that cannot be turned into text)";
  }
}

/** A handler: the module's default export. */
export type Handler = (task: unknown, ctx: unknown) => unknown;

/** How a loader ends the process with a message (its own stderr line or frame, then exit). */
export type Fail = (code: number, message: string) => never;

/**
 * Import the handler at `url` through a variable specifier, so that every module of its graph
 * is checked against the read permission (which covers only the handler's own file), and
 * return its default export. A module that fails to load ends the process with
 * {@link EXIT.loadFailed}, one without a default export function with {@link EXIT.noDefault}.
 */
export async function importHandler(name: string, url: string, fail: Fail): Promise<Handler> {
  let module: Record<string, unknown>;
  try {
    module = await import(url);
  } catch (error) {
    fail(EXIT.loadFailed, `cannot load handler ${name}: ${(error as Error).message}`);
  }
  const handler = module.default;
  if (typeof handler !== "function") {
    fail(
      EXIT.noDefault,
      `handler ${name} has no default export function ` +
        `(found ${handler === undefined ? "no default export" : typeof handler}); ` +
        "write `export default async function (task, ctx) { ... }`",
    );
  }
  return handler as Handler;
}
