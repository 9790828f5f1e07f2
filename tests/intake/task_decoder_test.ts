/**
 * The task decoder without a broker: messages as kafkajs hands them over (repeated headers
 * come as arrays), decoded against the fixture functions folder.
 */
import { Buffer } from "node:buffer";
import type { KafkaMessage } from "kafkajs";
import assertStrict from "node:assert/strict";
import { decodeTask, HandlerFiles, TaskDecoder } from "../../runner/intake/task_decoder.ts";
import { TaskRejectedError } from "../../runner/errors.ts";
import { assertEquals, assertMatch } from "../helpers/assert.ts";

import { FIXTURES } from "../helpers/fixtures.ts";
const OPTIONS = { handlerHeader: "php_worker", functionsDir: FIXTURES, maxPayloadBytes: 1024 };

function message(headers: KafkaMessage["headers"]): KafkaMessage {
  return {
    key: null,
    value: Buffer.from("{}"),
    headers,
    offset: "7",
    timestamp: "1700000000000",
    attributes: 0,
  } as KafkaMessage;
}

function rejection(headers: KafkaMessage["headers"]): string {
  try {
    decodeTask("t", 0, message(headers), OPTIONS);
  } catch (error) {
    assertStrict.ok(error instanceof TaskRejectedError, String(error));
    return error.message;
  }
  throw new Error("the message was not rejected");
}

Deno.test("a handler header repeated with different values is rejected, naming them", () => {
  assertEquals(
    rejection({ php_worker: [Buffer.from("hello"), Buffer.from("echo")] }),
    'header "php_worker" is repeated with different values ("hello", "echo"): ' +
      "send it once, naming one handler",
  );
});

Deno.test("a handler header repeated with the same value is that handler", () => {
  const task = decodeTask("t", 0, message({ php_worker: [Buffer.from("echo"), "echo"] }), OPTIONS);
  assertEquals([task.handler, task.fields.headers.php_worker], ["echo", "echo"]);
});

/** A functions folder with echo.ts and the given symlinks (name -> target), removed after. */
function withLinks(links: Record<string, string>, body: (dir: string) => void): void {
  const dir = Deno.realPathSync(Deno.makeTempDirSync({ prefix: "task-runner-functions-" }));
  const outside = Deno.makeTempFileSync({ suffix: ".ts" });
  try {
    Deno.copyFileSync(`${FIXTURES}echo.ts`, `${dir}/echo.ts`);
    Deno.writeTextFileSync(outside, "export default () => 1;\n");
    for (const [name, target] of Object.entries(links)) {
      Deno.symlinkSync(target === "OUTSIDE" ? outside : target, `${dir}/${name}.ts`);
    }
    body(dir);
  } finally {
    Deno.removeSync(dir, { recursive: true });
    Deno.removeSync(outside);
  }
}

function decodeIn(dir: string, handler: string) {
  return decodeTask("t", 0, message({ php_worker: handler }), { ...OPTIONS, functionsDir: dir });
}

function rejectedIn(dir: string, handler: string): string {
  try {
    decodeIn(dir, handler);
  } catch (error) {
    assertStrict.ok(error instanceof TaskRejectedError, String(error));
    return error.message;
  }
  throw new Error(`${handler} was not rejected`);
}

Deno.test("a handler symlinked outside the functions folder, or into /proc, is rejected", () => {
  withLinks({ leak: "/proc/self/environ", out: "OUTSIDE", dev: "/dev/zero" }, (dir) => {
    assertMatch(
      rejectedIn(dir, "leak"),
      /^handler leak is a symlink to \/proc\/\d+\/environ, which is under \/proc: only links that stay inside .* are run$/,
    );
    assertMatch(
      rejectedIn(dir, "out"),
      /^handler out is a symlink to \/\S+\.ts, outside .*: only links that stay inside .* are run$/,
    );
    assertMatch(
      rejectedIn(dir, "dev"),
      /^handler dev is a symlink to \/dev\/zero, which is under \/dev/,
    );
  });
});

Deno.test("a handler symlinked inside the functions folder runs from its real path", () => {
  withLinks({ alias: "echo.ts", dangling: "missing.ts" }, (dir) => {
    const task = decodeIn(dir, "alias");
    assertEquals([task.handler, task.file], ["alias", `${dir}/echo.ts`]);
    assertEquals(decodeIn(dir, "echo").file, `${dir}/echo.ts`);
    assertMatch(rejectedIn(dir, "dangling"), /^unknown handler dangling: no file /);
  });
});

const TP = { topic: "async_task", partition: 3 };

function kafkaMessage(headers: Record<string, string>, value = "{}", key: string | null = null) {
  return {
    offset: "7",
    key: key === null ? null : Buffer.from(key),
    value: Buffer.from(value),
    headers: Object.fromEntries(Object.entries(headers).map(([k, v]) => [k, Buffer.from(v)])),
    timestamp: "1764000000000",
    attributes: 0,
    size: 0,
  } as unknown as KafkaMessage;
}

function decoder(functions = new Map()) {
  return new TaskDecoder({
    handlerHeader: "php_worker",
    functionsDir: FIXTURES,
    maxPayloadBytes: 64,
    functions,
  });
}

/** The reason `decode` rejects the message with (fails the test if it does not). */
function reasonOf(m: KafkaMessage): string {
  try {
    decoder().decode(TP, m);
  } catch (error) {
    if (error instanceof TaskRejectedError) return error.message;
    throw error;
  }
  throw new Error("decoded, but a rejection was expected");
}

Deno.test("decode: the handler, its file, the payload as received and the task's fields", () => {
  const task = decoder().decode(
    TP,
    kafkaMessage({ php_worker: "echo", trace: "x" }, '{"a":1}', "k"),
  );
  assertEquals(task.handler, "echo");
  assertEquals(task.file, `${FIXTURES}echo.ts`);
  assertEquals(new TextDecoder().decode(task.payload), '{"a":1}');
  assertEquals(task.fields, {
    headers: { php_worker: "echo", trace: "x" },
    key: "k",
    topic: "async_task",
    partition: 3,
    offset: "7",
    timestamp: "2025-11-24T16:00:00.000Z",
  });
});

Deno.test("decode: each rejection names what is wrong", () => {
  assertEquals(reasonOf(kafkaMessage({})), 'missing header "php_worker" naming the handler');
  assertEquals(
    reasonOf(kafkaMessage({ php_worker: "a-b" })),
    'invalid handler name "a-b": it must match /^\\w{1,100}$/',
  );
  assertEquals(
    reasonOf(kafkaMessage({ php_worker: "nope" })),
    `unknown handler nope: no file ${FIXTURES}nope.ts`,
  );
  assertEquals(
    reasonOf(kafkaMessage({ php_worker: "echo" }, "x".repeat(65))),
    "payload of 65 bytes is over the limit of 64 (MAX_PAYLOAD_BYTES)",
  );
  assertEquals(
    reasonOf(kafkaMessage({ php_worker: "echo" }, "")),
    "payload is not valid JSON: empty payload",
  );
});

Deno.test("policyFor: the function's delivery settings, the PHP daemon's by default", () => {
  const d = decoder(
    new Map([["charge", { delivery: "at-least-once" as const, ordering: "key" as const }]]),
  );
  assertEquals([d.policyFor("charge").atMostOnce, d.policyFor("charge").byKey], [false, true]);
  assertEquals([d.policyFor("other").atMostOnce, d.policyFor("other").attempts], [true, 1]);
  assertEquals(d.policyFor("charge"), d.policyFor("charge"));
});

Deno.test("a handler file found is looked up again only after 50 ms; a missing one every time", async () => {
  const dir = await Deno.makeTempDir();
  try {
    let now = 0;
    const files = new HandlerFiles(50, () => now);
    const options = { ...OPTIONS, functionsDir: dir, files };
    const decode = () => decodeTask("t", 0, message({ php_worker: "fresh" }), options);
    const missing = /unknown handler fresh: no file/;
    assertStrict.throws(decode, missing);
    await Deno.writeTextFile(`${dir}/fresh.ts`, "export default () => {};\n");
    const first = decode(); // dropped in: seen by the next message, not cached as missing
    await Deno.writeTextFile(`${dir}/fresh.ts`, "export default () => { /* v2 */ };\n");
    now = 49;
    assertEquals(decode().fileVersion, first.fileVersion, "taken as unchanged within 50 ms");
    now = 50;
    const second = decode();
    assertStrict.notEqual(second.fileVersion, first.fileVersion, "the change is seen after it");
    await Deno.remove(`${dir}/fresh.ts`);
    now = 100;
    assertStrict.throws(decode, missing);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
