/**
 * `replay` against the real broker: dead letters produced with the runner's own Publisher,
 * replayed by offsets and by times, and the target topic read back byte for byte.
 */
import { Buffer } from "node:buffer";
import type { Admin, IHeaders, KafkaMessage, Message, Producer } from "kafkajs";
import { readRanges } from "../../ops/admin/range_reader.ts";
import { replay, REPLAYED_FROM_HEADER } from "../../ops/admin/replay.ts";
import { DEAD_LETTER_HEADERS, Publisher } from "../../runner/report/publisher.ts";
import { assert, assertEquals, assertMatch } from "../helpers/assert.ts";
import { runAdmin } from "../helpers/cli_capture.ts";
import { createTopic, kafkaClients, testKafka, unique } from "../helpers/harness.ts";

const kafka = testKafka;

/** A message as plain data: bytes as latin1 strings (one char per byte, so exact). */
interface Plain {
  partition: number;
  offset: number;
  key: string | null;
  value: string | null;
  headers: Record<string, string | string[]>;
}

const bytes = (b: Buffer | string | null | undefined) =>
  b === null || b === undefined ? null : Buffer.from(b).toString("latin1");

function plainHeaders(headers: IHeaders | undefined): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const [name, v] of Object.entries(headers ?? {})) {
    if (v !== undefined) out[name] = Array.isArray(v) ? v.map((x) => bytes(x)!) : bytes(v)!;
  }
  return out;
}

/** Every message of `topic`, by partition then offset. */
async function readAll(admin: Admin, topic: string): Promise<Plain[]> {
  const offsets = await admin.fetchTopicOffsets(topic);
  const out: Plain[] = [];
  await readRanges(kafka(), {
    topic,
    groupPrefix: "tests-read",
    ranges: offsets.map((p) => ({
      partition: p.partition,
      start: Number(p.low),
      end: Number(p.high),
    })),
    onMessage: (partition, m: KafkaMessage) =>
      void out.push({
        partition,
        offset: Number(m.offset),
        key: bytes(m.key),
        value: bytes(m.value),
        headers: plainHeaders(m.headers),
      }),
  });
  return out.sort((a, b) => a.partition - b.partition || a.offset - b.offset);
}

const endOffsets = async (admin: Admin, topic: string) =>
  (await admin.fetchTopicOffsets(topic)).map((p) => Number(p.high)).reduce((a, b) => a + b, 0);

/** The tasks that failed: varied keys, binary bytes, repeated headers. */
const ORIGINALS: Array<{ key: Buffer | null; value: Buffer | null; headers: IHeaders }> = [
  { key: Buffer.from("order-1"), value: Buffer.from('{"n":1}'), headers: { php_worker: "hello" } },
  {
    key: null,
    value: Buffer.from([0xff, 0x00, 0xfe, 0x7b]),
    headers: { php_worker: "word_count", tag: [Buffer.from("a"), Buffer.from("b")] },
  },
  {
    key: Buffer.from([0x80, 0x81]),
    value: Buffer.from('{"n":3}'),
    headers: { php_worker: "hello", trace: Buffer.from([0xc3, 0x28]) },
  },
  { key: Buffer.from("order-4"), value: Buffer.from("{}"), headers: { php_worker: "notify" } },
  { key: Buffer.from("order-5"), value: Buffer.from('"five"'), headers: { php_worker: "hello" } },
];

/** Dead-letter ORIGINALS with the runner's Publisher into a new 1-partition topic. */
async function deadLetters(clients: { admin: Admin; producer: Producer }): Promise<string> {
  const dlq = unique("replay_dlq");
  await createTopic(clients.admin, dlq, 1);
  const publisher = new Publisher(clients.producer, dlq);
  for (const [i, o] of ORIGINALS.entries()) {
    const message = {
      ...o,
      offset: String(100 + i),
      timestamp: "0",
      attributes: 0,
    } as KafkaMessage;
    await publisher.deadLetter({ topic: "async_task", partition: 2, message }, {
      outcome: i === 3 ? "timeout" : "failed",
      error: i === 3 ? "killed by SIGTERM after timeout 30000 ms" : "exit 1: handler threw",
      exitCode: i === 3 ? null : 1,
      attempts: 3,
    });
  }
  return dlq;
}

const original = (i: number, source: string) => ({
  key: bytes(ORIGINALS[i].key),
  value: bytes(ORIGINALS[i].value),
  headers: { ...plainHeaders(ORIGINALS[i].headers), [REPLAYED_FROM_HEADER]: source },
});

Deno.test("replay by offsets: key, payload and headers byte for byte, dead-letter headers gone", async () => {
  await using clients = await kafkaClients();
  const dlq = await deadLetters(clients);
  const target = unique("replay_target");
  await createTopic(clients.admin, target, 3);

  const report = await replay(kafka(), {
    fromTopic: dlq,
    toTopic: target,
    partition: 0,
    startOffset: 1,
    endOffset: 4,
  });
  assertEquals([report.read, report.produced, report.skipped, report.limitReached], [
    3,
    3,
    0,
    false,
  ]);
  assertEquals(report.ranges, [{ partition: 0, start: 1, end: 4, resumeAt: null }]);
  assertEquals(report.messages.map((m) => m.offset), [1, 2, 3]);
  assertEquals(report.messages[2].deadLetter, {
    outcome: "timeout",
    error: "killed by SIGTERM after timeout 30000 ms",
    attempts: 3,
    origin: "async_task/2@103",
    failedAt: report.messages[2].deadLetter!.failedAt,
    stack: [],
  });

  const got = await readAll(clients.admin, target);
  assertEquals(got.length, 3);
  // Where the report says each landed is where it is.
  for (const m of report.messages) {
    const at = got.find((g) =>
      g.partition === m.target!.partition && g.offset === m.target!.offset
    );
    assert(at, `message ${m.offset} at ${JSON.stringify(m.target)}`);
    const { key, value, headers } = at;
    assertEquals({ key, value, headers }, original(m.offset, `${dlq}/0@${m.offset}`));
    assert(
      !Object.keys(headers).some((h) => Object.values(DEAD_LETTER_HEADERS).includes(h as never)),
    );
  }
  // The same key goes to the same partition as a task produced with that key would.
  const keyed = report.messages.find((m) => m.key === "order-4")!;
  assertEquals(
    keyed.target!.partition,
    (await clients.producer.send({
      topic: target,
      messages: [{ key: "order-4", value: "probe" }],
    }))[0].partition,
  );

  // No throwaway group is left behind.
  const { groups } = await clients.admin.listGroups();
  assertEquals(groups.filter((g) => /^(task-runner-replay|tests-read)-/.test(g.groupId)), []);
});

Deno.test("replay by times: per partition, from --since to before --until", async () => {
  await using clients = await kafkaClients();
  const source = unique("replay_times");
  const target = unique("replay_times_target");
  await createTopic(clients.admin, source, 2);
  await createTopic(clients.admin, target, 1);
  const t0 = Date.now() - 600_000;
  const messages: Message[] = [];
  for (const partition of [0, 1]) {
    for (const step of [0, 1, 2, 3]) {
      messages.push({
        partition,
        key: `k${partition}-${step}`,
        value: `v${partition}-${step}`,
        timestamp: String(t0 + step * 10_000),
        headers: { php_worker: "hello" },
      });
    }
  }
  await clients.producer.send({ topic: source, messages });

  const cli = await runAdmin("replay", [
    "--from-topic",
    source,
    "--to-topic",
    target,
    "--since",
    new Date(t0 + 5_000).toISOString(),
    "--until",
    String(t0 + 25_000),
    "--json",
  ]);
  assertEquals(cli.code, 0, cli.stderr);
  const report = JSON.parse(cli.stdout);
  assertEquals(report.ranges, [
    { partition: 0, start: 1, end: 3, resumeAt: null },
    { partition: 1, start: 1, end: 3, resumeAt: null },
  ]);
  const got = await readAll(clients.admin, target);
  assertEquals(got.map((m) => m.value), ["v0-1", "v0-2", "v1-1", "v1-2"]);
  assertEquals(got.map((m) => m.key), ["k0-1", "k0-2", "k1-1", "k1-2"]);
  assertEquals(got[3].headers, { php_worker: "hello", [REPLAYED_FROM_HEADER]: `${source}/1@2` });
  assertEquals([report.read, report.produced], [4, 4]);
});

Deno.test("replay --dry-run lists the dead letters and produces nothing", async () => {
  await using clients = await kafkaClients();
  const dlq = await deadLetters(clients);
  const target = unique("replay_dry");
  await createTopic(clients.admin, target, 1);

  const cli = await runAdmin("replay", ["--from-topic", dlq, "--to-topic", target, "--dry-run"]);
  assertEquals(cli.code, 0, cli.stderr);
  assertMatch(
    cli.stdout,
    /^0@0\s+hello\s+"order-1"\s+7\s+failed after 3 attempt\(s\) at async_task\/2@100: exit 1: handler threw$/m,
  );
  assertMatch(cli.stdout, /^0@1\s+word_count\s+\(none\)\s+4\s+failed/m);
  assertMatch(cli.stdout, /^0@2\s+hello\s+"gIE=" \(base64\)\s+7/m);
  assertMatch(cli.stdout, /^0@3\s+notify\s+"order-4"\s+2\s+timeout after 3 attempt\(s\).*SIGTERM/m);
  assertMatch(cli.stdout, /^dry run: read 5, would produce 5; nothing produced$/m);
  assertEquals(await endOffsets(clients.admin, target), 0);
});

Deno.test("replay --handler keeps one handler's tasks; --limit caps and says where to resume", async () => {
  await using clients = await kafkaClients();
  const dlq = await deadLetters(clients);
  const target = unique("replay_filter");
  await createTopic(clients.admin, target, 1);

  const filtered = await replay(kafka(), { fromTopic: dlq, toTopic: target, handler: "hello" });
  assertEquals([filtered.read, filtered.produced, filtered.skipped], [5, 3, 2]);
  assertEquals(filtered.messages.map((m) => m.offset), [0, 2, 4]);
  assertEquals((await readAll(clients.admin, target)).map((m) => m.headers[REPLAYED_FROM_HEADER]), [
    `${dlq}/0@0`,
    `${dlq}/0@2`,
    `${dlq}/0@4`,
  ]);

  // Two partitions, three "hello" tasks in each; a limit of 4 takes partition 0, then 1.
  const source = unique("replay_limit");
  await createTopic(clients.admin, source, 2);
  await clients.producer.send({
    topic: source,
    messages: [0, 1].flatMap((partition) =>
      ["hello", "other", "hello", "hello"].map((handler, i) => ({
        partition,
        value: `${partition}-${i}`,
        headers: { php_worker: handler },
      }))
    ),
  });
  const limitTarget = unique("replay_limit_target");
  await createTopic(clients.admin, limitTarget, 1);
  const cli = await runAdmin("replay", [
    "--from-topic",
    source,
    "--to-topic",
    limitTarget,
    "--handler",
    "hello",
    "--limit",
    "4",
  ]);
  assertEquals(cli.code, 0, cli.stderr);
  assertEquals((await readAll(clients.admin, limitTarget)).map((m) => m.value), [
    "0-0",
    "0-2",
    "0-3",
    "1-0",
  ]);
  assertMatch(
    cli.stdout,
    /^read \d+, produced 4 to \S+ \(acks=all\), skipped \d+ by --handler hello$/m,
  );
  assertMatch(
    cli.stdout,
    /limit of 4 reached: more messages match, not replayed from partition 1 offset 2 on/,
  );
});

Deno.test("replaying a topic into itself ends and adds exactly the selected range once", async () => {
  await using clients = await kafkaClients();
  const topic = unique("replay_self");
  await createTopic(clients.admin, topic, 2);
  const values = Array.from({ length: 6 }, (_, i) => `task-${i}`);
  await clients.producer.send({
    topic,
    messages: values.map((value, i) => ({
      key: `key-${i}`,
      value,
      headers: { php_worker: "hello" },
    })),
  });
  const before = await readAll(clients.admin, topic);

  // The CLI's default target is the task topic (--topic / TASK_TOPIC).
  const cli = await runAdmin("replay", ["--from-topic", topic, "--topic", topic, "--json"]);
  assertEquals(cli.code, 0, cli.stderr);
  assertEquals(JSON.parse(cli.stdout).produced, 6);
  const after = await readAll(clients.admin, topic);
  assertEquals(after.length, 12);
  assertEquals(after.map((m) => m.value).sort(), [...values, ...values].sort());
  const replayed = after.filter((m) => m.headers[REPLAYED_FROM_HEADER] !== undefined);
  assertEquals(
    replayed.map((m) => m.headers[REPLAYED_FROM_HEADER]).sort(),
    before.map((m) => `${topic}/${m.partition}@${m.offset}`).sort(),
  );
  // Same key, same partition: each copy sits in its original's partition.
  for (const m of replayed) {
    assertEquals(m.partition, before.find((b) => b.key === m.key)!.partition);
  }

  // One partition's range into itself: that range once more, nothing else.
  await replay(kafka(), {
    fromTopic: topic,
    toTopic: topic,
    partition: 0,
    startOffset: 0,
    endOffset: 2,
  });
  const third = await readAll(clients.admin, topic);
  assertEquals(third.length, 14);
  const added = third.filter((m) =>
    !after.some((a) => a.partition === m.partition && a.offset === m.offset)
  );
  const firstTwo = after.filter((m) => m.partition === 0).slice(0, 2);
  assertEquals(
    added.map((m) => [m.key, m.value, m.headers[REPLAYED_FROM_HEADER]]),
    firstTwo.map((m) => [m.key, m.value, `${topic}/0@${m.offset}`]),
  );
});

Deno.test("replay errors name what was wrong", async () => {
  await using clients = await kafkaClients();
  const topic = unique("replay_errors");
  await createTopic(clients.admin, topic, 2);
  await clients.producer.send({
    topic,
    messages: ["a", "b", "c"].map((value) => ({ partition: 0, value })),
  });
  const run = (...args: string[]) =>
    runAdmin("replay", ["--from-topic", topic, "--to-topic", topic, ...args]);

  const missing = await runAdmin("replay", ["--from-topic", unique("missing")]);
  assertEquals(missing.code, 1);
  assertMatch(missing.stderr, /UnknownTopicError: topic "missing_.*" does not exist/);
  const noTarget = await runAdmin("replay", [
    "--from-topic",
    topic,
    "--to-topic",
    unique("nowhere"),
  ]);
  assertEquals(noTarget.code, 1);
  assertMatch(noTarget.stderr, /UnknownTopicError: topic "nowhere_.*" does not exist/);
  const noPartition = await run("--partition", "7");
  assertEquals(noPartition.code, 1);
  assertMatch(noPartition.stderr, /has no partition 7 \(it has 0\.\.1\)/);
  const past = await run("--partition", "0", "--end-offset", "9");
  assertEquals(past.code, 1);
  assertMatch(
    past.stderr,
    /OffsetOutOfRangeError: --end-offset 9 is past the end of .*\/0: its messages are 0\.\.2/,
  );

  const usage = [
    [["--start-offset", "1"], /--start-offset\/--end-offset need --partition/],
    [
      ["--partition", "0", "--start-offset", "2", "--end-offset", "1"],
      /--end-offset must be greater than --start-offset/,
    ],
    [
      ["--partition", "0", "--start-offset", "0", "--since", "0"],
      /offsets .* or times .*, not both/,
    ],
    [["--since", "tomorrow"], /--since must be ms since the epoch or an ISO 8601 time/],
    [["--limit", "0"], /--limit must be an integer >= 1, got "0"/],
  ] as const;
  for (const [args, message] of usage) {
    const r = await run(...args);
    assertEquals(r.code, 2, `${args.join(" ")}: ${r.stderr}`);
    assertMatch(r.stderr, message);
  }
  const none = await runAdmin("replay", []);
  assertEquals(none.code, 2);
  assertMatch(none.stderr, /--from-topic is required/);

  // Nothing was produced by any of these.
  assertEquals(await endOffsets(clients.admin, topic), 3);
});
