/**
 * The admin commands' process edge: `topics`, `inspect`, `offsets`, `lag` and `doctor` parse
 * their arguments here, take brokers/topic/group from the runner's configuration (flags, then
 * environment, then defaults) and print text, or JSON with `--json`. The work is done in
 * `runner/admin/` and `runner/doctor.ts`, which know nothing of arguments or the console.
 *
 * @example
 * ```ts
 * const code = await ADMIN_COMMANDS.lag.run(["--group", "task-runner", "--json"]);
 * ```
 * @module
 */
import { parseArgs } from "node:util";
import type { Admin, Kafka } from "kafkajs";
import { inspectMessage } from "../runner/admin/inspect.ts";
import { groupLag } from "../runner/admin/lag.ts";
import { offsetsForTimestamp } from "../runner/admin/offsets.ts";
import { listTopics } from "../runner/admin/topics.ts";
import { OPTIONS, resolveConfig, type RunnerConfig } from "../runner/config.ts";
import { runDoctor } from "../runner/doctor.ts";
import { ConfigError } from "../runner/errors.ts";
import { createKafka } from "../runner/kafka.ts";
import { setUpLogging } from "../runner/logging.ts";
import { doctorText, lagText, messageText, offsetsText, topicsText } from "./admin_text.ts";

/** One admin command: a one-line summary and its entry point (returns the exit code). */
export interface AdminCommand {
  /** One line for the main usage text. */
  summary: string;
  /** Run with the arguments after the command name; resolves to the process exit code. */
  run(args: string[]): Promise<number>;
}

type Values = Record<string, string | boolean | undefined>;

/** What a command's body gets: parsed flags, the resolved configuration and the brokers. */
interface Context {
  values: Values;
  positionals: string[];
  config: RunnerConfig;
  /** Configured brokers, or 127.0.0.1:<local broker port> when KAFKA_BROKERS is empty. */
  brokers: string[];
  /** True when `brokers` is the embedded local broker (it is never started by these commands). */
  localBroker: boolean;
  /** Print `data` as JSON with --json, else `text()`. */
  print(data: unknown, text: () => string): void;
}

/** A command-specific flag and its line in --help. */
interface Flag {
  type: "string" | "boolean";
  doc: string;
}

interface Spec {
  summary: string;
  usage: string;
  explanation: string;
  /** Flags of the runner's configuration that matter here (all are accepted). */
  configFlags: string[];
  /** Command-specific flags: name, description. */
  flags?: Record<string, Flag>;
  positionals?: boolean;
  body(ctx: Context): Promise<number>;
}

const COMMON_FLAGS: Record<string, Flag> = {
  json: { type: "boolean", doc: "Print JSON (machine output) instead of text." },
  verbose: { type: "boolean", doc: "Also print the Kafka client's log lines (on stdout)." },
  help: { type: "boolean", doc: "This text." },
};

function helpText(name: string, spec: Spec): string {
  const flags: Record<string, Flag> = { ...spec.flags, ...COMMON_FLAGS };
  const own = Object.entries(flags).map(([flag, f]) =>
    `  --${(flag + (f.type === "string" ? " <value>" : "")).padEnd(28)} ${f.doc}`
  );
  const config = OPTIONS.filter((o) => spec.configFlags.includes(o.flag)).map((o) =>
    `  --${o.flag.padEnd(20)} ${o.env.padEnd(18)} ${(o.default || '""').padEnd(14)} ${o.doc}`
  );
  return [
    `Usage: main.ts ${name} ${spec.usage}`,
    "",
    spec.explanation,
    "",
    "Options:",
    ...own,
    "",
    "Configuration (flag, environment variable, default), as for `main.ts run`:",
    ...config,
    "  When KAFKA_BROKERS is empty, 127.0.0.1:<local broker port> is used (no broker is started).",
  ].join("\n");
}

/** An integer flag, validated like every other option. */
function integer(values: Values, flag: string, min: number): number | undefined {
  const raw = values[flag];
  if (raw === undefined) return undefined;
  const n = Number(raw);
  if (typeof raw !== "string" || !/^\d+$/.test(raw) || !Number.isSafeInteger(n) || n < min) {
    throw new ConfigError(`--${flag} must be an integer >= ${min}, got ${JSON.stringify(raw)}`);
  }
  return n;
}

function required<T>(value: T | undefined, flag: string): T {
  if (value === undefined) throw new ConfigError(`--${flag} is required`);
  return value;
}

/** A time given as ms since the epoch or as an ISO 8601 date/time. */
function parseTime(raw: string): number {
  const ms = /^\d+$/.test(raw) ? Number(raw) : Date.parse(raw);
  if (!Number.isSafeInteger(ms) || ms < 0) {
    throw new ConfigError(
      `--time must be ms since the epoch or an ISO 8601 time (2024-05-01T12:00:00Z), got ${
        JSON.stringify(raw)
      }`,
    );
  }
  return ms;
}

const isUsageError = (e: unknown) =>
  e instanceof ConfigError || String((e as { code?: unknown }).code).startsWith("ERR_PARSE_ARGS");

/** Turn a spec into a command: parsing, --help, configuration and error reporting. */
function command(name: string, spec: Spec): AdminCommand {
  return {
    summary: spec.summary,
    async run(args) {
      const help = `Run \`main.ts ${name} --help\` for usage.`;
      try {
        const options: Record<string, { type: "string" | "boolean" }> = {};
        for (const o of OPTIONS) options[o.flag] = { type: "string" };
        for (const [flag, f] of Object.entries({ ...spec.flags, ...COMMON_FLAGS })) {
          options[flag] = { type: f.type };
        }
        const { values, positionals } = parseArgs({
          args,
          options,
          allowPositionals: spec.positionals ?? false,
        });
        if (values.help) {
          console.log(helpText(name, spec));
          return 0;
        }
        const flags = Object.fromEntries(
          OPTIONS.map((o) => [o.flag, values[o.flag]]).filter(([, v]) => typeof v === "string"),
        );
        const config = resolveConfig(flags, Deno.env.toObject());
        if (values.verbose) await setUpLogging({ level: "debug", format: config.logFormat });
        const json = values.json === true;
        return await spec.body({
          values,
          positionals,
          config,
          brokers: config.brokers ?? [`127.0.0.1:${config.localBrokerPort}`],
          localBroker: config.brokers === null,
          print: (data, text) => console.log(json ? JSON.stringify(data, null, 2) : text()),
        });
      } catch (error) {
        const e = error as Error;
        if (isUsageError(e)) {
          console.error(`${name}: ${e.message}\n${help}`);
          return 2;
        }
        const hint = e.name.startsWith("KafkaJS") ? "\nRun `main.ts doctor` to see why." : "";
        console.error(`${name}: ${e.name}: ${e.message}${hint}`);
        return 1;
      }
    },
  };
}

/** A kafkajs client for one admin command: fails in seconds, not minutes, when unreachable. */
function adminKafka(brokers: string[]): Kafka {
  return createKafka({
    brokers,
    clientId: "task-runner-admin",
    connectionTimeout: 3000,
    requestTimeout: 10_000,
    retries: 2,
  });
}

async function withAdmin<T>(brokers: string[], use: (admin: Admin) => Promise<T>): Promise<T> {
  const admin = adminKafka(brokers).admin();
  await admin.connect();
  try {
    return await use(admin);
  } finally {
    await admin.disconnect();
  }
}

const CONNECTION = ["brokers", "local-broker-port"];

/** The admin commands, by name, for `main.ts` to dispatch to. */
export const ADMIN_COMMANDS: Record<string, AdminCommand> = {
  topics: command("topics", {
    summary: "list topics: partitions, leaders, replicas/ISR, start and end offsets",
    usage: "[topic...] [--internal] [--json]",
    explanation:
      "Lists the cluster's brokers and its topics (or only the named ones) with, per partition,\n" +
      "the leader and replica brokers (node ids), the in-sync replicas (isr), and the log's\n" +
      "start and end offsets. The end offset is the offset the next message will get, so\n" +
      "end - start is the number of messages the log keeps. Kafka's internal topics\n" +
      "(__consumer_offsets, ...) are left out unless --internal is given.",
    configFlags: CONNECTION,
    positionals: true,
    flags: { internal: { type: "boolean", doc: "Include Kafka's internal topics." } },
    body: async ({ values, positionals, brokers, print }) => {
      const report = await withAdmin(brokers, (admin) =>
        listTopics(admin, {
          topics: positionals.length > 0 ? positionals : undefined,
          includeInternal: values.internal === true,
        }));
      print(report, () => topicsText(report));
      return 0;
    },
  }),

  inspect: command("inspect", {
    summary: "read one message by partition and offset: headers, key, timestamp, payload",
    usage: "--partition <p> --offset <o> [--topic <t>] [--json]",
    explanation:
      "Reads the message at one offset of one partition of the task topic (or --topic) and\n" +
      "prints its timestamp, key, headers (as text) and payload. Bytes that are not UTF-8 are\n" +
      "shown as base64 and marked so. It reads through a throwaway consumer group that is given\n" +
      "only that partition, never commits and is deleted afterwards: the runner's group and its\n" +
      "offsets are not touched. An offset at or past the end, or before the log start (deleted\n" +
      "by retention), is an error that says which offsets exist.",
    configFlags: [...CONNECTION, "topic"],
    flags: {
      partition: { type: "string", doc: "Partition number (required)." },
      offset: { type: "string", doc: "Offset of the message (required)." },
      "timeout-ms": { type: "string", doc: "Time to wait for the message (default 15000)." },
    },
    body: async ({ values, config, brokers, print }) => {
      const address = {
        topic: config.topic,
        partition: required(integer(values, "partition", 0), "partition"),
        offset: required(integer(values, "offset", 0), "offset"),
      };
      const timeoutMs = integer(values, "timeout-ms", 1);
      const message = await inspectMessage(adminKafka(brokers), address, { timeoutMs });
      print(message, () => messageText(message));
      return 0;
    },
  }),

  offsets: command("offsets", {
    summary: "per partition, the first offset at or after a time (end offset if none)",
    usage: "--time <time> [--topic <t>] [--json]",
    explanation:
      "For each partition of the task topic (or --topic), prints the FIRST offset whose message\n" +
      "timestamp is at or after --time: where to start reading to see everything since then.\n" +
      "It is not an exact-match lookup (the PHP notes took it for one): any time works. When no\n" +
      "message is that recent, the answer is the partition's end offset, the offset the next\n" +
      'message will get; such rows are marked "past the end".\n' +
      "--time is ms since the epoch (1714564800000) or ISO 8601 (2024-05-01T12:00:00Z).",
    configFlags: [...CONNECTION, "topic"],
    flags: { time: { type: "string", doc: "The time (required)." } },
    body: async ({ values, config, brokers, print }) => {
      const timestamp = parseTime(required(values.time as string | undefined, "time"));
      const rows = await withAdmin(
        brokers,
        (admin) => offsetsForTimestamp(admin, { topic: config.topic, timestamp }),
      );
      print(
        { topic: config.topic, timestamp, partitions: rows },
        () => offsetsText(config.topic, timestamp, rows),
      );
      return 0;
    },
  }),

  lag: command("lag", {
    summary: "a group's committed offset, end offset and lag per partition, with totals",
    usage: "[--group <g>] [--topic <t>] [--json]",
    explanation:
      "For the runner's group (or --group) on the task topic (or --topic): the group's state\n" +
      "and members, and per partition the committed offset (the next offset the group will\n" +
      "read), the end offset and lag = end - committed, plus totals. A partition for which the\n" +
      "group never committed an offset says so, with how many messages it holds. Reading this\n" +
      "does not join the group.",
    configFlags: [...CONNECTION, "topic", "group"],
    body: async ({ config, brokers, print }) => {
      const lag = await withAdmin(
        brokers,
        (admin) => groupLag(admin, { groupId: config.groupId, topic: config.topic }),
      );
      print(lag, () => lagText(lag));
      return 0;
    },
  }),

  doctor: command("doctor", {
    summary: "check brokers, advertised addresses, topic, group, functions and tools",
    usage: "[--connect-timeout-ms <n>] [--json]",
    explanation:
      "Checks, in order: each bootstrap broker accepts a TCP connection; the addresses the\n" +
      "brokers advertise are reachable from here (the advertised.listeners trap); the task\n" +
      "topic exists; the group's state and lag; the functions folder (each *.ts has a valid\n" +
      "name and a default export, found by reading the files, never running them); the\n" +
      "functions config file; Deno, and Java and Maven when the local broker is used.\n" +
      "Each line is ok / info / warn / fail / skip with what was found, and a fix under each\n" +
      "problem. Exits 1 when a check failed. It answers within seconds even when a broker is\n" +
      "unreachable: short connection timeouts, no retries.\n" +
      "The default-export check reads the text (comments and strings ignored); it can be\n" +
      "fooled by a regular expression literal containing quotes, never by running code.",
    configFlags: [...CONNECTION, "topic", "group", "functions-dir", "functions-config"],
    flags: {
      "connect-timeout-ms": { type: "string", doc: "Time allowed per connection (default 1500)." },
    },
    body: async ({ values, config, brokers, localBroker, print }) => {
      const report = await runDoctor({
        brokers,
        topic: config.topic,
        groupId: config.groupId,
        functionsDir: config.functionsDir,
        functionsConfig: config.functionsConfig,
        localBroker,
        connectTimeoutMs: integer(values, "connect-timeout-ms", 1),
      });
      print(report, () => doctorText(report));
      return report.ok ? 0 : 1;
    },
  }),
};
