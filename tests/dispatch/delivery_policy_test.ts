import { assertEquals } from "../helpers/assert.ts";
import { backoffMs, deliveryPolicy } from "../../runner/dispatch/delivery_policy.ts";

Deno.test("the default policy is the PHP daemon's: at-most-once, no retry, no ordering", () => {
  assertEquals(deliveryPolicy(undefined), {
    atMostOnce: true,
    attempts: 1,
    baseMs: 1000,
    maxMs: 60_000,
    byKey: false,
    resultTopic: null,
    maxRunning: null,
    concurrency: null,
    rateLimit: null,
  });
});

Deno.test("flow control: the burst defaults to one second of starts (at least 1)", () => {
  assertEquals(deliveryPolicy({ rateLimit: { perSecond: 2.5 } }).rateLimit, {
    perSecond: 2.5,
    burst: 3,
    key: undefined,
  });
  assertEquals(deliveryPolicy({ rateLimit: { perSecond: 0.2 } }).rateLimit?.burst, 1);
});

Deno.test("backoff doubles per attempt, is capped, and jitters within [step/2, step]", () => {
  const policy = { baseMs: 100, maxMs: 500 };
  assertEquals([1, 2, 3, 4, 5].map((a) => backoffMs(a, policy, () => 0)), [50, 100, 200, 250, 250]);
  assertEquals([1, 2, 3, 4, 5].map((a) => backoffMs(a, policy, () => 1)), [
    100,
    200,
    400,
    500,
    500,
  ]);
});
