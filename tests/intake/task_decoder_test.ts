import { Buffer } from "node:buffer";
import type { KafkaMessage } from "kafkajs";
import { assertEquals } from "../helpers/assert.ts";
import { FIXTURES } from "../helpers/harness.ts";
import { TaskDecoder } from "../../runner/intake/task_decoder.ts";
import { TaskRejectedError } from "../../runner/errors.ts";

const TP = { topic: "async_task", partition: 3 };

function message(headers: Record<string, string>, value = "{}", key: string | null = null) {
  return {
    offset: "7",
    key: key === null ? null : Buffer.from(key),
    value: Buffer.from(value),
    headers: Object.fromEntries(Object.entries(headers).map(([k, v]) => [k, Buffer.from(v)])),
    timestamp: "1764000000000",
    attributes: 0,
    size: 0,
  } as unknown as KafkaMessage;
}

function decoder(functions = new Map()) {
  return new TaskDecoder({
    handlerHeader: "php_worker",
    functionsDir: FIXTURES,
    maxPayloadBytes: 64,
    functions,
  });
}

/** The reason `decode` rejects the message with (fails the test if it does not). */
function reason(m: KafkaMessage): string {
  try {
    decoder().decode(TP, m);
  } catch (error) {
    if (error instanceof TaskRejectedError) return error.message;
    throw error;
  }
  throw new Error("decoded, but a rejection was expected");
}

Deno.test("decode: the handler, its file, the payload as received and the task's fields", () => {
  const task = decoder().decode(TP, message({ php_worker: "echo", trace: "x" }, '{"a":1}', "k"));
  assertEquals(task.handler, "echo");
  assertEquals(task.file, `${FIXTURES}/echo.ts`);
  assertEquals(new TextDecoder().decode(task.payload), '{"a":1}');
  assertEquals(task.fields, {
    headers: { php_worker: "echo", trace: "x" },
    key: "k",
    topic: "async_task",
    partition: 3,
    offset: "7",
    timestamp: "2025-11-24T16:00:00.000Z",
  });
});

Deno.test("decode: each rejection names what is wrong", () => {
  assertEquals(reason(message({})), 'missing header "php_worker" naming the handler');
  assertEquals(
    reason(message({ php_worker: "a-b" })),
    'invalid handler name "a-b": it must match /^\\w{1,100}$/',
  );
  assertEquals(
    reason(message({ php_worker: "nope" })),
    `unknown handler nope: no file ${FIXTURES}/nope.ts`,
  );
  assertEquals(
    reason(message({ php_worker: "echo" }, "x".repeat(65))),
    "payload of 65 bytes is over the limit of 64 (MAX_PAYLOAD_BYTES)",
  );
  assertEquals(
    reason(message({ php_worker: "echo" }, "")),
    "payload is not valid JSON: empty payload",
  );
});

Deno.test("policyFor: the function's delivery settings, the PHP daemon's by default", () => {
  const d = decoder(
    new Map([["charge", { delivery: "at-least-once" as const, ordering: "key" as const }]]),
  );
  assertEquals([d.policyFor("charge").atMostOnce, d.policyFor("charge").byKey], [false, true]);
  assertEquals([d.policyFor("other").atMostOnce, d.policyFor("other").attempts], [true, 1]);
  assertEquals(d.policyFor("charge"), d.policyFor("charge"));
});
