/**
 * The dispatcher with fake collaborators (no broker, no processes) and a fake clock: what is
 * committed when relative to the start of each task, slots, retries, key order, rebalances.
 */
import { Buffer } from "node:buffer";
import type { KafkaMessage } from "kafkajs";
import { assert, assertEquals } from "../helpers/assert.ts";
import { FakeClock, flushMicrotasks } from "../helpers/fake_clock.ts";
import type { ChildResult } from "../../runner/sandbox/process_source.ts";
import { deliveryPolicy } from "../../runner/dispatch/delivery_policy.ts";
import { Dispatcher, type Job } from "../../runner/dispatch/dispatcher.ts";
import {
  type LedgerCommit,
  MAX_ACTIVE,
  parseSkipSet,
} from "../../runner/intake/partition_ledger.ts";
import { ConcurrencyCap } from "../../runner/dispatch/concurrency_cap.ts";
import type { FunctionConfig } from "../../runner/function_config.ts";
import { TaskRejectedError } from "../../runner/errors.ts";

const OK: ChildResult = { outcome: "ok", reason: "exit 0", code: 0, signal: null, droppedBytes: 0 };
const FAILED: ChildResult = { ...OK, outcome: "failed", reason: "exit 1", code: 1 };

const message = (offset: number, options: { key?: string; bad?: boolean } = {}) =>
  ({
    offset: String(offset),
    key: options.key === undefined ? null : Buffer.from(options.key),
    value: new TextEncoder().encode(options.bad ? "nope" : "{}"),
    headers: {},
    timestamp: "0",
    attributes: 0,
    size: 0,
  }) as unknown as KafkaMessage;

const TP = { topic: "t", partition: 0 };

/** The offset and metadata of the last commit. */
const last = (commits: LedgerCommit[]) => {
  const { offset, metadata } = commits.at(-1)!;
  return { offset, metadata };
};

/** A batch control that stays active. */
const control = { active: () => true, heartbeat: () => Promise.resolve(), resolveOffset() {} };

/** A dispatcher whose children end when the test says so, and whose commits are recorded. */
function fixture(
  grants: FunctionConfig = {},
  options: { capacity?: number; committed?: { offset: string; metadata: string | null } } = {},
) {
  const clock = new FakeClock();
  const commits: LedgerCommit[] = [];
  /** How many commits had been made when each task was handed to `execute`, by offset. */
  const commitsAtStart = new Map<string, number>();
  /** The same when each job was prepared, and the jobs discarded. */
  const commitsAtPrepare = new Map<string, number>();
  const discarded: string[] = [];
  const events: string[] = [];
  let failCommits = false;
  /** While set, commits wait for it (a commit on its way). */
  let holdCommits: Promise<void> | null = null;
  const running = new Map<string, Array<(result: ChildResult) => void>>();
  const cap = new ConcurrencyCap(options.capacity ?? 10);
  const dispatcher = new Dispatcher({
    cap,
    clock,
    source: {
      decode: (_tp, m) => {
        if (new TextDecoder().decode(m.value!) === "nope") {
          throw new TaskRejectedError("payload is not valid JSON");
        }
        return {
          handler: "h",
          file: "/h.ts",
          payload: new Uint8Array(),
          json: {},
          fields: {
            headers: {},
            key: null,
            topic: "t",
            partition: 0,
            offset: m.offset,
            timestamp: "",
          },
        };
      },
      policyFor: () => deliveryPolicy(grants),
    },
    offsets: {
      committed: () =>
        Promise.resolve(
          commits.length > 0
            ? last(commits)
            : options.committed ?? { offset: "-1", metadata: null },
        ),
      commit: async (_tp, commit) => {
        if (holdCommits) await holdCommits;
        if (failCommits) throw new Error("broker gone");
        commits.push(commit);
      },
    },
    executor: {
      execute: (job: Job) => {
        commitsAtStart.set(job.message.offset, commits.length);
        events.push(`start ${job.message.offset}#${job.attempt}`);
        return new Promise((resolve) => {
          const list = running.get(job.message.offset) ?? [];
          list.push(resolve);
          running.set(job.message.offset, list);
        });
      },
      prepare: (job: Job) => commitsAtPrepare.set(job.message.offset, commits.length),
      discard: (job: Job) => discarded.push(job.message.offset),
    },
    reporter: {
      finish: (job) => (events.push(`end ${job.message.offset}`), Promise.resolve()),
      reject: (r) => (events.push(`rejected ${r.message.offset}`), Promise.resolve()),
      retrying: (job, _r, delay) => events.push(`retry ${job.message.offset} in ${delay}`),
      skipped: (_tp, offset, started) => events.push(`skipped ${offset} ${started}`),
      handedOver: (jobs, why) =>
        events.push(`handed over ${jobs.map((j) => j.message.offset)}: ${why}`),
      commitFailed: () => events.push("commit failed"),
      metadataFull: () => events.push("metadata full"),
    },
  });
  const end = async (offset: number, result = OK) => {
    const list = running.get(String(offset));
    assert(list?.length, `task ${offset} is running`);
    list.shift()!(result);
    await flushMicrotasks(); // finish(), the bookkeeping and the commit after it
  };
  return {
    unfailCommits: () => (failCommits = false),
    holdCommits: (until: Promise<void>) => (holdCommits = until),
    dispatcher,
    cap,
    clock,
    commits,
    commitsAtStart,
    commitsAtPrepare,
    discarded,
    events,
    end,
    failCommits: () => (failCommits = true),
  };
}

Deno.test("at-most-once: the batch that starts is committed past its tasks before they run, in one commit", async () => {
  const f = fixture();
  await f.dispatcher.ingest(TP, [message(0), message(1), message(2)], control);
  // Their processes may start while the commit is on its way; their tasks come after it.
  assertEquals([...f.commitsAtPrepare.values()], [0, 0, 0]);
  assertEquals(f.commits.length, 1, "one commit for the three tasks that start together");
  // Kafka's own tools see them committed (lag 0); the metadata still names them as started.
  assertEquals(f.commits[0].offset, "3");
  assertEquals([...parseSkipSet("3", f.commits[0].metadata).started], [0n, 1n, 2n]);
  assertEquals([...f.commitsAtStart.values()], [1, 1, 1], "no task ran before its commit");
  await f.end(1);
  await f.end(0);
  await f.end(2);
  await f.dispatcher.flushCommits();
  assertEquals(last(f.commits), { offset: "3", metadata: "" });
});

Deno.test("at-least-once: nothing is committed before a start; the outcome moves the offset", async () => {
  const f = fixture({ delivery: "at-least-once" });
  await f.dispatcher.ingest(TP, [message(0), message(1)], control);
  assertEquals(f.commitsAtStart.size, 2);
  assertEquals(f.commitsAtPrepare.size, 0, "nothing to overlap: no commit comes first");
  await f.end(1);
  // Offset 1 is done but 0 is not: the offset stays, 1 is listed as finished.
  assertEquals(f.commits.at(-1)?.offset, "0");
  assertEquals([...parseSkipSet("0", f.commits.at(-1)!.metadata).finished], [1n]);
  await f.end(0);
  assertEquals(last(f.commits), { offset: "2", metadata: "" });
});

Deno.test("a failed commit discards what was prepared, runs nothing and frees the slots", async () => {
  const f = fixture();
  f.failCommits();
  let error: unknown;
  try {
    await f.dispatcher.ingest(TP, [message(0), message(1)], control);
  } catch (e) {
    error = e;
  }
  assertEquals((error as Error)?.message, "broker gone", "kafkajs must see the failure");
  assertEquals(f.discarded, ["0", "1"]);
  assertEquals(f.commitsAtStart.size, 0, "a task ran without its commit");
  assertEquals(f.cap.running, 0);
});

Deno.test("a waiting task is never committed: the offset stops below it", async () => {
  const f = fixture({}, { capacity: 2 });
  const ingest = f.dispatcher.ingest(TP, [message(0), message(1), message(2)], control);
  await flushMicrotasks();
  assertEquals(f.commits.map((c) => c.offset), ["2"], "0 and 1 start, 2 waits for a slot");
  await f.end(0); // a slot frees: 2 starts, after its own commit
  await ingest;
  assertEquals(f.commits.at(-1)?.offset, "3");
  assertEquals(f.commitsAtStart.get("2"), f.commits.length);
});

Deno.test("rejected messages are reported, then committed; the tasks around them run", async () => {
  const f = fixture();
  await f.dispatcher.ingest(TP, [message(0), message(1, { bad: true }), message(2)], control);
  assertEquals(f.events.slice(0, 3), ["rejected 1", "start 0#1", "start 2#1"]);
  assertEquals(f.commits[0].offset, "3");
});

Deno.test("retries wait for their backoff on the clock, without a slot, and commit nothing new", async () => {
  const f = fixture({ retries: { attempts: 2, baseMs: 1000, maxMs: 1000 } }, { capacity: 1 });
  await f.dispatcher.ingest(TP, [message(0)], control);
  await f.end(0, FAILED);
  assertEquals(f.cap.running, 0, "a task waiting for its retry holds no slot");
  const retry = f.events.find((e) => e.startsWith("retry 0"));
  assert(retry, f.events.join(", "));
  const delay = Number(retry.split(" in ")[1]);
  assert(delay >= 500 && delay <= 1000, `equal jitter: ${delay}`);
  const commits = f.commits.length;
  await f.clock.tick(delay - 1);
  assertEquals(f.events.filter((e) => e === "start 0#2").length, 0, "not before its backoff");
  await f.clock.tick(1);
  assertEquals(f.events.at(-1), "start 0#2");
  assertEquals(f.commits.length, commits, "an at-most-once retry was committed at its first start");
  await f.end(0);
  assertEquals(f.events.at(-1), "end 0");
});

Deno.test("ordering by key: the next task of a key starts after the first ends, committed first", async () => {
  const f = fixture({ ordering: "key" });
  await f.dispatcher.ingest(TP, [
    message(0, { key: "a" }),
    message(1, { key: "a" }),
    message(2, { key: "b" }),
  ], control);
  assertEquals(f.events, ["start 0#1", "start 2#1"]);
  assertEquals(f.commits.at(-1)?.offset, "1", "the waiting task is not committed");
  await f.end(0);
  assertEquals(f.events.slice(2), ["end 0", "start 1#1"]);
  assertEquals(f.commitsAtStart.get("1"), f.commits.length, "committed before it got its task");
  assertEquals(f.commits.at(-1)?.offset, "3");
});

/**
 * Offset 0 finished here, unrecorded, and the state was read again: the next batch (offset 1)
 * names nothing lost, and the commit after it records both as done.
 */
async function assertZeroNotNamedLost(f: ReturnType<typeof fixture>): Promise<void> {
  await f.dispatcher.ingest(TP, [message(1)], control);
  assertEquals(f.events.filter((e) => e.startsWith("skipped")), []);
  await f.end(1);
  await f.dispatcher.flushCommits();
  assertEquals(last(f.commits), { offset: "2", metadata: "" });
}

Deno.test("a rebalance drops the waiting tasks of revoked partitions and commits nothing for them", async () => {
  const f = fixture({ ordering: "key" });
  await f.dispatcher.ingest(TP, [message(0, { key: "a" }), message(1, { key: "a" })], control);
  f.dispatcher.retain([{ topic: "t", partition: 1 }]);
  assertEquals(f.events.at(-1), "handed over 1: partition revoked by a rebalance");
  const commits = f.commits.length;
  await f.end(0);
  assertEquals(f.commits.length, commits, "no commit for a partition this member lost");
});

Deno.test("at most MAX_ACTIVE offsets of a partition are started or final at once; the rest wait", async () => {
  const f = fixture({ delivery: "at-least-once" }, { capacity: MAX_ACTIVE + 10 });
  const messages = Array.from({ length: MAX_ACTIVE + 1 }, (_, i) => message(i));
  let done = false;
  const ingest = f.dispatcher.ingest(TP, messages, control).then(() => (done = true));
  await flushMicrotasks();
  assertEquals(f.commitsAtStart.size, MAX_ACTIVE);
  assertEquals(done, false, "the batch waits for room in the ledger");
  assert(f.dispatcher.blocked);
  // Offsets 1.. end while 0 runs: they stay listed (final, above the committed offset).
  await f.end(1);
  assertEquals(
    f.commitsAtStart.size,
    MAX_ACTIVE,
    "a final offset above the watermark still counts",
  );
  await f.end(0); // now 0 and 1 are below the watermark and leave the ledger
  await ingest;
  assertEquals(f.commitsAtStart.size, MAX_ACTIVE + 1);
});

Deno.test("a new owner names the previous owner's started tasks, below its committed offset too, and skips them", async () => {
  // Offsets 3 (below) and 6 (above) started at-most-once; 7 finished; committed offset 5.
  const f = fixture({}, {
    committed: { offset: "5", metadata: '{"v":1,"s":[[-2,1],[1,1]],"f":[[2,1]]}' },
  });
  await f.dispatcher.ingest(TP, [message(5), message(6), message(7), message(8)], control);
  assertEquals(f.events.filter((e) => e.startsWith("skipped")), [
    "skipped 3 true",
    "skipped 6 true",
    "skipped 7 false",
  ]);
  assertEquals(f.events.filter((e) => e.startsWith("start")), ["start 5#1", "start 8#1"]);
  assertEquals(f.commits.at(-1)?.offset, "9");
});

Deno.test("after a failed commit the state is read again and adopts the tasks still running here", async () => {
  const f = fixture();
  await f.dispatcher.ingest(TP, [message(0)], control); // 0 runs, committed past it
  f.failCommits();
  let error: unknown;
  await f.dispatcher.ingest(TP, [message(1)], control).catch((e) => (error = e));
  assert(error, "the failed commit reaches kafkajs");
  f.unfailCommits();
  // kafkajs fetches the batch again; the new state comes from Kafka's committed offset 1,
  // whose metadata names 0 as started: it runs here, so it is not reported lost.
  await f.dispatcher.ingest(TP, [message(1)], control);
  assertEquals(f.events.filter((e) => e.startsWith("skipped")), []);
  assertEquals(f.events.filter((e) => e.startsWith("start")), ["start 0#1", "start 1#1"]);
  await f.end(0);
  await f.end(1);
  await f.dispatcher.flushCommits();
  assertEquals(last(f.commits), { offset: "2", metadata: "" });
});

Deno.test("a partition revoked before its commit is sent: the tasks it was for never start", async () => {
  const f = fixture();
  const release = Promise.withResolvers<void>();
  f.holdCommits(release.promise);
  // 0's commit is on its way; 1's waits behind it (commits of a partition go one at a time;
  // a commit not sent yet would cover both).
  const first = f.dispatcher.ingest(TP, [message(0)], control);
  await flushMicrotasks();
  const second = f.dispatcher.ingest(TP, [message(1)], control).catch((e) => e);
  await flushMicrotasks();
  assertEquals(f.commitsAtPrepare.size, 2, "their processes were started early");
  f.dispatcher.retain([]); // the rebalance takes the partition away
  release.resolve();
  await first; // 0's commit was taken by Kafka before the rebalance: it runs here, once
  const error = await second;
  assertEquals((error as Error)?.name, "PartitionGoneError");
  assertEquals([...f.commitsAtStart.keys()], ["0"], "1 started without its commit");
  assertEquals(f.discarded, ["1"]);
});

Deno.test("under a full cap, tasks start as slots free while one commit covers those behind it", async () => {
  const f = fixture({}, { capacity: 2 });
  const release = Promise.withResolvers<void>();
  const ingest = f.dispatcher.ingest(TP, [
    message(0),
    message(1),
    message(2),
    message(3),
    message(4),
  ], control);
  await flushMicrotasks();
  f.holdCommits(release.promise); // the next commit is slow
  await f.end(0); // 2 takes the slot; its commit is on its way
  await f.end(1); // 3 takes the slot while 2's commit is still out
  assertEquals(f.commitsAtPrepare.has("3"), true, "3 did not wait for 2's commit to be taken");
  f.holdCommits(Promise.resolve());
  release.resolve();
  await flushMicrotasks();
  assertEquals(f.commitsAtStart.get("2"), f.commitsAtStart.get("3"), "one commit covered both");
  await f.end(2);
  await ingest;
  assertEquals(f.events.filter((e) => e.startsWith("start")).length, 5);
});

Deno.test("after a failed commit, a task that finished here unrecorded is not named lost by the new state", async () => {
  const f = fixture();
  await f.dispatcher.ingest(TP, [message(0)], control); // committed: offset 1, 0 started
  f.failCommits();
  await f.end(0); // 0 is ok, but the commit recording it fails
  await f.dispatcher.ingest(TP, [message(1)], control).catch(() => {}); // forgets the state
  f.unfailCommits();
  await assertZeroNotNamedLost(f); // read again: Kafka still says 0 started
});

Deno.test("a partition revoked and assigned back: a task that ended here meanwhile is not named lost", async () => {
  const f = fixture();
  await f.dispatcher.ingest(TP, [message(0)], control); // committed: offset 1, 0 started
  f.dispatcher.retain([]); // revoked (a rebalance): 0 runs on
  await f.end(0); // ends while the partition is not held: no commit can record it
  f.dispatcher.retain([TP]); // assigned back: read again, Kafka still says 0 started
  await flushMicrotasks();
  await assertZeroNotNamedLost(f);
});

Deno.test("a partition revoked after a failed commit and assigned back: a task that ended before is not named lost", async () => {
  const f = fixture();
  await f.dispatcher.ingest(TP, [message(0)], control); // committed: offset 1, 0 started
  f.failCommits();
  await f.end(0); // 0 is ok, but the commit recording it fails (the coordinator is gone)
  f.unfailCommits();
  f.dispatcher.retain([]); // the member rejoins: revoked with its end unrecorded
  f.dispatcher.retain([TP]); // assigned back: read again, Kafka still says 0 started
  await flushMicrotasks();
  await assertZeroNotNamedLost(f);
});

Deno.test("after two failed commits in a row, a task that finished here unrecorded is still not named lost", async () => {
  const f = fixture();
  await f.dispatcher.ingest(TP, [message(0)], control); // committed: offset 1, 0 started
  f.failCommits();
  await f.end(0); // 0 is ok, but the commit recording it fails
  await f.dispatcher.ingest(TP, [message(1)], control).catch(() => {}); // forgets the state
  await f.dispatcher.ingest(TP, [message(1)], control).catch(() => {}); // read again, fails again
  f.unfailCommits();
  await assertZeroNotNamedLost(f); // read a third time: Kafka says 0 started
});
