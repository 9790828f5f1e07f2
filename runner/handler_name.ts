/**
 * Handler names and where their files live.
 * @module
 */
import { isAbsolute, join, relative, resolve } from "node:path";
import { TaskRejectedError } from "./errors.ts";

/** The pattern every handler name must match (the PHP daemon's rule, kept for its producers). */
export const HANDLER_NAME_PATTERN = /^\w{1,100}$/;

/**
 * Validate a handler name and return the absolute path of its file inside `functionsDir`.
 *
 * @throws {TaskRejectedError} when the name does not match {@link HANDLER_NAME_PATTERN}.
 * @example
 * ```ts
 * handlerPath("/srv/functions", "hello"); // "/srv/functions/hello.ts"
 * ```
 */
export function handlerPath(functionsDir: string, name: string): string {
  if (!HANDLER_NAME_PATTERN.test(name)) {
    const shown = name.length > 120 ? `${name.slice(0, 120)}…` : name;
    throw new TaskRejectedError(
      `invalid handler name ${JSON.stringify(shown)}: it must match ${HANDLER_NAME_PATTERN}`,
    );
  }
  const dir = resolve(functionsDir);
  const path = join(dir, `${name}.ts`);
  // The pattern already excludes separators and dots; this keeps the guarantee explicit.
  const rel = relative(dir, path);
  if (rel.startsWith("..") || isAbsolute(rel) || rel.includes("/")) {
    throw new TaskRejectedError(`handler ${name} resolves outside ${dir}`);
  }
  return path;
}

/** A message's headers as kafkajs hands them over: a repeated header is an array of its values. */
export type MessageHeaders = Readonly<
  Record<string, string | Uint8Array | ReadonlyArray<string | Uint8Array> | undefined>
>;

const UTF8 = new TextDecoder();

/**
 * The handler a message names in header `header`, or null when it has none. The one rule of
 * every reader (the runner, `admin replay`), so that none runs or lists a message as another
 * function than the rest: a header repeated with the same value names that handler, one
 * repeated with different values names none and the message is rejected. Values are UTF-8.
 *
 * @throws {TaskRejectedError} when the header is repeated with different values.
 * @example
 * ```ts
 * handlerFromHeaders({ php_worker: ["hello", "hello"] }, "php_worker"); // "hello"
 * ```
 */
export function handlerFromHeaders(
  headers: MessageHeaders | undefined,
  header: string,
): string | null {
  const raw = headers?.[header];
  if (raw === undefined) return null;
  const values = (Array.isArray(raw) ? raw : [raw]) as ReadonlyArray<string | Uint8Array>;
  const texts = values.map((v) => typeof v === "string" ? v : UTF8.decode(v));
  const distinct = [...new Set(texts)];
  if (distinct.length > 1) {
    const shown = distinct.slice(0, 5).map((v) =>
      JSON.stringify(v.length > 120 ? `${v.slice(0, 120)}…` : v)
    );
    throw new TaskRejectedError(
      `header "${header}" is repeated with different values (${shown.join(", ")}` +
        `${
          distinct.length > 5 ? `, and ${distinct.length - 5} more` : ""
        }): send it once, naming one handler`,
    );
  }
  return distinct[0] ?? null;
}

/**
 * A cheap fingerprint of a handler file from its stat (or the lstat of a regular file): mtime,
 * size and inode. A new one means processes started from the old file must not take new tasks.
 */
export function versionOf(info: Deno.FileInfo): string {
  return `${info.mtime?.getTime()}:${info.size}:${info.ino}`;
}
