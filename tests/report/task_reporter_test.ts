/** TaskReporter with a recording publisher: what is published and counted for each ending. */
import type { KafkaMessage } from "kafkajs";
import { assertEquals } from "../helpers/assert.ts";
import { deliveryPolicy } from "../../runner/dispatch/delivery_policy.ts";
import type { Job } from "../../runner/dispatch/job.ts";
import { TaskRejectedError } from "../../runner/errors.ts";
import type { Publisher } from "../../runner/report/publisher.ts";
import { type Outcome, TaskReporter } from "../../runner/report/task_reporter.ts";

const message = {
  offset: "4",
  key: null,
  value: null,
  headers: { php_worker: "h" },
} as unknown as KafkaMessage;

function job(resultTopic?: string): Job {
  return {
    topic: "t",
    partition: 1,
    message,
    task: { handler: "h", file: "/h.ts", payload: new Uint8Array(), json: {}, fields: {} as never },
    policy: deliveryPolicy({ resultTopic }),
    attempt: 2,
    slot: null,
    fetchedAt: 0,
    readyAt: 0,
  };
}

function reporter(options: { failResults?: boolean } = {}) {
  const published: string[] = [];
  const outcomes: Array<[string | null, Outcome]> = [];
  const publisher = {
    deadLetterTopic: "dlq",
    deadLetter: (_origin: unknown, why: { outcome: string; error: string; attempts: number }) => {
      published.push(`dead letter ${why.outcome} after ${why.attempts}: ${why.error}`);
      return Promise.resolve(true);
    },
    result: (topic: string, _origin: unknown, handler: string, json: string) => {
      if (options.failResults) return Promise.reject(new Error("topic gone"));
      published.push(`result ${topic} ${handler} ${json}`);
      return Promise.resolve();
    },
  } as unknown as Publisher;
  const r = new TaskReporter(publisher, "php_worker", {
    taskEnded: (handler, outcome) => outcomes.push([handler, outcome]),
    spawnFailed: () => {},
  });
  return { r, published, outcomes };
}

const result = (outcome: "ok" | "failed", json?: string) => ({
  outcome,
  reason: outcome === "ok" ? "exit 0" : "exit 3",
  code: outcome === "ok" ? 0 : 3,
  signal: null,
  droppedBytes: 0,
  result: json,
  durationMs: 12,
});

Deno.test("a failed task is dead-lettered with its reason and attempts, and counted", async () => {
  const { r, published, outcomes } = reporter();
  await r.finish(job(), result("failed"));
  assertEquals(published, ["dead letter failed after 2: exit 3"]);
  assertEquals(outcomes, [["h", "failed"]]);
});

Deno.test("an ok task's return value goes to its result topic; nothing is dead-lettered", async () => {
  const { r, published, outcomes } = reporter();
  await r.finish(job("results"), result("ok", '{"n":1}'));
  assertEquals(published, ['result results h {"n":1}']);
  assertEquals(outcomes, [["h", "ok"]]);
});

Deno.test("a result that cannot be published still ends the task once, ok", async () => {
  const { r, published, outcomes } = reporter({ failResults: true });
  await r.finish(job("results"), result("ok", "1"));
  assertEquals([published, outcomes], [[], [["h", "ok"]]]);
});

Deno.test("a rejected message is dead-lettered with no attempt and counted under its handler", async () => {
  const { r, published, outcomes } = reporter();
  await r.reject({ topic: "t", partition: 1, message, error: new TaskRejectedError("bad") });
  assertEquals(published, ["dead letter rejected after 0: bad"]);
  assertEquals(outcomes, [["h", "rejected"]]);
});
