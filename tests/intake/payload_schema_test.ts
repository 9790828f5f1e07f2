/**
 * Payload schemas: compiled once from functions.json (inline or from a file), checked by the
 * decoder on the parsed payload, and refused at start-up when they cannot be compiled.
 */
import { Buffer } from "node:buffer";
import type { KafkaMessage } from "kafkajs";
import assertStrict from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { FunctionsConfigError, TaskRejectedError } from "../../runner/errors.ts";
import { parseFunctionConfig } from "../../runner/function_config.ts";
import { PayloadSchemas } from "../../runner/intake/payload_schema.ts";
import { TaskDecoder } from "../../runner/intake/task_decoder.ts";
import { assertEquals, assertMatch } from "../helpers/assert.ts";

const FIXTURES = fileURLToPath(new URL("../fixtures/functions/", import.meta.url));
const TO_STRING = {
  type: "object",
  properties: { to: { type: "string" }, n: { type: "integer", minimum: 1 } },
  required: ["to"],
};

function message(value: string): KafkaMessage {
  return {
    key: null,
    value: Buffer.from(value),
    headers: { php_worker: Buffer.from("echo") },
    offset: "3",
    timestamp: "1700000000000",
    attributes: 0,
  } as KafkaMessage;
}

function decoder(config: unknown): TaskDecoder {
  return new TaskDecoder({
    handlerHeader: "php_worker",
    functionsDir: FIXTURES,
    maxPayloadBytes: 4096,
    functions: parseFunctionConfig(config, "/etc/task-runner/functions.json"),
  });
}

function rejection(d: TaskDecoder, value: string): string {
  try {
    d.decode({ topic: "t", partition: 0 }, message(value));
  } catch (error) {
    assertStrict.ok(error instanceof TaskRejectedError, String(error));
    return error.message;
  }
  throw new Error(`${value} was not rejected`);
}

Deno.test("the decoder rejects a payload that does not match its function's schema, naming the pointer", () => {
  const d = decoder({ functions: { echo: { schema: TO_STRING } } });
  assertEquals(
    rejection(d, '{"to": 5}'),
    "payload does not match the schema of echo: payload/to: must be string",
  );
  assertEquals(
    rejection(d, "{}"),
    "payload does not match the schema of echo: payload: must have required property 'to'",
  );
  const task = d.decode({ topic: "t", partition: 0 }, message('{"to": "ann", "n": 2}'));
  assertEquals(task.json, { to: "ann", n: 2 });
});

Deno.test("a function without a schema accepts any JSON, and the parsed payload is kept", () => {
  const task = decoder({ functions: {} }).decode({ topic: "t", partition: 0 }, message("[1,2]"));
  assertEquals(task.json, [1, 2]);
});

Deno.test("a schema path is read relative to functions.json and compiled once at start-up", () => {
  const dir = Deno.makeTempDirSync();
  Deno.writeTextFileSync(`${dir}/echo.schema.json`, JSON.stringify(TO_STRING));
  const functions = parseFunctionConfig(
    { functions: { echo: { schema: "echo.schema.json" } } },
    `${dir}/functions.json`,
  );
  assertEquals(functions.get("echo")?.schema, `${dir}/echo.schema.json`);
  const schemas = new PayloadSchemas(functions);
  Deno.removeSync(dir, { recursive: true }); // compiled: the file is not read again
  assertStrict.throws(() => schemas.check("echo", { to: 1 }), /payload\/to: must be string/);
  schemas.check("echo", { to: "x" });
  schemas.check("other", 42);
});

Deno.test("a schema that cannot be read or compiled stops start-up, naming function and path", () => {
  const dir = Deno.makeTempDirSync();
  Deno.writeTextFileSync(`${dir}/bad.json`, '{"type": "strng"}');
  Deno.writeTextFileSync(`${dir}/broken.json`, "{");
  const cases: Array<[unknown, RegExp]> = [
    [{ type: "strng" }, /functions\.echo\.schema \(inline\): does not compile: .*type/],
    ["bad.json", new RegExp(`functions\\.echo\\.schema \\(${dir}/bad\\.json\\): does not compile`)],
    ["broken.json", /broken\.json\): is not valid JSON/],
    ["missing.json", /missing\.json\): cannot be read/],
  ];
  for (const [schema, pattern] of cases) {
    const functions = parseFunctionConfig({ functions: { echo: { schema } } }, `${dir}/f.json`);
    assertStrict.throws(() => new PayloadSchemas(functions), (e: Error) => {
      assertStrict.ok(e instanceof FunctionsConfigError, String(e));
      assertMatch(e.message, pattern);
      return true;
    });
  }
  Deno.removeSync(dir, { recursive: true });
});

Deno.test("functions.json refuses a schema that is neither an object nor a .json path", () => {
  for (const schema of [5, ["x"], "schema.yaml", null]) {
    assertStrict.throws(
      () => parseFunctionConfig({ functions: { a: { schema } } }, "f.json"),
      (e: Error) =>
        e instanceof FunctionsConfigError && /functions\.a\.schema must be/.test(e.message),
    );
  }
});
