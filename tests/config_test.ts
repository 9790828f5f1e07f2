import { assertEquals } from "./helpers/assert.ts";
import assertStrict from "node:assert/strict";
import { OPTIONS, resolveConfig } from "../runner/config.ts";
import { ConfigError } from "../runner/errors.ts";

Deno.test("defaults apply when nothing is set", () => {
  const c = resolveConfig({}, {});
  assertEquals(c.brokers, null);
  assertEquals(c.topic, "async_task");
  assertEquals(c.groupId, "task-runner");
  assertEquals(c.handlerHeader, "php_worker");
  assertEquals(c.maxRunning, 100);
  assertEquals(c.taskTimeoutMs, 30_000);
  assertEquals(c.prewarm, 0);
});

Deno.test("flags win over the environment, which wins over defaults", () => {
  const c = resolveConfig({ "max-running": "7" }, {
    MAX_RUNNING: "9",
    TASK_TOPIC: "jobs",
    KAFKA_BROKERS: "a:1, b:2",
  });
  assertEquals(c.maxRunning, 7);
  assertEquals(c.topic, "jobs");
  assertEquals(c.brokers, ["a:1", "b:2"]);
});

Deno.test("invalid values are refused with the option, the rule and the value", () => {
  const cases: Array<[Record<string, string>, Record<string, string>, RegExp]> = [
    [{}, { MAX_RUNNING: "0" }, /MAX_RUNNING must be an integer from 1 to 10000, got "0"/],
    [{ "max-running": "ten" }, {}, /--max-running must be an integer/],
    [
      {},
      { KAFKA_BROKERS: "localhost" },
      /KAFKA_BROKERS must be a comma-separated list of host:port/,
    ],
    [{}, { TASK_TOPIC: "bad topic" }, /TASK_TOPIC must be a Kafka topic name/],
    [{}, { LOG_LEVEL: "loud" }, /LOG_LEVEL must be one of debug, info, warning, error/],
    [{}, { TASK_TIMEOUT_MS: "-5" }, /TASK_TIMEOUT_MS must be an integer/],
    [{ prewarm: "two" }, {}, /--prewarm must be an integer from 0 to 10000, got "two"/],
  ];
  for (const [flags, env, message] of cases) {
    assertStrict.throws(
      () => resolveConfig(flags, env),
      (e: Error) => e instanceof ConfigError && message.test(e.message),
    );
  }
});

Deno.test("timeouts are bounded by the longest timer, 2147483647 ms, and say so", () => {
  for (const name of ["TASK_TIMEOUT_MS", "KILL_GRACE_MS", "DRAIN_TIMEOUT_MS"]) {
    assertEquals(
      Object.values(resolveConfig({}, { [name]: "2147483647" })).includes(2 ** 31 - 1),
      true,
    );
    for (const raw of ["2147483648", String(Number.MAX_SAFE_INTEGER)]) {
      assertStrict.throws(
        () => resolveConfig({}, { [name]: raw }),
        (e: Error) =>
          e instanceof ConfigError &&
          e.message.includes(`${name} must be an integer from`) &&
          e.message.includes("to 2147483647 (the longest timer, about 24.8 days") &&
          e.message.endsWith(`got "${raw}"`),
        `${name}=${raw}`,
      );
    }
  }
  assertStrict.throws(
    () => resolveConfig({ "task-timeout-ms": "9999999999" }, {}),
    /--task-timeout-ms must be an integer from 1 to 2147483647/,
  );
});

Deno.test("the README's configuration table lists every option with its default", async () => {
  const readme = await Deno.readTextFile(new URL("../README.md", import.meta.url));
  const table = readme.slice(readme.indexOf("## Configuration"), readme.indexOf("### Granting"));
  for (const option of OPTIONS) {
    const row = table.split("\n").find((line) => line.includes(`| \`${option.env}\``));
    if (!row) throw new Error(`README's configuration table has no row for ${option.env}`);
    const shown = option.default === "" ? "(empty)" : `\`${option.default}\``;
    if (!row.includes(shown)) throw new Error(`README shows another default for ${option.env}`);
  }
});
