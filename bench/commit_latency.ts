/**
 * At-most-once function mode latency next to the broker's commit round trip, measured on the
 * same broker in one run (issue 16): an at-most-once task cannot be handed over before its
 * commit is back, so the round trip is the floor, and what the runner adds is the rest.
 *
 * - commit round trip: a kafkajs consumer that owns a 1-partition topic commits `count` times,
 *   one at a time, as the runner's consumer does;
 * - the runner, function mode, at-most-once, one task every `gapMs` (bench/steady_load.ts):
 *   message fetched → task written to its warm process, and produce → handler start (1 ms
 *   steps).
 * @module
 */
import { createKafka, createProducer } from "../runner/kafka/client.ts";
import { unique } from "../tests/helpers/harness.ts";
import { steadyLoad } from "./steady_load.ts";

/** What {@link commitLatency} measured, each list in ms, sorted. */
export interface CommitLatency {
  /** One offset commit, sent and acknowledged. */
  commit: number[];
  /** Fetched → task written to its warm process (the commit included). */
  handover: number[];
  /** Produce → handler start. */
  produceToStart: number[];
}

/** Options of {@link commitLatency}. */
export interface CommitLatencyOptions {
  brokers: string;
  /** Commits timed, and tasks run. @default 200 */
  count?: number;
  /** Time between two tasks. @default 20 */
  gapMs?: number;
  /** First tasks left out (the warm process starting). @default 5 */
  warmup?: number;
}

/** Commit round trips of a consumer group member, one at a time. */
async function commitRoundTrips(brokers: string, count: number): Promise<number[]> {
  const topic = unique("commit_rtt");
  const kafka = createKafka({ brokers: brokers.split(","), clientId: "bench-commit" });
  const admin = kafka.admin();
  const producer = createProducer(kafka);
  const consumer = kafka.consumer({ groupId: topic });
  await Promise.all([admin.connect(), producer.connect(), consumer.connect()]);
  try {
    await admin.createTopics({ topics: [{ topic, numPartitions: 1 }], waitForLeaders: true });
    await producer.send({ topic, messages: [{ value: "{}" }] });
    await consumer.subscribe({ topics: [topic], fromBeginning: true });
    const owned = Promise.withResolvers<void>();
    await consumer.run({ autoCommit: false, eachMessage: () => Promise.resolve(owned.resolve()) });
    await owned.promise;
    const times: number[] = [];
    for (let i = 1; i <= count; i++) {
      const began = performance.now();
      await consumer.commitOffsets([{ topic, partition: 0, offset: String(i) }]);
      times.push(performance.now() - began);
    }
    return times.sort((a, b) => a - b);
  } finally {
    await Promise.all([consumer.disconnect(), producer.disconnect()]);
    await admin.deleteTopics({ topics: [topic] }).catch(() => {});
    await admin.disconnect();
  }
}

/** Commit round trips and at-most-once function mode latency on one broker, side by side. */
export async function commitLatency(options: CommitLatencyOptions): Promise<CommitLatency> {
  const { brokers, count = 200, gapMs = 20, warmup = 5 } = options;
  const commit = await commitRoundTrips(brokers, count);
  const light = await steadyLoad(brokers, {
    count,
    gapMs,
    warmup,
    functions: { stamp: { isolation: "function" } },
  });
  return { commit, handover: light.handover, produceToStart: light.latency };
}
