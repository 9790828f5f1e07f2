/**
 * Handlers on the real broker (issue 14): an unchanged PHP worker run through functions.json
 * `command` (Debian's php-cli), a payload refused by its schema (rejected, dead-lettered, no
 * process), and a command whose program is missing (a failed outcome naming it; the runner
 * goes on).
 */
import { fileURLToPath } from "node:url";
import { assert, assertEquals, assertMatch } from "../helpers/assert.ts";
import {
  functionsConfig,
  kcatProduce,
  readTopic,
  RunnerProcess,
  unique,
} from "../helpers/harness.ts";

const PHP = fileURLToPath(new URL("../fixtures/php/", import.meta.url));
/** The daemon's own invocation, as an operator writes it in functions.json. */
const START = ["php", `${PHP}start.php`, "{name}.php", "offset={offset}"];

Deno.test("an unchanged PHP worker runs as a command function, one outcome per task", async () => {
  const topic = unique("php");
  // No word_count.ts in the fixtures folder: a command function needs no handler file.
  await using config = await functionsConfig({ word_count: { command: START, timeoutMs: 10000 } });
  await using runner = RunnerProcess.onTopic(topic, {
    FUNCTIONS_CONFIG: config.path,
    TOPIC_PARTITIONS: "1",
  });
  await runner.ready();
  await kcatProduce(topic, '{"text": "to be or not to be"}', {
    headers: { php_worker: "word_count" },
    key: "doc-1",
  });
  await kcatProduce(topic, '{"text": 42}', { headers: { php_worker: "word_count" } });
  const outcomes = (await runner.waitForOutcomes(2)).sort((a, b) =>
    Number(a.offset) - Number(b.offset)
  );
  assertEquals(outcomes.map((o) => [o.handler, o.offset, o.outcome]), [
    ["word_count", "0", "ok"],
    ["word_count", "1", "failed"],
  ]);
  assertEquals(outcomes[1].reason, "exit 1");
  assertEquals(runner.output("word_count").map((l) => JSON.parse(l)), [
    { words: 6, distinct: 4, offset: "0" },
  ]);
  const stderr = runner.lines.filter((l) =>
    l.properties?.stream === "stderr" && l.properties?.handler === "word_count"
  );
  assertEquals(stderr.map((l) => [l.level, l.properties.line, l.properties.offset]), [
    ["WARN", "word_count: payload.text must be a string", "1"],
  ]);
});

Deno.test("a payload its schema refuses is rejected and dead-lettered before any process", async () => {
  const topic = unique("schema");
  const dlq = `${topic}.dlq`;
  await using config = await functionsConfig({
    echo: {
      schema: { type: "object", required: ["to"], properties: { to: { type: "string" } } },
    },
  });
  await using runner = RunnerProcess.onTopic(topic, {
    FUNCTIONS_CONFIG: config.path,
    DLQ_TOPIC: dlq,
    TOPIC_PARTITIONS: "1",
  });
  await runner.ready();
  await kcatProduce(topic, '{"to": 7}', { headers: { php_worker: "echo" }, key: "bad" });
  await kcatProduce(topic, '{"to": "ann"}', { headers: { php_worker: "echo" } });
  const outcomes = (await runner.waitForOutcomes(2)).sort((a, b) =>
    Number(a.offset) - Number(b.offset)
  );
  assertEquals(outcomes.map((o) => o.outcome), ["rejected", "ok"]);
  assertEquals(
    outcomes[0].reason,
    "payload does not match the schema of echo: payload/to: must be string",
  );
  const started = runner.lines.filter((l) => l.message.startsWith("Started"));
  assertEquals(started.map((l) => l.properties.offset), ["1"], "only the valid task spawned");
  const [letter] = await readTopic(dlq, 1);
  assertEquals(String(letter.key), "bad");
  assertEquals(String(letter.value), '{"to": 7}');
  assertEquals(String(letter.headers!["x-task-runner-outcome"]), "rejected");
  assertMatch(String(letter.headers!["x-task-runner-error"]), /payload\/to: must be string/);
});

Deno.test("a command whose program is missing fails naming it, and the runner goes on", async () => {
  const topic = unique("nophp");
  await using config = await functionsConfig({
    legacy: { command: ["php-not-installed", "{name}.php"] },
  });
  await using runner = RunnerProcess.onTopic(topic, {
    FUNCTIONS_CONFIG: config.path,
    TOPIC_PARTITIONS: "1",
  });
  await runner.ready();
  await kcatProduce(topic, "{}", { headers: { php_worker: "legacy" } });
  await kcatProduce(topic, '{"x": 1}', { headers: { php_worker: "echo" } });
  const outcomes = (await runner.waitForOutcomes(2)).sort((a, b) =>
    Number(a.offset) - Number(b.offset)
  );
  assertEquals(outcomes.map((o) => [o.handler, o.outcome]), [["legacy", "failed"], ["echo", "ok"]]);
  assertMatch(
    String(outcomes[0].reason),
    /^spawn failed: command program "php-not-installed" of handler legacy was not found/,
  );
  assert(runner.process.pid > 0);
});

Deno.test("a schema that does not compile stops the runner at start-up, naming function and file", async () => {
  const dir = await Deno.makeTempDir();
  await Deno.writeTextFile(`${dir}/echo.json`, '{"type": "object", "required": "to"}');
  await Deno.writeTextFile(
    `${dir}/functions.json`,
    JSON.stringify({ functions: { echo: { schema: "echo.json" } } }),
  );
  await using runner = RunnerProcess.onTopic(unique("badschema"), {
    FUNCTIONS_CONFIG: `${dir}/functions.json`,
  });
  const stuck = setTimeout(() => runner.kill("SIGKILL"), 20_000); // a runner that runs fails
  const status = await runner.exited;
  clearTimeout(stuck);
  assertEquals(status.code, 1, runner.raw.slice(-5).join("\n"));
  assertMatch(
    runner.raw.join("\n"),
    new RegExp(
      `FunctionsConfigError: functions\\.echo\\.schema \\(${dir}/echo\\.json\\): does not compile`,
    ),
  );
  await Deno.remove(dir, { recursive: true });
});
