/**
 * Payload schemas (functions.json `schema`): each function's JSON Schema read and compiled
 * once, when the runner starts, and the check of a task's parsed payload against it. A payload
 * that does not match is a `rejected` task, before any process is spawned.
 *
 * Compiled with ajv, which turns a schema into a plain JavaScript function: the check of a
 * 1 KB payload costs microseconds (bench/schema_bench.ts). No handler code runs to learn a
 * schema.
 * @module
 */
import { Ajv, type ErrorObject, type ValidateFunction } from "ajv";
import { FunctionsConfigError, TaskRejectedError } from "../errors.ts";
import type { FunctionConfigTable } from "../function_config.ts";

/** Errors named in a rejection, at most. */
const MAX_ERRORS_NAMED = 3;

/**
 * Every function's compiled payload schema.
 *
 * @example
 * ```ts
 * const schemas = new PayloadSchemas(functions); // throws FunctionsConfigError on a bad schema
 * schemas.check("notify", JSON.parse(text)); // throws TaskRejectedError: payload/to: must be string
 * ```
 */
export class PayloadSchemas {
  readonly #validators = new Map<string, ValidateFunction>();

  /**
   * Read (`schema` given as a path) and compile the schema of every function that has one.
   * @throws {FunctionsConfigError} naming the function and the schema (its path, or "inline")
   * when a schema file cannot be read, is not JSON, or does not compile.
   */
  constructor(functions: FunctionConfigTable) {
    // One Ajv per runner: compiled schemas are cached in it; allErrors off stops at the first
    // error, the cheapest check for a payload that does not match.
    const ajv = new Ajv({ allErrors: false, strict: false });
    for (const [name, config] of functions) {
      if (config.schema === undefined) continue;
      const where = typeof config.schema === "string" ? config.schema : "inline";
      const fail = (why: string): never => {
        throw new FunctionsConfigError(
          `functions.${name}.schema (${where}): ${why}; fix the schema and restart`,
        );
      };
      let schema: unknown = config.schema;
      if (typeof schema === "string") {
        let text = "";
        try {
          text = Deno.readTextFileSync(schema);
        } catch (error) {
          fail(`cannot be read: ${(error as Error).message}`);
        }
        try {
          schema = JSON.parse(text);
        } catch (error) {
          fail(`is not valid JSON: ${(error as Error).message}`);
        }
      }
      if (typeof schema !== "object" || schema === null || Array.isArray(schema)) {
        fail(`must be a JSON Schema object, got ${JSON.stringify(schema)}`);
      }
      try {
        this.#validators.set(name, ajv.compile(schema as Record<string, unknown>));
      } catch (error) {
        fail(`does not compile: ${(error as Error).message}`);
      }
    }
  }

  /** True when `handler` has a schema. */
  has(handler: string): boolean {
    return this.#validators.has(handler);
  }

  /**
   * Check `payload` (already parsed) against `handler`'s schema; a handler without one
   * accepts anything.
   * @throws {TaskRejectedError} naming the JSON pointer and message of the first errors:
   * `payload does not match the schema of notify: payload/to: must be string`.
   */
  check(handler: string, payload: unknown): void {
    const validate = this.#validators.get(handler);
    if (validate === undefined || validate(payload)) return;
    throw new TaskRejectedError(
      `payload does not match the schema of ${handler}: ${describeErrors(validate.errors ?? [])}`,
    );
  }
}

/** `payload/to: must be string; payload: must have required property 'text'`. */
export function describeErrors(errors: readonly ErrorObject[]): string {
  const named = errors.slice(0, MAX_ERRORS_NAMED).map((e) => {
    const pointer = `payload${e.instancePath}`;
    const extra = e.keyword === "additionalProperties"
      ? ` (${(e.params as { additionalProperty: string }).additionalProperty})`
      : e.keyword === "enum"
      ? ` (${JSON.stringify((e.params as { allowedValues: unknown[] }).allowedValues)})`
      : "";
    return `${pointer}: ${e.message ?? e.keyword}${extra}`;
  });
  const more = errors.length > MAX_ERRORS_NAMED ? `; and ${errors.length - named.length} more` : "";
  return named.join("; ") + more;
}
