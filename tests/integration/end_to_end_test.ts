/**
 * Produce → handler runs → one outcome logged, against the real broker and real children.
 */
import { assert, assertEquals, assertMatch } from "../helpers/assert.ts";
import { enqueue } from "../../ops/enqueue.ts";
import { kafkaClients, kcatProduce, RunnerProcess, unique } from "../helpers/harness.ts";

Deno.test("enqueue() API: the handler gets payload, key and headers; outcome ok", async () => {
  const topic = unique("e2e");
  await using runner = RunnerProcess.onTopic(topic);
  await runner.ready();
  await using kafka = await kafkaClients();
  await enqueue(kafka.producer, "echo", { to: "world", n: 1 }, {
    topic,
    key: "user-7",
    headers: { trace: "abc" },
  });
  const [outcome] = await runner.waitForOutcomes(1);
  assertEquals(outcome.outcome, "ok");
  assertEquals(outcome.handler, "echo");
  assertEquals(outcome.topic, topic);
  assert(typeof outcome.durationMs === "number");
  const task = JSON.parse(runner.output("echo")[0]);
  assertEquals(task.payload, { to: "world", n: 1 });
  assertEquals(task.key, "user-7");
  assertEquals(task.headers, { trace: "abc", php_worker: "echo" });
  assertEquals(task.topic, topic);
  assertEquals(task.offset, "0");
});

Deno.test("everything the runner prints is a JSON log line, Node warnings included", async () => {
  const topic = unique("e2e_lines");
  await using runner = RunnerProcess.onTopic(topic);
  await runner.ready();
  await using kafka = await kafkaClients();
  await enqueue(kafka.producer, "hello", { to: "lines" }, { topic });
  await runner.waitForOutcomes(1);
  runner.kill("SIGTERM");
  await runner.exited;
  const notJson = runner.raw.filter((line) => {
    try {
      return typeof JSON.parse(line)["@timestamp"] !== "string";
    } catch {
      return true;
    }
  });
  assertEquals(notJson, []);
  // kafkajs 2.2.4 emits one on connecting (tulios/kafkajs#1751); Node would print it on stderr.
  const warning = runner.lines.find((l) => l.properties?.name === "TimeoutNegativeWarning");
  assertEquals(warning?.level, "DEBUG");
  assertEquals(warning?.logger, "task-runner.process");
});

Deno.test("kcat producer with a php_worker header (the PHP daemon's message shape) works", async () => {
  const topic = unique("kcat");
  await using runner = RunnerProcess.onTopic(topic);
  await runner.ready();
  // json_encode($task_array, JSON_UNESCAPED_SLASHES) as async_task_produce sent it.
  await kcatProduce(topic, '{"order_id":42,"url":"http://x/y"}', {
    headers: { php_worker: "echo" },
  });
  const [outcome] = await runner.waitForOutcomes(1);
  assertEquals(outcome.outcome, "ok");
  assertEquals(JSON.parse(runner.output("echo")[0]).payload, { order_id: 42, url: "http://x/y" });
});

Deno.test("a runner started before its topic exists receives the first task", async () => {
  const topic = unique("early");
  await using kafka = await kafkaClients();
  assert(!(await kafka.admin.listTopics()).includes(topic));
  await using runner = RunnerProcess.onTopic(topic);
  await runner.ready();
  await kcatProduce(topic, "{}", { headers: { php_worker: "echo" } });
  const [outcome] = await runner.waitForOutcomes(1);
  assertEquals(outcome.outcome, "ok");
});

Deno.test("a handler file dropped in while the runner runs is used by the next task", async () => {
  const topic = unique("drop");
  const dir = await Deno.makeTempDir();
  await using runner = new RunnerProcess({
    TASK_TOPIC: topic,
    GROUP_ID: topic,
    FUNCTIONS_DIR: dir,
  });
  await runner.ready();
  await kcatProduce(topic, "{}", { headers: { php_worker: "fresh" } });
  const [first] = await runner.waitForOutcomes(1);
  assertEquals(first.outcome, "rejected");
  assertMatch(String(first.reason), /unknown handler fresh/);
  await Deno.writeTextFile(`${dir}/fresh.ts`, 'export default () => console.log("fresh v1");');
  await kcatProduce(topic, "{}", { headers: { php_worker: "fresh" } });
  const [, second] = await runner.waitForOutcomes(2);
  assertEquals(second.outcome, "ok");
  await Deno.writeTextFile(`${dir}/fresh.ts`, 'export default () => console.log("fresh v2");');
  await kcatProduce(topic, "{}", { headers: { php_worker: "fresh" } });
  await runner.waitForOutcomes(3);
  assertEquals(runner.output("fresh"), ["fresh v1", "fresh v2"]);
  await Deno.remove(dir, { recursive: true });
});
