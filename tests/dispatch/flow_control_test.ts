/**
 * Flow control in the dispatcher with fake collaborators and a fake clock: per-function and
 * per-key limits, rate limits and delays hold tasks back without a slot, never block other
 * functions or keys, and interact with retries, key order, the drain and rebalances.
 */
import { Buffer } from "node:buffer";
import type { KafkaMessage } from "kafkajs";
import { assert, assertEquals } from "../helpers/assert.ts";
import { FakeClock, flushMicrotasks } from "../helpers/fake_clock.ts";
import type { ChildResult } from "../../runner/sandbox/process_source.ts";
import { deliveryPolicy } from "../../runner/dispatch/delivery_policy.ts";
import { Dispatcher, type Job } from "../../runner/dispatch/dispatcher.ts";
import { type LedgerCommit, MAX_ACTIVE } from "../../runner/intake/partition_ledger.ts";
import { ConcurrencyCap } from "../../runner/dispatch/concurrency_cap.ts";
import type { FunctionConfig } from "../../runner/function_config.ts";
import type { WaitReason } from "../../runner/dispatch/flow_control.ts";

const OK: ChildResult = { outcome: "ok", reason: "exit 0", code: 0, signal: null, droppedBytes: 0 };
const FAILED: ChildResult = { ...OK, outcome: "failed", reason: "exit 1", code: 1 };
const NOT_BEFORE = "x-task-runner-not-before";

interface Spec {
  fn?: string;
  payload?: unknown;
  key?: string;
  headers?: Record<string, string>;
}

const message = (offset: number, spec: Spec = {}) =>
  ({
    offset: String(offset),
    key: spec.key === undefined ? null : Buffer.from(spec.key),
    value: new TextEncoder().encode(JSON.stringify(spec.payload ?? {})),
    headers: { fn: spec.fn ?? "a", ...spec.headers },
    timestamp: "0",
    attributes: 0,
    size: 0,
  }) as unknown as KafkaMessage;

const TP = { topic: "t", partition: 0 };
const control = { active: () => true, heartbeat: () => Promise.resolve(), resolveOffset() {} };

/** A dispatcher over functions `grants`, whose tasks end when the test says so. */
function fixture(grants: Record<string, FunctionConfig>, options: { capacity?: number } = {}) {
  const clock = new FakeClock();
  let wall = 1_000_000;
  const commits: LedgerCommit[] = [];
  const events: string[] = [];
  const outcomes = new Map<string, string>();
  const waited: Array<[WaitReason, number]> = [];
  const running = new Map<string, Array<(result: ChildResult) => void>>();
  /** Live tasks by function now, and the most seen at once. */
  const live = new Map<string, number>();
  const peak = new Map<string, number>();
  const startedAt = new Map<string, number>();
  const cap = new ConcurrencyCap(options.capacity ?? 10);
  const dispatcher = new Dispatcher({
    cap,
    clock,
    wallClock: () => wall + clock.now(),
    waitObserver: { taskWaited: (reason, ms) => waited.push([reason, ms]) },
    source: {
      decode: (_tp, m) => {
        const headers = Object.fromEntries(
          Object.entries(m.headers ?? {}).map(([k, v]) => [k, String(v)]),
        );
        return {
          handler: headers.fn,
          file: `/${headers.fn}.ts`,
          payload: m.value!,
          json: JSON.parse(new TextDecoder().decode(m.value!)),
          fields: {
            headers,
            key: m.key ? m.key.toString() : null,
            topic: "t",
            partition: 0,
            offset: m.offset,
            timestamp: "",
          },
        };
      },
      policyFor: (fn) => deliveryPolicy(grants[fn]),
    },
    offsets: {
      committed: () => Promise.resolve({ offset: "-1", metadata: null }),
      commit: (_tp, commit) => (commits.push(commit), Promise.resolve()),
    },
    executor: {
      execute: (job: Job) => {
        const fn = job.task.handler;
        live.set(fn, (live.get(fn) ?? 0) + 1);
        peak.set(fn, Math.max(peak.get(fn) ?? 0, live.get(fn)!));
        startedAt.set(`${job.message.offset}#${job.attempt}`, clock.now());
        events.push(`start ${job.message.offset}#${job.attempt}`);
        return new Promise((resolve) => {
          const list = running.get(job.message.offset) ?? [];
          list.push((result) => {
            live.set(fn, live.get(fn)! - 1);
            resolve(result);
          });
          running.set(job.message.offset, list);
        });
      },
      prepare: () => {},
      discard: () => {},
    },
    reporter: {
      finish: (job, result) => {
        events.push(`end ${job.message.offset}`);
        outcomes.set(job.message.offset, result.reason);
        return Promise.resolve();
      },
      reject: (r) => {
        events.push(`rejected ${r.message.offset}: ${r.error.message}`);
        return Promise.resolve();
      },
      retrying: (job, _r, delay) => events.push(`retry ${job.message.offset} in ${delay}`),
      skipped: () => {},
      handedOver: (jobs, why) =>
        events.push(`handed over ${jobs.map((j) => j.message.offset)}: ${why}`),
      commitFailed: () => events.push("commit failed"),
      metadataFull: () => {},
    },
  });
  const end = async (offset: number, result = OK) => {
    const list = running.get(String(offset));
    assert(list?.length, `task ${offset} is running`);
    list.shift()!(result);
    await flushMicrotasks();
  };
  const started = () => events.filter((e) => e.startsWith("start")).map((e) => e.slice(6));
  return {
    dispatcher,
    cap,
    clock,
    commits,
    events,
    outcomes,
    waited,
    live,
    peak,
    startedAt,
    end,
    started,
    setWall: (ms: number) => (wall = ms),
    wall: () => wall + clock.now(),
  };
}

Deno.test("maxRunning: a function never has more live tasks; others use the rest of the cap", async () => {
  const f = fixture({ a: { maxRunning: 2 } }, { capacity: 6 });
  const batch = [0, 1, 2, 3, 4].map((o) => message(o)).concat(
    [5, 6, 7, 8].map((o) => message(o, { fn: "b" })),
  );
  await f.dispatcher.ingest(TP, batch, control);
  assertEquals(f.started(), ["0#1", "1#1", "5#1", "6#1", "7#1", "8#1"]);
  assertEquals(f.cap.running, 6, "the waiting tasks of a hold no slot");
  assertEquals(f.dispatcher.waitingByReason().function_limit, 3);
  await f.end(5); // a slot frees, but a is at its limit: nothing of a starts
  assertEquals(f.started().length, 6);
  await f.end(0);
  assertEquals(f.started().at(-1), "2#1");
  for (const o of [1, 2, 6, 7, 8]) await f.end(o);
  await f.end(3);
  await f.end(4);
  assertEquals(f.peak.get("a"), 2);
  assertEquals(f.peak.get("b"), 4);
  assertEquals(f.commits.at(-1)?.offset, "9");
  assert(f.waited.some(([reason]) => reason === "function_limit"), JSON.stringify(f.waited));
});

Deno.test("concurrency per key: at most max per value, other values in parallel, a missing value shares one bucket and says so", async () => {
  const f = fixture({ a: { concurrency: { key: "payload.shop.id", max: 1 } } });
  await f.dispatcher.ingest(TP, [
    message(0, { payload: { shop: { id: 7 } } }),
    message(1, { payload: { shop: { id: 7 } } }),
    message(2, { payload: { shop: { id: 8 } } }),
    message(3, { payload: {} }),
    message(4, { payload: { shop: null } }),
  ], control);
  assertEquals(f.started(), ["0#1", "2#1", "3#1"]);
  assertEquals(f.dispatcher.waitingByReason().key_limit, 2);
  await f.end(3);
  assertEquals(f.started().at(-1), "4#1", "the missing bucket frees");
  assert(
    f.outcomes.get("3")?.includes(
      'no value for concurrency key payload.shop.id: shared "missing" bucket',
    ),
  );
  await f.end(0);
  assertEquals(f.started().at(-1), "1#1");
  assertEquals(f.outcomes.get("0"), "exit 0");
});

Deno.test("rateLimit: a burst at once, then one start per 1/perSecond on one timer, never more", async () => {
  const f = fixture({ a: { rateLimit: { perSecond: 10, burst: 2 } } });
  const messages = Array.from({ length: 12 }, (_, o) => message(o, { fn: o < 10 ? "a" : "b" }));
  await f.dispatcher.ingest(TP, messages, control);
  assertEquals(f.started(), ["0#1", "1#1", "10#1", "11#1"], "the burst, and b unhindered");
  for (const o of [0, 1, 10, 11]) await f.end(o);
  assert(f.clock.pending <= 1, `one wake timer, no polling (${f.clock.pending} timers)`);
  await f.clock.tick(99);
  assertEquals(f.started().length, 4);
  await f.clock.tick(1);
  assertEquals(f.started().at(-1), "2#1");
  await f.clock.tick(700);
  assertEquals(f.started().length, 4 + 8);
  // Starts of a over the first second: the burst plus one per 100 ms.
  const times = [...f.startedAt.entries()].filter(([k]) => Number(k.split("#")[0]) < 10)
    .map(([, t]) => t);
  assertEquals(times, [0, 0, 100, 200, 300, 400, 500, 600, 700, 800]);
});

Deno.test("rateLimit per key: one bucket per value", async () => {
  const f = fixture({ a: { rateLimit: { perSecond: 1, burst: 1, key: "header:tenant" } } });
  await f.dispatcher.ingest(TP, [
    message(0, { headers: { tenant: "x" } }),
    message(1, { headers: { tenant: "x" } }),
    message(2, { headers: { tenant: "y" } }),
  ], control);
  assertEquals(f.started(), ["0#1", "2#1"]);
  await f.clock.tick(1000);
  assertEquals(f.started().at(-1), "1#1");
});

Deno.test("a delayed task starts at its time, not before, holds no slot, and other tasks go on", async () => {
  const f = fixture({ a: {} }, { capacity: 1 });
  const at = f.wall() + 5000;
  await f.dispatcher.ingest(TP, [
    message(0, { headers: { [NOT_BEFORE]: String(at) } }),
    message(1, { fn: "b" }),
  ], control);
  assertEquals(f.started(), ["1#1"], "the undelayed task took the only slot");
  assertEquals(f.dispatcher.waitingByReason().delay, 1);
  // At-most-once: the committed offset stays at the delayed task until it starts.
  assertEquals(f.commits.at(-1)?.offset, "0");
  await f.end(1);
  await f.clock.tick(4999);
  assertEquals(f.started(), ["1#1"]);
  await f.clock.tick(1);
  assertEquals(f.started(), ["1#1", "0#1"]);
  assertEquals(f.startedAt.get("0#1"), 5000);
  assertEquals(f.commits.at(-1)?.offset, "2");
  assert(f.waited.some(([r, ms]) => r === "delay" && ms === 5000), JSON.stringify(f.waited));
});

Deno.test("not-before: ISO 8601 accepted, the past runs at once, garbage and delays past MAX_DELAY_MS are rejected", async () => {
  const f = fixture({ a: {} });
  const iso = new Date(f.wall() + 2000).toISOString();
  await f.dispatcher.ingest(TP, [
    message(0, { headers: { [NOT_BEFORE]: iso } }),
    message(1, { headers: { [NOT_BEFORE]: "0" } }),
    message(2, { headers: { [NOT_BEFORE]: "tomorrow" } }),
    message(3, { headers: { [NOT_BEFORE]: String(f.wall() + 16 * 60_000) } }),
  ], control);
  assertEquals(f.started(), ["1#1"]);
  const rejected = f.events.filter((e) => e.startsWith("rejected"));
  assertEquals(rejected.length, 2);
  assert(rejected[0].includes('header "x-task-runner-not-before" must be epoch milliseconds'));
  assert(rejected[1].includes("more than MAX_DELAY_MS (900000 ms)"), rejected[1]);
  await f.clock.tick(2000);
  assertEquals(f.started().at(-1), "0#1");
});

Deno.test("a retry waits for its function's limit too", async () => {
  const f = fixture({ a: { maxRunning: 1, retries: { attempts: 2, baseMs: 100, maxMs: 100 } } });
  await f.dispatcher.ingest(TP, [message(0), message(1)], control);
  assertEquals(f.started(), ["0#1"]);
  await f.end(0, FAILED); // 1 starts; the retry of 0 waits for its backoff, then for 1
  assertEquals(f.started(), ["0#1", "1#1"]);
  await f.clock.tick(100);
  assertEquals(f.started(), ["0#1", "1#1"], "the retry is due but a is at its limit");
  assertEquals(f.dispatcher.waitingByReason().function_limit, 1);
  await f.end(1);
  assertEquals(f.started(), ["0#1", "1#1", "0#2"]);
  assertEquals(f.peak.get("a"), 1);
});

Deno.test("ordering by key with a delay: the tasks behind it keep their order and wait", async () => {
  const f = fixture({ a: { ordering: "key" } });
  const at = f.wall() + 1000;
  await f.dispatcher.ingest(TP, [
    message(0, { key: "k", headers: { [NOT_BEFORE]: String(at) } }),
    message(1, { key: "k" }),
    message(2, { key: "j" }),
  ], control);
  assertEquals(f.started(), ["2#1"]);
  assertEquals(f.dispatcher.waitingByReason().key_order, 1);
  await f.clock.tick(1000);
  assertEquals(f.started(), ["2#1", "0#1"]);
  await f.end(0);
  assertEquals(f.started().at(-1), "1#1");
});

Deno.test("the drain and a rebalance drop waiting tasks (limited and delayed) uncommitted", async () => {
  const f = fixture({ a: { maxRunning: 1, delivery: "at-least-once" } });
  await f.dispatcher.ingest(TP, [
    message(0),
    message(1),
    message(2, { fn: "b", headers: { [NOT_BEFORE]: String(f.wall() + 1000) } }),
  ], control);
  f.dispatcher.retain([]);
  assertEquals(f.events.at(-1), "handed over 1,2: partition revoked by a rebalance");
  await f.clock.tick(2000);
  assertEquals(f.started(), ["0#1"], "nothing dropped starts later");
  const g = fixture({ a: { maxRunning: 1, delivery: "at-least-once" } });
  await g.dispatcher.ingest(TP, [message(0), message(1)], control);
  g.dispatcher.stop();
  assertEquals(g.events.at(-1), "handed over 1: not started before shutdown");
  await g.end(0);
  await g.dispatcher.flushCommits();
  assertEquals(g.commits.at(-1)?.offset, "1", "the dropped task is not committed");
  assertEquals(g.dispatcher.waitingByReason().function_limit, 0);
});

Deno.test("waiting is bounded by maxWaiting (1000): the batch waits, heartbeating, until a task starts", async () => {
  const f = fixture({ a: { maxRunning: 1 } });
  let done = false;
  const messages = Array.from({ length: 1002 }, (_, o) => message(o));
  const ingest = f.dispatcher.ingest(TP, messages, control).then(() => (done = true));
  await flushMicrotasks();
  assertEquals(done, false, "1 runs, 1000 wait, the next waits for room");
  assert(f.dispatcher.blocked);
  await f.end(0);
  await ingest;
  assertEquals(f.dispatcher.waitingByReason().function_limit, 1000);
});

Deno.test("rateLimit: a held-back task starts on the timer alone, when no task ends meanwhile", async () => {
  const f = fixture({ a: { rateLimit: { perSecond: 10, burst: 1 } } });
  await f.dispatcher.ingest(TP, [message(0), message(1), message(2)], control);
  assertEquals(f.started(), ["0#1"]);
  assertEquals(f.dispatcher.waitingByReason().rate_limit, 2);
  await f.clock.tick(100);
  assertEquals(f.started(), ["0#1", "1#1"]);
  await f.clock.tick(100);
  assertEquals(f.started(), ["0#1", "1#1", "2#1"]);
});

Deno.test("maxRunning: with the cap full the batch waits for the cap (nothing is parked for it)", async () => {
  const f = fixture({ a: { maxRunning: 2 } }, { capacity: 2 });
  let done = false;
  const ingest = f.dispatcher.ingest(TP, [message(0), message(1), message(2)], control)
    .then(() => (done = true));
  await flushMicrotasks();
  assertEquals(f.started(), ["0#1", "1#1"]);
  assertEquals(done, false);
  assertEquals(f.dispatcher.waitingByReason().cap, 1);
  assertEquals(f.dispatcher.waitingByReason().function_limit, 0);
  await f.end(0);
  await ingest;
  assertEquals(f.started(), ["0#1", "1#1", "2#1"]);
});

Deno.test("behind one delayed task, at most MAX_ACTIVE later tasks of its partition run; the rest wait for its time (the bound MAX_DELAY_MS)", async () => {
  const f = fixture({ a: {}, b: {} }, { capacity: 500 });
  const at = String(f.wall() + 5000);
  const later = Array.from({ length: MAX_ACTIVE + 10 }, (_, i) => message(i + 1, { fn: "b" }));
  let done = false;
  const ingest = f.dispatcher.ingest(
    TP,
    [message(0, { headers: { [NOT_BEFORE]: at } }), ...later],
    control,
  ).then(() => (done = true));
  await flushMicrotasks();
  for (let o = 1; o <= MAX_ACTIVE; o++) await f.end(o);
  assertEquals(f.started().length, MAX_ACTIVE, "the commit metadata has room for no more");
  assertEquals(done, false);
  assertEquals(f.commits.at(-1)?.offset, "0", "held at the delayed task");
  await f.clock.tick(5000);
  await ingest;
  assertEquals(f.started()[MAX_ACTIVE], "0#1");
  assertEquals(f.started().length, MAX_ACTIVE + 11);
});
