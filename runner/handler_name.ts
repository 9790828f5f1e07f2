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
