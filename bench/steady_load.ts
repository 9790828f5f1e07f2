/**
 * Steady load on a runner subprocess: tasks for the `stamp` bench function produced one at a
 * time, and what the runner's lines and the function's output say of each (bench/bench.ts,
 * bench/commit_latency.ts).
 * @module
 */
import { fileURLToPath } from "node:url";
import { createKafka, createProducer } from "../runner/kafka/client.ts";
import { benchSecurity } from "./broker.ts";
import { functionsConfig, RunnerProcess, unique } from "../tests/helpers/harness.ts";

const FUNCTIONS = fileURLToPath(new URL("./functions/", import.meta.url));

export interface SteadyLoad {
  /** Produce → handler start, ms, sorted. */
  latency: number[];
  /** Message fetched by the runner → child spawned, ms, sorted. */
  dispatch: number[];
  /** Message fetched → task handed to its process (an at-most-once commit included), ms, sorted. */
  handover: number[];
  /** The rate the tasks were produced at, tasks/s. */
  rate: number;
}

/**
 * Steady load: `count` tasks produced one at a time, `gapMs` apart; produce → handler start
 * and fetched → spawned, leaving out the first `warmup` tasks (the first start of a function
 * pays for connections, JIT and the prewarm or warm process that later tasks find ready).
 */
export async function steadyLoad(
  brokers: string,
  options: {
    count: number;
    gapMs: number;
    warmup?: number;
    functions?: Record<string, unknown>;
    env?: Record<string, string>;
  },
): Promise<SteadyLoad> {
  const { count, gapMs, warmup = 5 } = options;
  const topic = unique("latency");
  await using config = await functionsConfig(options.functions ?? {});
  await using runner = new RunnerProcess({
    TASK_TOPIC: topic,
    GROUP_ID: topic,
    FUNCTIONS_DIR: FUNCTIONS,
    FUNCTIONS_CONFIG: config.path,
    KAFKA_BROKERS: brokers,
    ...options.env,
  });
  await runner.waitFor(
    "the group join",
    () => runner.lines.find((l) => l.message.startsWith("Joined group")),
    60_000,
  );
  const kafka = createKafka({
    brokers: brokers.split(","),
    clientId: "bench",
    security: benchSecurity(),
  });
  const producer = createProducer(kafka);
  await producer.connect();
  const began = performance.now();
  for (let i = 0; i < count; i++) {
    await producer.send({
      topic,
      messages: [{ value: JSON.stringify({ i }), headers: { php_worker: "stamp" } }],
    });
    await new Promise((r) => setTimeout(r, gapMs));
  }
  const rate = count / ((performance.now() - began) / 1000);
  await producer.disconnect();
  await runner.waitForOutcomes(count);
  // stamp prints "stamp <handler start ms> <produced ms> <i>".
  const latency = runner.output("stamp").map((line) => line.split(" ").map(Number))
    .filter(([, , , i]) => i >= warmup).map(([, started, produced]) => started - produced)
    .sort((a, b) => a - b);
  // Started lines come in start order; tasks start in produce order at this rate.
  const starts = runner.lines.filter((l) => l.message.startsWith("Started")).slice(warmup);
  const since = (field: string) =>
    starts.map((l) => (l.properties.queuedMs as number) + (l.properties[field] as number))
      .sort((a, b) => a - b);
  return { latency, dispatch: since("dispatchMs"), handover: since("handoverMs"), rate };
}
