/** kafkajs's log routing: retried, transient conditions are warnings without stacks. */
import { configure, type LogRecord, reset } from "@logtape/logtape";
import { assertEquals } from "../helpers/assert.ts";
import { createKafka } from "../../runner/kafka/client.ts";

async function captured(body: () => void): Promise<LogRecord[]> {
  const records: LogRecord[] = [];
  await configure({
    reset: true,
    sinks: { mem: (r) => records.push(r) },
    loggers: [{ category: ["task-runner"], lowestLevel: "debug", sinks: ["mem"] }],
  });
  try {
    body();
  } finally {
    await reset();
  }
  return records;
}

Deno.test("a coordinator that is loading is a warning without a stack", async () => {
  const records = await captured(() => {
    const log = createKafka({ brokers: ["127.0.0.1:1"] }).logger().namespace("Connection");
    log.error("Response GroupCoordinator", {
      error: "The coordinator is loading and hence can't process requests",
      stack: "KafkaJSProtocolError: The coordinator is loading\n    at ...",
    });
    log.error("Response FindCoordinator", { error: "The group coordinator is not available" });
  });
  assertEquals(records.map((r) => r.level), ["warning", "warning"]);
  assertEquals(records[0].properties.stack, undefined);
});

Deno.test("a failure that stops work stays an error with its stack", async () => {
  const records = await captured(() => {
    const log = createKafka({ brokers: ["127.0.0.1:1"] }).logger().namespace("Consumer");
    log.error("Crash: KafkaJSNonRetriableError", {
      error: "Topic authorization failed",
      stack: "s",
    });
  });
  assertEquals(records.map((r) => [r.level, r.properties.stack]), [["error", "s"]]);
});
