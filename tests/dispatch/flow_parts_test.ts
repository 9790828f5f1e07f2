/** The parts of flow control: functions.json validation, key values, token buckets, not-before. */
import { assert, assertEquals, assertThrows } from "../helpers/assert.ts";
import { FakeClock } from "../helpers/fake_clock.ts";
import { parseFunctionConfig } from "../../runner/function_config.ts";
import { FunctionsConfigError, TaskRejectedError } from "../../runner/errors.ts";
import { flowKeyValue, MISSING_KEY } from "../../runner/dispatch/key_concurrency.ts";
import { RateLimiter, TokenBucket } from "../../runner/dispatch/rate_limiter.ts";
import { delayMs, parseNotBefore } from "../../runner/dispatch/delays.ts";
import type { DecodedTask } from "../../runner/intake/task_decoder.ts";

const parse = (fn: unknown) => parseFunctionConfig({ functions: { f: fn } }, "functions.json");
const refused = (fn: unknown, includes: string) => {
  const error = assertThrows(() => parse(fn), FunctionsConfigError);
  assert(error.message.includes(includes), error.message);
};

Deno.test("functions.json: the issue's example is accepted as written", () => {
  const table = parseFunctionConfig({
    functions: {
      send_sms: { maxRunning: 5, rateLimit: { perSecond: 20, burst: 40 } },
      sync_shop: { concurrency: { key: "payload.shopId", max: 1 } },
      report: { rateLimit: { perSecond: 2, key: "key" } },
    },
  }, "functions.json");
  assertEquals(table.get("send_sms")?.rateLimit, { perSecond: 20, burst: 40 });
  assertEquals(table.get("sync_shop")?.concurrency, { key: "payload.shopId", max: 1 });
  assertEquals(table.get("report")?.rateLimit, { perSecond: 2, key: "key" });
});

Deno.test("functions.json: bad flow-control fields name the field and what it must be", () => {
  refused({ maxRunning: 0 }, "functions.f.maxRunning must be an integer from 1 to 10000");
  refused({ concurrency: { key: "payload", max: 1 } }, "functions.f.concurrency.key must be");
  refused({ concurrency: { key: "key" } }, "functions.f.concurrency.max must be an integer");
  refused({ concurrency: { key: "key", max: 1, order: true } }, "functions.f.concurrency.order");
  refused(
    { rateLimit: { perSecond: 0 } },
    "functions.f.rateLimit.perSecond must be a number above 0",
  );
  refused({ rateLimit: { perSecond: 1, burst: 0.5 } }, "functions.f.rateLimit.burst");
  refused({ rateLimit: { perSecond: 1, key: "header:" } }, "functions.f.rateLimit.key");
});

Deno.test("functions.json: contradictions with ordering, maxRunning and warm are refused", () => {
  refused({ ordering: "key", concurrency: { key: "key", max: 2 } }, 'with ordering "key"');
  refused({ ordering: "key", concurrency: { key: "key", max: 1 } }, 'with ordering "key"');
  // Ordering by message key and a limit per tenant header do not contradict.
  parse({ ordering: "key", concurrency: { key: "header:tenant", max: 2 } });
  refused({ maxRunning: 2, concurrency: { key: "key", max: 3 } }, "at most maxRunning (2)");
  refused(
    { maxRunning: 2, isolation: "function", warm: { concurrency: 4 } },
    "functions.f.warm.concurrency must be at most maxRunning (2)",
  );
});

const task = (json: unknown, key: string | null = null, headers: Record<string, string> = {}) =>
  ({ json, fields: { key, headers } }) as unknown as DecodedTask;

Deno.test("flow keys: message key, header, dotted payload path; missing values share one bucket", () => {
  assertEquals(flowKeyValue("key", task({}, "k1")), { value: "k1", missing: false });
  assertEquals(flowKeyValue("header:tenant", task({}, null, { tenant: "t" })).value, "t");
  assertEquals(flowKeyValue("payload.a.b", task({ a: { b: 42 } })).value, "42");
  assertEquals(flowKeyValue("payload.a", task({ a: [1] })).value, "[1]");
  for (const t of [task({}), task({ a: null }), task("x"), task({ a: "" })]) {
    assertEquals(flowKeyValue("payload.a", t), { value: MISSING_KEY, missing: true });
  }
  assertEquals(flowKeyValue("payload.toString", task({})).missing, true, "own fields only");
});

Deno.test("token bucket: full at first, refills at perSecond, never beyond burst", () => {
  const bucket = new TokenBucket(4, 2, 0);
  assertEquals(bucket.waitMs(0), 0);
  bucket.take(0);
  bucket.take(0);
  assertEquals(bucket.waitMs(0), 250);
  assertEquals(bucket.waitMs(250), 0);
  assert(bucket.full(10_000));
  assertThrows(() => new TokenBucket(0, 1, 0), RangeError);
});

Deno.test("rate limiter: full buckets are forgotten once there are many (memory bounded)", async () => {
  const clock = new FakeClock();
  const limiter = new RateLimiter(clock, 3);
  const spec = { perSecond: 1, burst: 1 };
  for (const name of ["a", "b", "c"]) limiter.take(name, spec);
  assertEquals(limiter.size, 3);
  await clock.tick(1000);
  limiter.take("d", spec);
  assertEquals(limiter.size, 1, "a, b and c were full again: dropped");
});

Deno.test("not-before: epoch ms or ISO 8601 with a zone; the bound is MAX_DELAY_MS", () => {
  assertEquals(parseNotBefore("1700000000000", "h"), 1_700_000_000_000);
  assertEquals(parseNotBefore("2026-01-02T03:04:05.5Z", "h"), Date.parse("2026-01-02T03:04:05.5Z"));
  assertEquals(
    parseNotBefore("2026-01-02T03:04:05+02:00", "h"),
    Date.parse("2026-01-02T01:04:05Z"),
  );
  for (const bad of ["2026-01-02", "2026-01-02T03:04:05", "soon", "-5", ""]) {
    assertThrows(() => parseNotBefore(bad, "h"), TaskRejectedError, 'header "h" must be');
  }
  assertEquals(delayMs(1500, 1000, 1000, "h"), 500);
  assertEquals(delayMs(500, 1000, 1000, "h"), 0);
  assertThrows(() => delayMs(2001, 1000, 1000, "h"), TaskRejectedError, "MAX_DELAY_MS (1000 ms)");
});

Deno.test("enqueue --delay / --at: forms accepted, others refused with the form to use; too far ahead is refused", async () => {
  const { DelayError, enqueue, parseAt, parseDelay } = await import("../../ops/enqueue.ts");
  assertEquals([parseDelay("10m"), parseDelay("90s"), parseDelay("1.5h"), parseDelay("250")], [
    600_000,
    90_000,
    5_400_000,
    250,
  ]);
  assertThrows(
    () => parseDelay("ten minutes"),
    DelayError,
    "--delay must be a number with ms, s, m or h",
  );
  assertEquals(parseAt("2026-01-02T03:04:05Z"), Date.parse("2026-01-02T03:04:05Z"));
  assertEquals(parseAt("1700000000000"), 1_700_000_000_000);
  assertThrows(() => parseAt("2026-01-02 03:04"), DelayError, "--at must be an ISO 8601 time");
  const sent: unknown[] = [];
  const producer = { send: (r: unknown) => (sent.push(r), Promise.resolve([{}])) } as never;
  let error: unknown;
  try {
    await enqueue(producer, "h", {}, { notBefore: Date.now() + 16 * 60_000 });
  } catch (e) {
    error = e;
  }
  assert(
    error instanceof DelayError && error.message.includes("more than MAX_DELAY_MS (900000 ms)"),
  );
  assertEquals(sent.length, 0, "nothing was produced");
  await enqueue(producer, "h", {}, { notBefore: 1_700_000_000_000 });
  const headers = (sent[0] as { messages: Array<{ headers: Record<string, string> }> }).messages[0]
    .headers;
  assertEquals(headers["x-task-runner-not-before"], "1700000000000");
});

Deno.test("metrics: waiting tasks by reason and the time-waited histogram", async () => {
  const { RunnerMetrics } = await import("../../runner/report/metrics.ts");
  const metrics = new RunnerMetrics({ topic: "t", groupId: "g" });
  const waiting = {
    cap: 1,
    function_limit: 2,
    key_limit: 0,
    rate_limit: 3,
    delay: 4,
    key_order: 0,
    retry: 0,
  };
  metrics.watch({
    running: 0,
    maxRunning: 1,
    saturated: false,
    warmProcesses: 0,
    prewarmedIdle: 0,
    waitingByReason: () => waiting,
  });
  metrics.taskWaited("delay", 1500);
  const { body } = await metrics.render();
  assert(body.includes('task_runner_waiting_tasks{reason="delay"} 4'), body);
  assert(body.includes('task_runner_waiting_tasks{reason="function_limit"} 2'), body);
  assert(body.includes('task_runner_task_wait_seconds_bucket{le="5",reason="delay"} 1'), body);
  assert(body.includes('task_runner_task_wait_seconds_bucket{le="1",reason="delay"} 0'), body);
});
