/**
 * `replay` without a broker: option checks, what it produces from a message and what it
 * reports of it. Against the real broker: `tests/integration/replay_test.ts`.
 */
import { Buffer } from "node:buffer";
import type { KafkaMessage } from "kafkajs";
import { describe, REPLAYED_FROM_HEADER, replayMessage } from "../../ops/admin/replay_message.ts";
import { checkReplayOptions, type ReplayOptions } from "../../ops/admin/replay.ts";
import { DEAD_LETTER_HEADERS } from "../../runner/report/publisher.ts";
import { assertEquals } from "../helpers/assert.ts";

const h = DEAD_LETTER_HEADERS;

function message(fields: Partial<KafkaMessage>): KafkaMessage {
  return {
    key: null,
    value: null,
    headers: {},
    offset: "7",
    timestamp: "1700000000000",
    attributes: 0,
    ...fields,
  } as KafkaMessage;
}

Deno.test("replayMessage keeps key, value and headers, drops x-task-runner-*, adds replayed-from", () => {
  const key = Buffer.from([0x80, 0x00]);
  const value = Buffer.from('{"a":1}');
  const tag = [Buffer.from("a"), Buffer.from("b")];
  const out = replayMessage(
    "async_task.dlq",
    3,
    message({
      key,
      value,
      headers: {
        php_worker: Buffer.from("hello"),
        tag,
        [h.outcome]: Buffer.from("failed"),
        [h.attempts]: Buffer.from("3"),
        "X-Task-Runner-Custom": Buffer.from("x"),
        [REPLAYED_FROM_HEADER]: Buffer.from("older/0@1"),
      },
    }),
  );
  assertEquals(out.key, key);
  assertEquals(out.value, value);
  assertEquals(out.headers, {
    php_worker: Buffer.from("hello"),
    tag,
    [REPLAYED_FROM_HEADER]: "async_task.dlq/3@7",
  });
});

Deno.test("describe reads the handler, the key and what the dead-letter headers recorded", () => {
  const dead = describe(
    1,
    message({
      key: Buffer.from("order-1"),
      value: Buffer.from("12345"),
      headers: {
        php_worker: Buffer.from("notify"),
        [h.outcome]: Buffer.from("timeout"),
        [h.error]: Buffer.from("killed by SIGTERM after timeout 30000 ms"),
        [h.attempts]: Buffer.from("2"),
        [h.topic]: Buffer.from("async_task"),
        [h.partition]: Buffer.from("0"),
        [h.offset]: Buffer.from("41"),
        [h.time]: Buffer.from("2024-05-01T12:00:00.000Z"),
        [h.stack]: Buffer.from("at a (x.ts:1:1)\nat b (x.ts:2:2)"),
      },
    }),
    "php_worker",
  );
  assertEquals(dead, {
    partition: 1,
    offset: 7,
    timestamp: 1700000000000,
    handler: "notify",
    key: "order-1",
    keyBase64: false,
    payloadBytes: 5,
    deadLetter: {
      outcome: "timeout",
      error: "killed by SIGTERM after timeout 30000 ms",
      attempts: 2,
      origin: "async_task/0@41",
      failedAt: "2024-05-01T12:00:00.000Z",
      stack: ["at a (x.ts:1:1)", "at b (x.ts:2:2)"],
    },
    target: null,
    preview: "12345",
    headers: {
      php_worker: "notify",
      [h.outcome]: "timeout",
      [h.error]: "killed by SIGTERM after timeout 30000 ms",
      [h.attempts]: "2",
      [h.topic]: "async_task",
      [h.partition]: "0",
      [h.offset]: "41",
      [h.time]: "2024-05-01T12:00:00.000Z",
      [h.stack]: "at a (x.ts:1:1)\nat b (x.ts:2:2)",
    },
  });
  const plain = describe(0, message({ key: Buffer.from([0xff]) }), "task");
  assertEquals([plain.handler, plain.key, plain.keyBase64, plain.payloadBytes], [
    null,
    "/w==",
    true,
    0,
  ]);
  assertEquals(plain.deadLetter, null);
});

Deno.test("checkReplayOptions names the option, what it must be and what it was", () => {
  const error = (options: Partial<ReplayOptions>) => {
    try {
      checkReplayOptions({ fromTopic: "async_task.dlq", toTopic: "async_task", ...options });
    } catch (e) {
      return String(e);
    }
    return "no error";
  };
  assertEquals(
    error({ limit: 0 }),
    'RangeError: Cannot replay: "limit" must be a positive integer, got 0',
  );
  assertEquals(
    error({ toTopic: "a b" }),
    'TypeError: Cannot replay: "toTopic" must be a Kafka topic name, got "a b"',
  );
  assertEquals(
    error({ partition: -1 }),
    'RangeError: Cannot replay: "partition" must be an integer >= 0, got -1',
  );
  assertEquals(
    error({ endOffset: 3 }),
    'TypeError: Cannot replay: "startOffset"/"endOffset" need "partition" (offsets are per ' +
      "partition), got none",
  );
  assertEquals(
    error({ partition: 0, startOffset: 1, until: 5 }),
    'TypeError: Cannot replay: give offsets ("startOffset"/"endOffset") or times ("since"/' +
      '"until"), not both',
  );
  assertEquals(
    error({ since: 2000, until: 1000 }),
    'RangeError: Cannot replay: "until" must be later than "since", got ' +
      "1970-01-01T00:00:02.000Z to 1970-01-01T00:00:01.000Z",
  );
  assertEquals(
    error({ handler: "" }),
    'TypeError: Cannot replay: "handler" must be a non-empty name, got ""',
  );
  assertEquals(error({ partition: 0, startOffset: 4, endOffset: 5, limit: 1 }), "no error");
  assertEquals(checkReplayOptions({ fromTopic: "a", toTopic: "b" }), {
    limit: 1000,
    handlerHeader: "php_worker",
  });
});

Deno.test("describe: a handler header repeated with different values names no handler", () => {
  const two = { php_worker: [Buffer.from("hello"), Buffer.from("echo")] };
  assertEquals(describe(0, message({ headers: two }), "php_worker").handler, null);
  const same = { php_worker: [Buffer.from("echo"), Buffer.from("echo")] };
  assertEquals(describe(0, message({ headers: same }), "php_worker").handler, "echo");
});
