/**
 * Input hardening (issue 17) through the real runner and the real broker: messages whose
 * handler header is repeated, handlers that are symlinks.
 */
import { replay } from "../../ops/admin/replay.ts";
import { assertEquals, assertMatch } from "../helpers/assert.ts";
import {
  brokers,
  createTopic,
  FIXTURES,
  kafkaClients,
  RunnerProcess,
  testKafka,
  unique,
} from "../helpers/harness.ts";

/** Produce `value` with kcat, each header pair given as its own `-H` (so names may repeat). */
async function kcatWithHeaders(topic: string, value: string, headers: Array<[string, string]>) {
  const args = ["-b", brokers(), "-P", "-t", topic, "-p", "0"];
  for (const [name, v] of headers) args.push("-H", `${name}=${v}`);
  const child = new Deno.Command("kcat", { args, stdin: "piped", stderr: "piped" }).spawn();
  const writer = child.stdin.getWriter();
  await writer.write(new TextEncoder().encode(value));
  await writer.close();
  const { code, stderr } = await child.output();
  if (code !== 0) throw new Error(`kcat failed (${code}): ${new TextDecoder().decode(stderr)}`);
}

Deno.test("a handler header repeated with different values is rejected by the runner and matches no replay filter", async () => {
  const topic = unique("dup_headers");
  {
    await using clients = await kafkaClients();
    await createTopic(clients.admin, topic, 1);
  }
  await kcatWithHeaders(topic, "{}", [["php_worker", "returns_value"], ["php_worker", "echo"]]);
  await kcatWithHeaders(topic, "{}", [["php_worker", "echo"], ["php_worker", "echo"]]);
  await kcatWithHeaders(topic, "{}", [["php_worker", "echo"]]);

  await using runner = RunnerProcess.onTopic(topic, { TOPIC_PARTITIONS: "1" });
  await runner.ready();
  const outcomes = (await runner.waitForOutcomes(3)) // in the order they ended: sort by offset
    .sort((a, b) => Number(a.offset) - Number(b.offset));
  assertEquals(outcomes.map((o) => [o.offset, o.outcome]), [
    ["0", "rejected"],
    ["1", "ok"],
    ["2", "ok"],
  ]);
  assertMatch(
    String(outcomes[0].reason),
    /header "php_worker" is repeated with different values \("returns_value", "echo"\)/,
  );
  assertEquals(outcomes[1].handler, "echo");

  const listed = async (handler: string) =>
    (await replay(testKafka(), { fromTopic: topic, toTopic: topic, handler, dryRun: true }))
      .messages.map((m) => [m.offset, m.handler]);
  assertEquals(await listed("returns_value"), [], "replay lists no task the runner rejected");
  assertEquals(await listed("echo"), [[1, "echo"], [2, "echo"]]);
});

Deno.test("a symlinked handler runs when it stays in the functions folder; one into /proc is rejected", async () => {
  const dir = Deno.realPathSync(await Deno.makeTempDir({ prefix: "task-runner-functions-" }));
  try {
    await Deno.copyFile(`${FIXTURES}echo.ts`, `${dir}/echo.ts`);
    await Deno.symlink("echo.ts", `${dir}/alias.ts`);
    await Deno.symlink("/proc/self/environ", `${dir}/leak.ts`);
    const topic = unique("symlinks");
    const canary = `canary-${crypto.randomUUID()}`;
    await using runner = RunnerProcess.onTopic(topic, {
      TOPIC_PARTITIONS: "1",
      FUNCTIONS_DIR: dir,
      AAA_CANARY: canary, // early in the environment: the snippet of a syntax error shows its start
    });
    await runner.ready();
    for (const handler of ["leak", "alias"]) {
      await kcatWithHeaders(topic, '{"n":1}', [["php_worker", handler]]);
    }
    const outcomes = await runner.waitForOutcomes(2);
    const [leak, alias] = ["leak", "alias"].map((h) => outcomes.find((o) => o.handler === h)!);
    assertEquals([leak.handler, leak.outcome, alias.handler, alias.outcome], [
      "leak",
      "rejected",
      "alias",
      "ok",
    ]);
    assertMatch(
      String(leak.reason),
      /^handler leak is a symlink to \/proc\/\d+\/environ, which is under \/proc/,
    );
    assertEquals(JSON.parse(runner.output("alias")[0]).payload, { n: 1 });
    assertEquals(
      runner.raw.filter((line) => line.includes(canary)),
      [],
      "no log line shows the environment",
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
