/**
 * `doctor` against the real broker, against a second broker that advertises an unreachable
 * address (the advertised.listeners trap), against a port where nothing listens, and against
 * a functions folder with mistakes in it.
 */
import { fileURLToPath } from "node:url";
import {
  type Check,
  commitLingerCheck,
  type DoctorReport,
  runDoctor,
} from "../../ops/doctor/doctor.ts";
import { createKafka } from "../../runner/kafka/client.ts";
import { assert, assertEquals, assertMatch } from "../helpers/assert.ts";
import { runAdmin } from "../helpers/cli_capture.ts";
import { brokers, kafkaClients, ROOT, unique } from "../helpers/harness.ts";

const KAFKA_SH = fileURLToPath(new URL("../../broker/kafka.sh", import.meta.url));

function only(report: DoctorReport, name: string): Check[] {
  return report.checks.filter((c) => c.name === name);
}

function statuses(report: DoctorReport): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const c of report.checks) (out[c.name] ??= []).push(c.status);
  return out;
}

/** A port on 127.0.0.1 where nothing listens (bound once by the OS, then released). */
function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  return port;
}

async function kafkaSh(command: string, env: Record<string, string>) {
  const { code, stdout, stderr } = await new Deno.Command("bash", {
    args: [KAFKA_SH, command],
    env,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(stdout) + new TextDecoder().decode(stderr);
  return { code, text };
}

Deno.test("doctor: everything ok against the good broker, with a runner-like member", async () => {
  await using clients = await kafkaClients();
  const topic = unique("doctor");
  const groupId = unique("doctor_group");
  assert(
    await clients.admin.createTopics({
      waitForLeaders: true,
      topics: [{ topic, numPartitions: 2 }],
    }),
  );
  const consumer = createKafka({ brokers: brokers().split(","), clientId: "doctor-test-member" })
    .consumer({ groupId, maxWaitTimeInMs: 100 });
  const joined = new Promise((resolve) => consumer.on(consumer.events.GROUP_JOIN, resolve));
  await consumer.connect();
  try {
    await consumer.subscribe({ topics: [topic] });
    await consumer.run({ eachMessage: () => Promise.resolve() });
    await joined;

    const started = performance.now();
    const report = await runDoctor({
      brokers: brokers().split(","),
      topic,
      groupId,
      functionsDir: `${ROOT}functions`,
      functionsConfig: `${ROOT}functions.json`,
    });
    assert(performance.now() - started < 5000, "doctor took more than 5 s");
    const bad = report.checks.filter((c) => c.status !== "ok");
    assertEquals(bad, []);
    assertEquals(report.ok, true);
    assertEquals(statuses(report), {
      bootstrap: ["ok"],
      advertised: ["ok"],
      "commit-latency": ["ok"],
      topic: ["ok"],
      group: ["ok"],
      lag: ["ok"],
      functions: ["ok"],
      "functions-config": ["ok"],
      deno: ["ok"],
    });
    const address = brokers().split(",")[0];
    assertMatch(only(report, "advertised")[0].message, new RegExp(`advertises ${address}:`));
    assertEquals(only(report, "topic")[0].message, `${topic} exists, 2 partitions`);
    // The test broker is started by broker/kafka.sh, which turns the commit linger off.
    assertMatch(only(report, "commit-latency")[0].message, /linger.ms=0\)$/);
    assertMatch(only(report, "group")[0].message, /Stable, 1 member\(s\): doctor-test-member@/);
    assertMatch(
      only(report, "functions")[0].message,
      /3 handler\(s\): hello, notify_webhook, word_count/,
    );

    // With the embedded local broker (KAFKA_BROKERS empty), Java and Maven are checked too.
    const local = await runDoctor({
      brokers: brokers().split(","),
      topic,
      groupId,
      functionsDir: `${ROOT}functions`,
      functionsConfig: `${ROOT}functions.json`,
      localBroker: true,
    });
    const javaHere = await new Deno.Command("java", { args: ["-version"], stderr: "null" })
      .output().then(() => true, () => false);
    const [java] = only(local, "java");
    assertEquals(java.status, javaHere ? "ok" : "warn", java.message);
    assertMatch(
      java.message,
      javaHere ? /^Java \d+[.\d]* \(the local broker needs 17\+\)$/ : /^java not found/,
    );
    assertEquals(only(local, "maven").length, 1);

    // The CLI: aligned text lines, exit 0; JSON with the same checks.
    const flags = ["--topic", topic, "--group", groupId, "--functions-dir", `${ROOT}functions`];
    const text = await runAdmin("doctor", flags);
    assertEquals(text.code, 0, text.stdout + text.stderr);
    assertMatch(text.stdout, new RegExp(`^ok   bootstrap\\s+${address} reachable`, "m"));
    assertMatch(text.stdout, /^doctor: \d+ checks, 0 failed, 0 warning\(s\)$/m);
    const json = await runAdmin("doctor", [...flags, "--json"]);
    assertEquals(JSON.parse(json.stdout).ok, true);
  } finally {
    await consumer.disconnect();
  }
});

Deno.test("doctor: unreachable advertised address = the advertised.listeners trap", async () => {
  const port = Number(Deno.env.get("TEST_BAD_BROKER_PORT") ?? "39192");
  const env = { BROKER_PORT: String(port), BROKER_ADVERTISED_HOST: "broker.invalid" };
  // Never reuse (and then stop) a broker someone else runs on that port.
  const status = await kafkaSh("status", env);
  assert(
    status.code === 3,
    `a broker already runs on ${port}; set TEST_BAD_BROKER_PORT: ${status.text}`,
  );
  try {
    const start = await kafkaSh("start", env);
    assertEquals(start.code, 0, start.text);

    const began = performance.now();
    const report = await runDoctor({
      brokers: [`127.0.0.1:${port}`],
      topic: "async_task",
      groupId: "task-runner",
      functionsDir: `${ROOT}functions`,
      functionsConfig: `${ROOT}functions.json`,
    });
    const took = performance.now() - began;
    assert(took < 5000, `doctor took ${Math.round(took)} ms`);
    assertEquals(report.ok, false);
    assertEquals(only(report, "bootstrap").map((c) => c.status), ["ok"]);
    const [advertised] = only(report, "advertised");
    assertEquals(advertised.status, "fail");
    assertMatch(advertised.message, new RegExp(`advertises broker\\.invalid:${port}, which`));
    assertMatch(advertised.message, new RegExp(`bootstrap 127\\.0\\.0\\.1:${port} answers`));
    assertMatch(advertised.message, /advertised\.listeners trap/);
    assertMatch(
      advertised.fix!,
      new RegExp(`advertised\\.listeners=PLAINTEXT://127\\.0\\.0\\.1:${port}`),
    );
    assertEquals(only(report, "topic")[0].status, "skip");
    assertEquals(only(report, "group")[0].status, "skip");

    const text = await runAdmin("doctor", ["--brokers", `127.0.0.1:${port}`]);
    assertEquals(text.code, 1);
    assertMatch(
      text.stdout,
      new RegExp(`^fail advertised\\s+the broker advertises broker\\.invalid:${port}`, "m"),
    );
    assertMatch(
      text.stdout,
      /^\s+fix: on the broker set advertised\.listeners=PLAINTEXT:\/\/127\.0\.0\.1:/m,
    );
  } finally {
    const stop = await kafkaSh("stop", env);
    assertEquals(stop.code, 0, stop.text);
  }
});

Deno.test("doctor: nothing listening on the bootstrap port fails within seconds", async () => {
  const address = `127.0.0.1:${freePort()}`;
  const began = performance.now();
  const report = await runDoctor({
    brokers: [address],
    topic: "async_task",
    groupId: "task-runner",
    functionsDir: `${ROOT}functions`,
    functionsConfig: `${ROOT}functions.json`,
  });
  assert(performance.now() - began < 3000, "doctor took more than 3 s");
  assertEquals(report.ok, false);
  const [bootstrap] = only(report, "bootstrap");
  assertEquals(bootstrap.status, "fail");
  assertMatch(bootstrap.message, new RegExp(`${address} not reachable: .*refused`, "i"));
  assertEquals(statuses(report).advertised, ["skip"]);
  assertEquals(statuses(report).group, ["skip"]);
});

Deno.test("doctor: functions with a bad name or no default export; the config file", async () => {
  const dir = await Deno.makeTempDir({ prefix: "doctor_functions_" });
  try {
    await Deno.writeTextFile(`${dir}/good.ts`, "export default function () {}\n");
    await Deno.writeTextFile(
      `${dir}/re_exported.ts`,
      'export { run as default } from "./good.ts";\n',
    );
    await Deno.writeTextFile(`${dir}/bad-name.ts`, "export default function () {}\n");
    await Deno.writeTextFile(`${dir}/named_only.ts`, "export function handler() {}\n");
    await Deno.writeTextFile(
      `${dir}/commented.ts`,
      '// export default function () {}\nconst s = "export default 1";\nexport const x = s;\n',
    );
    await Deno.writeTextFile(`${dir}/notes.md`, "not a handler\n");
    const config = `${dir}/functions.json`;
    await Deno.writeTextFile(config, JSON.stringify({ functions: { good: {}, ghost: {} } }));

    const options = {
      brokers: brokers().split(","),
      topic: "async_task",
      groupId: "task-runner",
      functionsDir: dir,
      functionsConfig: config,
    };
    const report = await runDoctor(options);
    const lines = only(report, "functions").map((c) => `${c.status} ${c.message}`);
    assertEquals(lines.length, 4, lines.join("\n"));
    assertEquals(lines[0], `ok ${dir}: 2 handler(s): good, re_exported`);
    assertMatch(
      lines.find((l) => l.includes("bad-name.ts"))!,
      /^warn bad-name\.ts: no task can call it/,
    );
    assertMatch(
      lines.find((l) => l.includes("named_only.ts"))!,
      /^fail named_only\.ts has no default export/,
    );
    assertMatch(
      lines.find((l) => l.includes("commented.ts"))!,
      /^fail commented\.ts has no default export/,
    );
    const grants = only(report, "functions-config").map((c) => `${c.status} ${c.message}`);
    assertEquals(grants[0], `ok ${config}: valid, grants for 2 function(s)`);
    assertMatch(grants[1], /^warn .* grants "ghost", but there is no usable ghost\.ts$/);
    assertEquals(report.ok, false);

    await Deno.writeTextFile(config, '{"functions": {"good": {"allowRead": ["relative/path"]}}}');
    const broken = await runDoctor(options);
    const [invalid] = only(broken, "functions-config");
    assertEquals(invalid.status, "fail");
    assertMatch(invalid.message, /allowRead must be a list of absolute paths/);

    const missing = await runDoctor({ ...options, functionsDir: `${dir}/nope` });
    assertEquals(only(missing, "functions")[0].status, "fail");
    assertMatch(only(missing, "functions")[0].message, /nope does not exist$/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("doctor: a broker that lingers on offset commits is named, with the setting to change", () => {
  const lingering = commitLingerCheck([
    { nodeId: 1, value: "0" },
    { nodeId: 2, value: "5" },
  ]);
  assertEquals(lingering?.status, "info");
  assertEquals(
    lingering?.message,
    "broker 2 holds offset commits up to 5 ms (group.coordinator.append.linger.ms=5): " +
      "at-most-once tasks wait that long before they start",
  );
  assertMatch(lingering?.fix ?? "", /set group\.coordinator\.append\.linger\.ms=0/);
  assertEquals(commitLingerCheck([{ nodeId: 1, value: "0" }])?.status, "ok");
  // Kafka before 4 has no such setting: nothing to report.
  assertEquals(commitLingerCheck([{ nodeId: 1, value: undefined }]), null);
  const unreadable = commitLingerCheck(new Error("Not authorized"));
  assertEquals(unreadable?.status, "info");
  assertMatch(unreadable?.message ?? "", /could not read .* Not authorized/);
});
