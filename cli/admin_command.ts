/**
 * What every admin command shares: argument parsing with `--help`, `--json` and `--verbose`, the
 * runner's configuration (flags, then environment, then defaults), a short-timeout Kafka client,
 * and error reporting (exit 2 for a usage error, 1 for a failure). `cli/admin.ts` lists the
 * commands.
 * @module
 */
import { parseArgs } from "node:util";
import type { Admin, Kafka } from "kafkajs";
import { OPTIONS, resolveConfig, type RunnerConfig } from "../runner/config.ts";
import { ConfigError } from "../runner/errors.ts";
import { createKafka } from "../runner/kafka/client.ts";
import { PLAINTEXT, type SecuritySettings } from "../runner/kafka/security.ts";
import { routeProcessWarnings, setUpLogging } from "../runner/report/logging.ts";

/** One admin command: a one-line summary and its entry point (returns the exit code). */
export interface AdminCommand {
  /** One line for the main usage text. */
  summary: string;
  /** Run with the arguments after the command name; resolves to the process exit code. */
  run(args: string[]): Promise<number>;
}

/** Parsed flags. */
export type Values = Record<string, string | boolean | undefined>;

/** What a command's body gets: parsed flags, the resolved configuration and the brokers. */
export interface Context {
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
export interface Flag {
  type: "string" | "boolean";
  doc: string;
}

/** What a command is: texts for --help, its flags and its body. */
export interface Spec {
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
export function integer(values: Values, flag: string, min: number): number | undefined {
  const raw = values[flag];
  if (raw === undefined) return undefined;
  const n = Number(raw);
  if (typeof raw !== "string" || !/^\d+$/.test(raw) || !Number.isSafeInteger(n) || n < min) {
    throw new ConfigError(`--${flag} must be an integer >= ${min}, got ${JSON.stringify(raw)}`);
  }
  return n;
}

/** `value`, or a usage error naming `--flag` when it is missing. */
export function required<T>(value: T | undefined, flag: string): T {
  if (value === undefined) throw new ConfigError(`--${flag} is required`);
  return value;
}

/** A time given as ms since the epoch or as an ISO 8601 date/time, from `--flag`. */
export function parseTime(raw: string, flag: string): number {
  const ms = /^\d+$/.test(raw) ? Number(raw) : Date.parse(raw);
  if (!Number.isSafeInteger(ms) || ms < 0) {
    throw new ConfigError(
      `--${flag} must be ms since the epoch or an ISO 8601 time (2024-05-01T12:00:00Z), got ${
        JSON.stringify(raw)
      }`,
    );
  }
  return ms;
}

const isUsageError = (e: unknown) =>
  e instanceof ConfigError || String((e as { code?: unknown }).code).startsWith("ERR_PARSE_ARGS");

/** Turn a spec into a command: parsing, --help, configuration and error reporting. */
export function command(name: string, spec: Spec): AdminCommand {
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
        // Without --verbose nothing but the command's own output is printed, not even a Node
        // warning (kafkajs's TimeoutNegativeWarning, tulios/kafkajs#1751).
        if (values.verbose) await setUpLogging({ level: "debug", format: config.logFormat });
        else routeProcessWarnings();
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

/**
 * A kafkajs client for one admin command: fails in seconds, not minutes, when unreachable.
 * `security` is the runner's (a whole `RunnerConfig` will do).
 */
export function adminKafka(
  brokers: string[],
  security: Partial<SecuritySettings> = PLAINTEXT,
): Kafka {
  return createKafka({
    brokers,
    security,
    clientId: "task-runner-admin",
    connectionTimeout: 3000,
    requestTimeout: 10_000,
    retries: 2,
  });
}

/** Run `use` with a connected admin client of `kafka` (see {@link adminKafka}), then disconnect. */
export async function withAdmin<T>(
  kafka: Kafka,
  use: (admin: Admin) => Promise<T>,
): Promise<T> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    return await use(admin);
  } finally {
    await admin.disconnect();
  }
}

/** Configuration flags every command that talks to Kafka takes: where, and how secured. */
export const CONNECTION = [
  "brokers",
  "local-broker-port",
  ...OPTIONS.filter((o) => /^KAFKA_(SECURITY|SSL|SASL)_/.test(o.env)).map((o) => o.flag),
];
