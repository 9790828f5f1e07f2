/**
 * `deno task new <name> [--schema]`: write `functions/<name>.ts` from a template (typed
 * payload, the handler contract, what the sandbox denies and how to grant it) and its test in
 * `tests/functions/<name>_test.ts`, outside the functions folder, where no task can name it.
 * With `--schema`, also `schemas/<name>.json` (JSON Schema) and its entry in functions.json.
 * Refuses invalid names and never overwrites a file.
 * @module
 */
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { resolveConfig } from "../runner/config.ts";
import { HANDLER_NAME_PATTERN, handlerPath } from "../runner/handler_name.ts";

const TEMPLATES = new URL("./templates/", import.meta.url);
const RUNNER = fileURLToPath(new URL("../runner/", import.meta.url));

export const NEW_USAGE = `Usage: main.ts new <name> [--schema] [--tests-dir DIR]

Writes functions/<name>.ts (FUNCTIONS_DIR) and DIR/<name>_test.ts (default tests/functions).
--schema also writes schemas/<name>.json and adds {"schema": "schemas/<name>.json"} for
<name> to functions.json (FUNCTIONS_CONFIG). Existing files are never overwritten.`;

/** What `new` wrote. */
export interface Scaffold {
  handler: string;
  test: string;
  schema?: string;
  functionsConfig?: string;
}

/** Options of {@link scaffold}. */
export interface ScaffoldOptions {
  /** Folder of handlers. */
  functionsDir: string;
  /** Folder the test goes to. @default "tests/functions" */
  testsDir?: string;
  /** The functions config file a schema is registered in (with `schema`). */
  functionsConfig: string;
  /** Also write a JSON Schema for the payload. @default false */
  schema?: boolean;
}

/** A name `new` will not take, or a file it will not overwrite. */
export class ScaffoldError extends Error {
  override name = "ScaffoldError";
}

/** Run `new` with `args`; returns the exit status. */
export async function newCommand(args: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args,
      allowPositionals: true,
      options: {
        schema: { type: "boolean" },
        "tests-dir": { type: "string" },
        help: { type: "boolean", short: "h" },
      },
    });
  } catch (error) {
    console.error(`new: ${(error as Error).message}\n\n${NEW_USAGE}`);
    return 2;
  }
  if (parsed.values.help) {
    console.log(NEW_USAGE);
    return 0;
  }
  const [name, ...extra] = parsed.positionals;
  if (!name || extra.length > 0) {
    console.error(`new: give exactly one <name>\n\n${NEW_USAGE}`);
    return 2;
  }
  const config = resolveConfig({}, Deno.env.toObject());
  try {
    const wrote = await scaffold(name, {
      functionsDir: config.functionsDir,
      functionsConfig: config.functionsConfig,
      testsDir: parsed.values["tests-dir"],
      schema: parsed.values.schema === true,
    });
    for (const [what, path] of Object.entries(wrote)) console.log(`wrote ${what}: ${path}`);
    console.log(`try it: deno task invoke ${name} '${EXAMPLE_JSON}'`);
    console.log(`test it: deno test -A ${wrote.test}`);
    return 0;
  } catch (error) {
    if (!(error instanceof ScaffoldError)) throw error;
    console.error(`new: ${error.message}`);
    return 2;
  }
}

/**
 * Write the handler, its test and (with `schema`) its schema for `name`.
 * @throws {ScaffoldError} for an invalid name or a file that already exists (nothing written).
 */
export async function scaffold(name: string, options: ScaffoldOptions): Promise<Scaffold> {
  if (!HANDLER_NAME_PATTERN.test(name)) {
    throw new ScaffoldError(
      `"${name}" is not a handler name: use letters, digits and _ (${HANDLER_NAME_PATTERN}), ` +
        "as the task's header names it",
    );
  }
  if (/_test$|^test$/i.test(name)) {
    throw new ScaffoldError(
      `"${name}" would make functions/${name}.ts look like a test file to deno test; ` +
        "choose a name that does not end in _test",
    );
  }
  const handler = handlerPath(options.functionsDir, name);
  const test = join(options.testsDir ?? join("tests", "functions"), `${name}_test.ts`);
  const schema = options.schema
    ? join(dirname(options.functionsConfig), "schemas", `${name}.json`)
    : undefined;
  for (const path of [handler, test, schema]) {
    if (path !== undefined && await exists(path)) {
      throw new ScaffoldError(`${path} already exists; choose another name or remove it first`);
    }
  }
  const config = options.schema ? await readConfig(options.functionsConfig, name) : undefined;

  const withSchema = options.schema === true;
  const values: Record<string, string> = {
    name,
    fn: /^[A-Za-z_]\w*$/.test(name) ? camel(name) : "handler",
    example: EXAMPLE_JSON,
    exampleValue: '{ to: "world" }',
    firstField: "to",
    typesImport: importPath(dirname(handler), join(RUNNER, "handler_types.ts")),
    testingImport: importPath(dirname(test), join(RUNNER, "testing.ts")),
    testPath: test,
    returnType: "{ ok: boolean }",
    payloadType: withSchema
      ? `/**\n * The payload, as schemas/${name}.json describes it: keep the two in step (the runner\n` +
        " * checks every payload against the schema before this handler runs).\n */\n" +
        "interface Payload {\n  to: string;\n  times?: number;\n}"
      : "/** The payload this handler expects (the runner only checks that it is JSON). */\n" +
        "interface Payload {\n  to: string;\n}",
  };
  values.schemaTest = withSchema ? fill(await template("schema_test.ts.txt"), values) : "";
  await Deno.mkdir(dirname(handler), { recursive: true });
  await Deno.mkdir(dirname(test), { recursive: true });
  await Deno.writeTextFile(handler, fill(await template("handler.ts.txt"), values), {
    createNew: true,
  });
  await Deno.writeTextFile(test, fill(await template("handler_test.ts.txt"), values), {
    createNew: true,
  });
  const wrote: Scaffold = { handler, test };
  await format([handler, test]);
  if (schema !== undefined && config !== undefined) {
    await Deno.mkdir(dirname(schema), { recursive: true });
    await Deno.writeTextFile(schema, JSON.stringify(SCHEMA, null, 2) + "\n", { createNew: true });
    const functions = (config.functions ?? {}) as Record<string, Record<string, unknown>>;
    functions[name] = { ...functions[name], schema: `schemas/${name}.json` };
    await Deno.writeTextFile(
      options.functionsConfig,
      JSON.stringify({ ...config, functions }, null, 2) + "\n",
    );
    wrote.schema = schema;
    wrote.functionsConfig = options.functionsConfig;
  }
  return wrote;
}

/**
 * `deno fmt` the files written, so that they pass the project's `deno fmt --check` whatever
 * the name's length (the template cannot know where deno fmt breaks a long signature).
 * @throws {ScaffoldError} when deno fmt fails (the files are written, unformatted).
 */
async function format(files: string[]): Promise<void> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["fmt", "--quiet", "--line-width=100", ...files],
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!out.success) {
    throw new ScaffoldError(
      `wrote ${files.join(", ")} but deno fmt failed: ${new TextDecoder().decode(out.stderr)}`,
    );
  }
}

/** The schema `new --schema` writes, matching the template's Payload type. */
const SCHEMA = {
  $schema: "http://json-schema.org/draft-07/schema#",
  type: "object",
  required: ["to"],
  additionalProperties: false,
  properties: {
    to: { type: "string", minLength: 1 },
    times: { type: "integer", minimum: 1 },
  },
};

/** The example payload the templates and the printed commands use. */
const EXAMPLE_JSON = '{"to":"world"}';

/** The functions config as an object, checked to have no schema for `name` yet. */
async function readConfig(path: string, name: string): Promise<Record<string, unknown>> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return {};
    throw new ScaffoldError(`cannot read ${path}: ${(error as Error).message}`);
  }
  let config: unknown;
  try {
    config = JSON.parse(text);
  } catch (error) {
    throw new ScaffoldError(
      `${path} is not valid JSON (${(error as Error).message}); fix it first`,
    );
  }
  if (typeof config !== "object" || config === null || Array.isArray(config)) {
    throw new ScaffoldError(`${path} must hold an object like {"functions": {...}}`);
  }
  const entry = (config as { functions?: Record<string, { schema?: unknown }> }).functions?.[name];
  if (entry?.schema !== undefined) {
    throw new ScaffoldError(`${path} already gives ${name} a schema; remove it first`);
  }
  return config as Record<string, unknown>;
}

async function template(file: string): Promise<string> {
  return await Deno.readTextFile(new URL(file, TEMPLATES));
}

function fill(text: string, values: Record<string, string>): string {
  return text.replace(/\{\{(\w+)\}\}/g, (all, key) => values[key] ?? all);
}

function camel(name: string): string {
  return name.replace(/_+([A-Za-z0-9])/g, (_, c: string) => c.toUpperCase()).replace(/_/g, "");
}

/** A relative import specifier from folder `from` to file `to`. */
function importPath(from: string, to: string): string {
  const rel = relative(resolve(from), to);
  return rel.startsWith(".") ? rel : `./${rel}`;
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return false;
    throw error;
  }
}
