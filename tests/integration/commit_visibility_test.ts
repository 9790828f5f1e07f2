/**
 * Commit before dispatch, as Kafka's own tools see it: `kafka-consumer-groups --describe`
 * (ConsumerGroupCommand, from the broker's jars) shows a running at-most-once task as committed,
 * and after kill -9 the next owner still names it.
 */
import { assert, assertEquals } from "../helpers/assert.ts";
import { brokers, kcatProduce, ROOT, RunnerProcess, unique } from "../helpers/harness.ts";

/** The broker's jars: BROKER_LIB, else the repository's `.broker/lib` (broker/kafka.sh fetch). */
const LIB = Deno.env.get("BROKER_LIB") ?? `${ROOT}.broker/lib`;

/** `kafka-consumer-groups --describe --group <group>`: per partition, current offset and lag. */
async function describeGroup(
  group: string,
): Promise<Map<number, { current: string; lag: string }>> {
  const { code, stdout, stderr } = await new Deno.Command("java", {
    args: [
      "-cp",
      `${LIB}/*`,
      "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand",
      "--bootstrap-server",
      brokers(),
      "--describe",
      "--group",
      group,
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(stdout);
  assertEquals(code, 0, `ConsumerGroupCommand failed: ${new TextDecoder().decode(stderr)}`);
  const rows = new Map<number, { current: string; lag: string }>();
  for (const line of text.split("\n")) {
    // GROUP TOPIC PARTITION CURRENT-OFFSET LOG-END-OFFSET LAG CONSUMER-ID HOST CLIENT-ID
    const cols = line.trim().split(/\s+/);
    if (cols[0] === group && /^\d+$/.test(cols[2] ?? "")) {
      rows.set(Number(cols[2]), { current: cols[3], lag: cols[5] });
    }
  }
  return rows;
}

Deno.test("a running at-most-once task shows as committed (lag 0) in kafka-consumer-groups; after kill -9 it is named lost", async () => {
  const topic = unique("visible");
  const env = { MAX_RUNNING: "2", TOPIC_PARTITIONS: "1", SESSION_TIMEOUT_MS: "6000" };
  await using first = RunnerProcess.onTopic(topic, env);
  await first.ready();
  await kcatProduce(topic, JSON.stringify({ ms: 20_000 }), { headers: { php_worker: "sleeps" } });
  await first.waitFor(
    "the task to start",
    () => first.lines.find((l) => l.message.startsWith("Started") && l.properties.offset === "0"),
  );
  const described = await describeGroup(topic);
  assertEquals(described.get(0), { current: "1", lag: "0" }, "committed past the running task");

  first.kill("SIGKILL");
  await first.exited;
  await using second = RunnerProcess.onTopic(topic, env);
  const named = await second.waitFor(
    "the next owner to name the task that was running",
    () => second.lines.find((l) => l.message.startsWith("Skipped") && l.properties.offset === "0"),
  );
  assertEquals(named.level, "WARN");
  assert(second.outcomes().every((o) => o.offset !== "0"), "the lost task did not run again");
});
