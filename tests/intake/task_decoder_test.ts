/**
 * The task decoder without a broker: messages as kafkajs hands them over (repeated headers
 * come as arrays), decoded against the fixture functions folder.
 */
import { Buffer } from "node:buffer";
import type { KafkaMessage } from "kafkajs";
import assertStrict from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { decodeTask } from "../../runner/intake/task_decoder.ts";
import { TaskRejectedError } from "../../runner/errors.ts";
import { assertEquals } from "../helpers/assert.ts";

const FIXTURES = fileURLToPath(new URL("../fixtures/functions/", import.meta.url));
const OPTIONS = { handlerHeader: "php_worker", functionsDir: FIXTURES, maxPayloadBytes: 1024 };

function message(headers: KafkaMessage["headers"]): KafkaMessage {
  return {
    key: null,
    value: Buffer.from("{}"),
    headers,
    offset: "7",
    timestamp: "1700000000000",
    attributes: 0,
  } as KafkaMessage;
}

function rejection(headers: KafkaMessage["headers"]): string {
  try {
    decodeTask("t", 0, message(headers), OPTIONS);
  } catch (error) {
    assertStrict.ok(error instanceof TaskRejectedError, String(error));
    return error.message;
  }
  throw new Error("the message was not rejected");
}

Deno.test("a handler header repeated with different values is rejected, naming them", () => {
  assertEquals(
    rejection({ php_worker: [Buffer.from("hello"), Buffer.from("echo")] }),
    'header "php_worker" is repeated with different values ("hello", "echo"): ' +
      "send it once, naming one handler",
  );
});

Deno.test("a handler header repeated with the same value is that handler", () => {
  const task = decodeTask("t", 0, message({ php_worker: [Buffer.from("echo"), "echo"] }), OPTIONS);
  assertEquals([task.handler, task.fields.headers.php_worker], ["echo", "echo"]);
});
