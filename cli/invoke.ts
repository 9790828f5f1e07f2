/**
 * `deno task invoke <name> '<json>'`: run one handler locally, without Kafka, in the sandbox
 * production uses (runner/testing.ts), print its output lines and its outcome, and exit with
 * the outcome as status: 0 ok, 1 failed, 3 rejected, 124 timeout, 2 for bad arguments.
 * @module
 */
import { parseArgs } from "node:util";
import { OPTIONS, resolveConfig } from "../runner/config.ts";
import { HANDLER_NAME_PATTERN, handlerPath } from "../runner/handler_name.ts";
import { loadFunctionConfig } from "../runner/function_config.ts";
import type { Outcome } from "../runner/report/task_reporter.ts";
import { LocalInvoker } from "../runner/testing.ts";
import { jsonErrorAt } from "./json_position.ts";

/** The exit status of each outcome. */
export const OUTCOME_STATUS: Readonly<Record<Outcome, number>> = {
  ok: 0,
  failed: 1,
  rejected: 3,
  timeout: 124,
};

/** Runner options `invoke` takes as flags (`--header` is a message header here). */
const CONFIG_FLAGS = OPTIONS.filter((o) =>
  [
    "functions-dir",
    "functions-config",
    "task-timeout-ms",
    "kill-grace-ms",
    "memory-mb",
    "max-payload-bytes",
    "task-nice",
  ].includes(o.flag)
);

export const INVOKE_USAGE = `Usage: main.ts invoke <name> ['<json>'] [options]

Runs handler <name> once (or --repeat N times) in the sandbox the runner uses, with its
grants and limits from functions.json; no broker is needed. The payload is the JSON argument,
--payload-file F, or stdin with '-' (default {}).

Options:
  --payload-file F        read the payload from file F ('-': stdin)
  --key K                 the message key
  --header k=v            a message header (repeatable)
  --isolation task|function   run in this isolation instead of the configured one
  --repeat N              run N tasks through the same executor (warm state shows)
  --json                  print one JSON object per task instead of text
${CONFIG_FLAGS.map((o) => `  --${o.flag.padEnd(22)}${o.env}: ${o.doc}`).join("\n")}

Exit status: 0 ok, 1 failed, 3 rejected, 124 timeout, 2 bad arguments.`;

/** Bad command-line input: the message says what and where. */
class UsageError extends Error {
  override name = "UsageError";
}

/** Run `invoke` with `args`; returns the exit status. */
export async function invokeCommand(args: string[]): Promise<number> {
  try {
    return await invokeOrThrow(args);
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    console.error(`invoke: ${error.message}`);
    return 2;
  }
}

async function invokeOrThrow(args: string[]): Promise<number> {
  const configOptions = Object.fromEntries(CONFIG_FLAGS.map((o) => [o.flag, { type: "string" }]));
  let parsed;
  try {
    parsed = parseArgs({
      args,
      allowPositionals: true,
      options: {
        ...configOptions as Record<string, { type: "string" }>,
        "payload-file": { type: "string" },
        key: { type: "string" },
        header: { type: "string", multiple: true },
        isolation: { type: "string" },
        repeat: { type: "string" },
        json: { type: "boolean" },
        help: { type: "boolean", short: "h" },
      },
    });
  } catch (error) {
    throw new UsageError(`${(error as Error).message}\n\n${INVOKE_USAGE}`);
  }
  const { values, positionals } = parsed;
  if (values.help) {
    console.log(INVOKE_USAGE);
    return 0;
  }
  const [name, json, ...extra] = positionals;
  if (!name) throw new UsageError(`missing <name>\n\n${INVOKE_USAGE}`);
  if (extra.length > 0) throw new UsageError(`unexpected arguments ${JSON.stringify(extra)}`);
  const flags: Record<string, string> = {};
  for (const o of CONFIG_FLAGS) {
    const v = (values as Record<string, unknown>)[o.flag];
    if (typeof v === "string") flags[o.flag] = v;
  }
  const settings = resolveConfig(flags, Deno.env.toObject());
  const functions = await loadFunctionConfig(settings.functionsConfig);
  await checkName(name, settings.functionsDir, new Set(functions.keys()), functions);

  const payload = parsePayload(
    await payloadText(json, values["payload-file"]),
    json ?? values["payload-file"],
  );
  const headers: Record<string, string> = {};
  for (const h of values.header ?? []) {
    const at = h.indexOf("=");
    if (at < 1) throw new UsageError(`--header must be k=v, got ${JSON.stringify(h)}`);
    headers[h.slice(0, at)] = h.slice(at + 1);
  }
  const isolation = values.isolation;
  if (isolation !== undefined && isolation !== "task" && isolation !== "function") {
    throw new UsageError(`--isolation must be task or function, got ${JSON.stringify(isolation)}`);
  }
  const repeat = values.repeat === undefined ? 1 : Number(values.repeat);
  if (!Number.isSafeInteger(repeat) || repeat < 1) {
    throw new UsageError(
      `--repeat must be a positive integer, got ${JSON.stringify(values.repeat)}`,
    );
  }

  const asJson = values.json === true;
  const invoker = await LocalInvoker.create(name, {
    settings,
    functions,
    isolation,
    onOutput: asJson ? undefined : (o) => console.log(`${o.stream} | ${o.line}`),
  });
  let status = 0;
  try {
    for (let i = 1; i <= repeat; i++) {
      const run = await invoker.invoke(payload, { key: values.key ?? null, headers });
      if (asJson) {
        console.log(JSON.stringify(run));
      } else {
        if (run.result !== undefined) console.log(`result | ${JSON.stringify(run.result)}`);
        const which = repeat > 1 ? ` [${i}/${repeat}]` : "";
        console.log(
          `${name}${which}: ${run.outcome} in ${run.durationMs.toFixed(0)} ms (${run.reason})`,
        );
      }
      if (status === 0) status = OUTCOME_STATUS[run.outcome];
    }
  } finally {
    await invoker.close();
  }
  return status;
}

/** The handler exists: a `.ts` file in the folder, or a functions.json `command`. */
async function checkName(
  name: string,
  dir: string,
  configured: Set<string>,
  functions: Awaited<ReturnType<typeof loadFunctionConfig>>,
): Promise<void> {
  if (!HANDLER_NAME_PATTERN.test(name)) {
    throw new UsageError(`"${name}" is not a handler name (it must match ${HANDLER_NAME_PATTERN})`);
  }
  if (functions.get(name)?.command) return;
  try {
    await Deno.stat(handlerPath(dir, name));
    return;
  } catch {
    // not there: say what is
  }
  const there: string[] = [];
  try {
    for await (const entry of Deno.readDir(dir)) {
      if (entry.name.endsWith(".ts")) there.push(entry.name.slice(0, -3));
    }
  } catch {
    // no folder: the message says so
  }
  for (const n of configured) if (functions.get(n)?.command) there.push(n);
  throw new UsageError(
    `unknown handler "${name}": no file ${handlerPath(dir, name)}` +
      (there.length > 0 ? ` (handlers there: ${there.sort().join(", ")})` : ""),
  );
}

async function payloadText(json: string | undefined, file: string | undefined): Promise<string> {
  if (json !== undefined && file !== undefined) {
    throw new UsageError("give the payload as an argument or --payload-file, not both");
  }
  const from = file ?? (json === "-" ? "-" : undefined);
  if (from === undefined) return json ?? "{}";
  if (from === "-") return await new Response(Deno.stdin.readable).text();
  try {
    return await Deno.readTextFile(from);
  } catch (error) {
    throw new UsageError(`cannot read --payload-file ${from}: ${(error as Error).message}`);
  }
}

/** Parse `text`, or say where it stops being JSON, with a caret under the spot. */
export function parsePayload(text: string, where = "the payload"): unknown {
  try {
    return JSON.parse(text);
  } catch (error) {
    const message = (error as Error).message;
    const at = jsonErrorAt(text) ?? NaN;
    const label = where === "-" ? "stdin" : where === text ? "the payload" : where;
    let excerpt = "";
    if (Number.isInteger(at)) {
      const start = Math.max(0, at - 30);
      const line = text.slice(start, at + 30).replace(/\s/g, " ");
      const { line: row, column } = lineAndColumn(text, at);
      excerpt = `\n  ${line}\n  ${" ".repeat(at - start)}^ here (line ${row}, column ${column})`;
    }
    throw new UsageError(`${label} is not valid JSON: ${message}${excerpt}`);
  }
}

/** 1-based line and column of index `at` in `text`. */
function lineAndColumn(text: string, at: number): { line: number; column: number } {
  const before = text.slice(0, at).split("\n");
  return { line: before.length, column: before[before.length - 1].length + 1 };
}
