/** The log formatters: short messages without quoted values, each field written once. */
import type { LogRecord } from "@logtape/logtape";
import { assert, assertEquals } from "../helpers/assert.ts";
import { jsonLineFormatter, prettyFormatter } from "../../runner/report/logging.ts";

function record(template: string, properties: Record<string, unknown>): LogRecord {
  const message: unknown[] = [];
  const parts = template.split(/\{(\w+)\}/);
  for (let i = 0; i < parts.length; i++) message.push(i % 2 ? properties[parts[i]] : parts[i]);
  return {
    category: ["task-runner", "task"],
    level: "info",
    message,
    rawMessage: template,
    timestamp: 0,
    properties,
  };
}

Deno.test("the JSON message is a sentence without quoted values; the fields are in properties", () => {
  const props = {
    outcome: "ok",
    handler: "hello",
    topic: "async_task",
    partition: 3,
    offset: "0",
    durationMs: 38,
  };
  const line = jsonLineFormatter(
    record("task {outcome}: {handler} {topic}/{partition}@{offset} in {durationMs} ms", props),
  );
  const parsed = JSON.parse(line);
  assertEquals(parsed.message, "task ok: hello async_task/3@0 in 38 ms");
  assertEquals(parsed.properties, props);
  assertEquals(parsed.level, "INFO");
  assertEquals(parsed.logger, "task-runner.task");
  assert(line.endsWith("\n"));
});

Deno.test("an output line appears once in a JSON record, and once on a terminal", () => {
  const text = "a line the handler printed, 1234567890";
  const r = record("{handler} {stream}", { handler: "hello", stream: "stdout", line: text });
  const json = jsonLineFormatter(r);
  assertEquals(json.split(text).length - 1, 1, json);
  assertEquals(JSON.parse(json).properties.line, text);
  const pretty = prettyFormatter(r);
  assertEquals(pretty.split(text).length - 1, 1, pretty);
  assert(pretty.includes(`hello stdout: ${text}`), pretty);
});

Deno.test("null renders as a dash, objects as JSON, errors as their message", () => {
  const r = record("{a} {b} {c}", { a: null, b: { x: 1 }, c: new Error("gone") });
  assertEquals(JSON.parse(jsonLineFormatter(r)).message, '- {"x":1} gone');
});

Deno.test("a bigint property is written as a string, in the message and in properties", () => {
  const parsed = JSON.parse(
    jsonLineFormatter(record("at {offset}", { offset: 12345678901234567890n })),
  );
  assertEquals(parsed.message, "at 12345678901234567890");
  assertEquals(parsed.properties.offset, "12345678901234567890");
});
