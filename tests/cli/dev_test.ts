/**
 * `main.ts dev` as a real subprocess against the test broker: it starts the runner, restarts
 * it when functions.json changes, and stops it (drained) on SIGTERM.
 */
import { fileURLToPath } from "node:url";
import { assertEquals } from "../helpers/assert.ts";
import { brokers, unique } from "../helpers/harness.ts";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));

Deno.test("dev runs the runner and restarts it when functions.json changes", async () => {
  const dir = await Deno.makeTempDir();
  const config = `${dir}/functions.json`;
  await Deno.writeTextFile(config, '{"functions": {}}');
  const topic = unique("dev");
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", `${ROOT}main.ts`, "dev"],
    cwd: ROOT,
    env: {
      KAFKA_BROKERS: brokers(),
      TASK_TOPIC: topic,
      GROUP_ID: topic,
      FUNCTIONS_CONFIG: config,
      LOG_FORMAT: "json",
      METRICS_PORT: "0",
    },
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const lines: string[] = [];
  const waiters: Array<() => void> = [];
  const read = async (stream: ReadableStream<Uint8Array>) => {
    let buffer = "";
    for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
      buffer += chunk;
      const parts = buffer.split("\n");
      buffer = parts.pop()!;
      lines.push(...parts);
      for (const w of waiters) w();
    }
  };
  const reading = Promise.all([read(child.stdout), read(child.stderr)]);
  const count = (pattern: RegExp) => lines.filter((l) => pattern.test(l)).length;
  const until = (what: string, pattern: RegExp, n: number) =>
    new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`no ${what}:\n${lines.slice(-10).join("\n")}`)),
        30_000,
      );
      const check = () => {
        if (count(pattern) >= n) (clearTimeout(timer), resolve());
      };
      waiters.push(check);
      check();
    });
  const consuming = /"message":"Consuming/;
  try {
    await until("first runner consuming", consuming, 1);
    await Deno.writeTextFile(config, '{"functions": {"echo": {"timeoutMs": 5000}}}');
    await until("restart", /functions\.json changed: restarting the runner/, 1);
    await until("second runner consuming", consuming, 2);
    assertEquals(count(/dev \| runner started/), 2);
  } finally {
    child.kill("SIGTERM"); // dev passes it on to its runner, which drains and exits
  }
  const status = await child.status;
  await reading;
  assertEquals(status.code, 0, lines.slice(-10).join("\n"));
  assertEquals(count(/dev \| stopping the runner/), 1);
  await Deno.remove(dir, { recursive: true });
});
