/**
 * The dispatcher's commit order with fake hooks (no broker, no processes): what is committed
 * when, relative to the start of each task.
 */
import type { KafkaMessage } from "kafkajs";
import { assertEquals } from "../helpers/assert.ts";
import type { ChildResult } from "../../runner/sandbox/task_sandbox.ts";
import { deliveryPolicy } from "../../runner/dispatch/delivery_policy.ts";
import { Dispatcher, type DispatcherHooks, type Job } from "../../runner/dispatch/dispatcher.ts";
import type { LedgerCommit } from "../../runner/intake/partition_ledger.ts";
import { Pool } from "../../runner/dispatch/concurrency_cap.ts";

const OK: ChildResult = {
  outcome: "ok",
  reason: "exit 0",
  code: 0,
  signal: null,
  droppedBytes: 0,
};

const message = (offset: number) =>
  ({
    offset: String(offset),
    key: null,
    value: new TextEncoder().encode("{}"),
    headers: {},
    timestamp: "0",
    attributes: 0,
    size: 0,
  }) as unknown as KafkaMessage;

const control = { active: () => true, heartbeat: () => Promise.resolve(), resolveOffset() {} };
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A dispatcher whose children end when the test says so, and whose commits are recorded. */
function fixture(delivery: "at-most-once" | "at-least-once") {
  const commits: LedgerCommit[] = [];
  /** How many commits had been made when each task was handed to `execute`, by offset. */
  const commitsAtStart = new Map<string, number>();
  /** The same when each job was prepared, and the jobs discarded. */
  const commitsAtPrepare = new Map<string, number>();
  const discarded: string[] = [];
  let failCommits = false;
  const running = new Map<string, (result: ChildResult) => void>();
  const hooks: DispatcherHooks = {
    decode: () => ({
      handler: "h",
      file: "/h.ts",
      payload: new Uint8Array(),
      fields: {} as never,
    }),
    policyFor: () => deliveryPolicy({ delivery }),
    execute: (job: Job) => {
      commitsAtStart.set(job.message.offset, commits.length);
      return new Promise((resolve) => running.set(job.message.offset, resolve));
    },
    prepare: (job: Job) => commitsAtPrepare.set(job.message.offset, commits.length),
    discard: (job: Job) => discarded.push(job.message.offset),
    commit: (_topic, _partition, commit) => {
      if (failCommits) return Promise.reject(new Error("broker gone"));
      commits.push(commit);
      return Promise.resolve();
    },
    committed: () => Promise.resolve({ offset: "-1", metadata: null }),
    finish: () => Promise.resolve(),
    reject: () => Promise.resolve(),
    retrying: () => {},
    skipped: () => {},
    handedOver: () => {},
    commitFailed: () => {},
  };
  const pool = new Pool(10);
  const dispatcher = new Dispatcher({ pool, hooks });
  const end = async (offset: number) => {
    running.get(String(offset))!(OK);
    await sleep(0); // finish(), the bookkeeping and the commit after it
  };
  return {
    dispatcher,
    pool,
    commits,
    commitsAtStart,
    commitsAtPrepare,
    discarded,
    end,
    failCommits: () => (failCommits = true),
  };
}

Deno.test("at-most-once: the batch that starts is committed before it runs, in one commit", async () => {
  const { dispatcher, commits, commitsAtStart, commitsAtPrepare, end } = fixture("at-most-once");
  await dispatcher.ingest("t", 0, [message(0), message(1), message(2)], control);
  // Their processes may start while the commit is on its way; their tasks come after it.
  assertEquals([...commitsAtPrepare.values()], [0, 0, 0]);
  assertEquals(commits.length, 1, "one commit for the three tasks that start together");
  // The watermark stays at 0 (nothing final yet); the metadata lists the started offsets.
  assertEquals(commits[0].offset, "0");
  assertEquals(commits[0].metadata === "", false, "the started offsets travel in the metadata");
  assertEquals([...commitsAtStart.values()], [1, 1, 1], "no task ran before its commit");
  await end(1);
  await end(0);
  await end(2);
  await dispatcher.flushCommits();
  assertEquals(commits.at(-1)?.offset, "3");
});

Deno.test("at-least-once: nothing is committed for a start; the outcome moves the watermark", async () => {
  const { dispatcher, commits, commitsAtStart, end } = fixture("at-least-once");
  await dispatcher.ingest("t", 0, [message(0), message(1)], control);
  // Only the partition's position before the tasks, with nothing listed above it.
  assertEquals(commits.map((c) => [c.offset, c.metadata]), [["0", ""]]);
  assertEquals(commitsAtStart.size, 2);
  await end(1);
  // Offset 1 is done but 0 is not: the watermark stays, 1 is listed as finished.
  assertEquals(commits.at(-1)?.offset, "0");
  await end(0);
  assertEquals(commits.at(-1)?.offset, "2");
});

Deno.test("a failed commit discards what was prepared, runs nothing and frees the slots", async () => {
  const { dispatcher, pool, commitsAtStart, discarded, failCommits } = fixture("at-most-once");
  failCommits();
  let error: unknown;
  try {
    await dispatcher.ingest("t", 0, [message(0), message(1)], control);
  } catch (e) {
    error = e;
  }
  assertEquals((error as Error)?.message, "broker gone", "kafkajs must see the failure");
  assertEquals(discarded, ["0", "1"]);
  assertEquals(commitsAtStart.size, 0, "a task ran without its commit");
  assertEquals(pool.running, 0);
});
