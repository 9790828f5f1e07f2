/**
 * Integration harness: the runner as a real subprocess against the real broker, its JSON log
 * lines parsed as they arrive, and producers (kafkajs and kcat) like other teams use.
 */
import { fileURLToPath } from "node:url";
import type { Admin, Kafka, KafkaMessage, Producer } from "kafkajs";
import { createKafka, createProducer } from "../../runner/kafka/client.ts";

export const ROOT = fileURLToPath(new URL("../../", import.meta.url));
import { FIXTURES } from "./fixtures.ts";
export { FIXTURES };
export { alive } from "./process.ts";

/** Brokers of the test broker, started by `tests/run.sh`. */
export function brokers(): string {
  const value = Deno.env.get("KAFKA_BROKERS");
  if (!value) throw new Error("KAFKA_BROKERS is not set: run the tests with `deno task test`");
  return value;
}

/** A unique topic/group name for one test. */
export function unique(prefix: string): string {
  return `${prefix}_${Date.now().toString(36)}_${Math.random().toString(36).slice(2, 7)}`;
}

/** One parsed JSON log line of the runner. */
export interface LogLine {
  level: string;
  message: string;
  logger: string;
  properties: Record<string, unknown>;
}

/**
 * The arguments of `deno task run` (deno.json), main.ts made absolute: tests and benches run
 * the runner with the permissions and V8 flags it has in use.
 */
export function runTaskArgs(): string[] {
  const config = JSON.parse(Deno.readTextFileSync(`${ROOT}deno.json`));
  const [deno, ...args] = String(config.tasks.run).split(/\s+/);
  if (deno !== "deno" || !args.includes("main.ts")) {
    throw new Error(`deno.json's run task is not "deno run ... main.ts run": ${config.tasks.run}`);
  }
  return args.map((arg) => arg === "main.ts" ? `${ROOT}main.ts` : arg);
}

/** The runner as a subprocess. */
export class RunnerProcess implements AsyncDisposable {
  readonly lines: LogLine[] = [];
  readonly raw: string[] = [];
  readonly process: Deno.ChildProcess;
  readonly exited: Promise<Deno.CommandStatus>;
  #waiters = new Set<() => void>();

  /** A runner consuming `topic` as group `topic`, with the test fixtures as its functions. */
  static onTopic(topic: string, env: Record<string, string> = {}): RunnerProcess {
    return new RunnerProcess({
      TASK_TOPIC: topic,
      GROUP_ID: topic,
      FUNCTIONS_DIR: FIXTURES,
      ...env,
    });
  }

  constructor(env: Record<string, string>) {
    this.process = new Deno.Command(Deno.execPath(), {
      args: runTaskArgs(),
      cwd: ROOT,
      env: {
        LOG_FORMAT: "json",
        LOG_LEVEL: "debug",
        METRICS_PORT: "0",
        KAFKA_BROKERS: brokers(),
        ...env,
      },
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const read = async (stream: ReadableStream<Uint8Array>) => {
      const reader = stream.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      while (true) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let nl;
        while ((nl = buffer.indexOf("\n")) >= 0) {
          this.#add(buffer.slice(0, nl));
          buffer = buffer.slice(nl + 1);
        }
      }
      if (buffer) this.#add(buffer);
    };
    const done = Promise.all([read(this.process.stdout), read(this.process.stderr)]);
    this.exited = done.then(() => this.process.status).finally(() => this.#notify());
  }

  #add(text: string) {
    this.raw.push(text);
    if (text.startsWith("{")) {
      try {
        this.lines.push(JSON.parse(text));
      } catch { /* not a log line: kept in raw */ }
    }
    this.#notify();
  }

  #notify() {
    for (const w of this.#waiters) w();
  }

  /** Outcome lines (one per task). */
  outcomes(): Array<Record<string, unknown>> {
    return this.lines.filter((l) => l.properties?.outcome !== undefined).map((l) => l.properties);
  }

  /**
   * Resolve with the first value `pick` returns that is not undefined; fail after `timeoutMs`.
   * `pick` runs on each of this runner's lines and, because it may read other state (another
   * runner's lines, marker files), every 100 ms as well.
   */
  waitFor<T>(what: string, pick: () => T | undefined, timeoutMs = 30_000): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const check = () => {
        const value = pick();
        if (value !== undefined) {
          cleanup();
          resolve(value);
        }
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(
          new Error(
            `Timed out waiting for ${what}. Last log lines:\n${this.raw.slice(-15).join("\n")}`,
          ),
        );
      }, timeoutMs);
      const poll = setInterval(check, 100);
      const cleanup = () => {
        clearTimeout(timer);
        clearInterval(poll);
        this.#waiters.delete(check);
      };
      this.#waiters.add(check);
      check();
    });
  }

  /** Wait until the runner consumes (joined its group). */
  ready(): Promise<LogLine> {
    return this.waitFor(
      "the runner to start consuming",
      () => this.lines.find((l) => l.message.startsWith("Consuming")),
    );
  }

  /** Wait for `count` outcome lines and return them. */
  async waitForOutcomes(
    count: number,
    timeoutMs = 60_000,
  ): Promise<Array<Record<string, unknown>>> {
    return await this.waitFor(`${count} outcomes`, () => {
      const outcomes = this.outcomes();
      return outcomes.length >= count ? outcomes : undefined;
    }, timeoutMs);
  }

  /** Lines a handler printed on stdout. */
  output(handler: string): string[] {
    return this.lines
      .filter((l) => l.properties?.stream === "stdout" && l.properties?.handler === handler)
      .map((l) => String(l.properties.line));
  }

  /** Send a signal to the runner. */
  kill(signal: Deno.Signal = "SIGTERM"): void {
    try {
      this.process.kill(signal);
    } catch { /* already gone */ }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.kill("SIGKILL");
    await this.exited;
  }
}

/** A kafkajs client for the test broker. */
export function testKafka(): Kafka {
  return createKafka({ brokers: brokers().split(","), clientId: "tests" });
}

/** Create `topic` with `partitions` partitions; fails the test if it already existed. */
export async function createTopic(admin: Admin, topic: string, partitions: number): Promise<void> {
  const created = await admin.createTopics({
    waitForLeaders: true,
    topics: [{ topic, numPartitions: partitions }],
  });
  if (!created) throw new Error(`topic ${topic} already existed`);
}

/** A functions config file (`{"functions": ...}`) for one test, removed when disposed. */
export async function functionsConfig(
  functions: Record<string, unknown>,
): Promise<{ path: string } & AsyncDisposable> {
  const path = await Deno.makeTempFile({ suffix: ".json" });
  await Deno.writeTextFile(path, JSON.stringify({ functions }));
  return { path, [Symbol.asyncDispose]: () => Deno.remove(path) };
}

/** A connected kafkajs producer and admin for a test. */
export async function kafkaClients(): Promise<
  { producer: Producer; admin: Admin } & AsyncDisposable
> {
  const kafka = testKafka();
  const producer = createProducer(kafka);
  const admin = kafka.admin();
  await Promise.all([producer.connect(), admin.connect()]);
  return {
    producer,
    admin,
    async [Symbol.asyncDispose]() {
      await Promise.all([producer.disconnect(), admin.disconnect()]);
    },
  };
}

/** Produce with kcat, the way a team without our library would. */
export async function kcatProduce(
  topic: string,
  value: string,
  options: { headers?: Record<string, string>; key?: string; partition?: number } = {},
): Promise<void> {
  const args = ["-b", brokers(), "-P", "-t", topic, "-D", "\u0001"];
  for (const [k, v] of Object.entries(options.headers ?? {})) args.push("-H", `${k}=${v}`);
  if (options.key !== undefined) args.push("-K", "\u0002");
  if (options.partition !== undefined) args.push("-p", String(options.partition));
  const child = new Deno.Command("kcat", { args, stdin: "piped", stdout: "piped", stderr: "piped" })
    .spawn();
  const writer = child.stdin.getWriter();
  const body = options.key !== undefined ? `${options.key}\u0002${value}` : value;
  await writer.write(new TextEncoder().encode(body));
  await writer.close();
  const { code, stderr } = await child.output();
  if (code !== 0) throw new Error(`kcat failed (${code}): ${new TextDecoder().decode(stderr)}`);
}

/**
 * Read `count` messages of `topic` from the beginning (at most 20 s), through `kafka`.
 * @param kafka the client to read with. @default the test broker's
 */
export async function readTopic(
  topic: string,
  count: number,
  kafka: Kafka = testKafka(),
): Promise<KafkaMessage[]> {
  const consumer = kafka.consumer({ groupId: unique("reader"), maxWaitTimeInMs: 200 });
  await consumer.connect();
  await consumer.subscribe({ topics: [topic], fromBeginning: true });
  const messages: KafkaMessage[] = [];
  const { promise, resolve } = Promise.withResolvers<void>();
  await consumer.run({
    eachMessage: ({ message }) => {
      messages.push(message);
      if (messages.length >= count) resolve();
      return Promise.resolve();
    },
  });
  const timer = setTimeout(resolve, 20_000);
  await promise;
  clearTimeout(timer);
  await consumer.disconnect();
  return messages;
}
