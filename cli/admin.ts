/**
 * The admin commands' process edge: `topics`, `inspect`, `offsets`, `lag`, `replay` and `doctor`
 * parse their arguments here (with `cli/admin_command.ts`), take brokers/topic/group from the
 * runner's configuration (flags, then environment, then defaults) and print text, or JSON with
 * `--json`. The work is done in `ops/admin/` and `ops/doctor/`, which know nothing of
 * arguments or the console.
 *
 * @example
 * ```ts
 * const code = await ADMIN_COMMANDS.lag.run(["--group", "task-runner", "--json"]);
 * ```
 * @module
 */
import { inspectMessage } from "../ops/admin/inspect.ts";
import { groupLag } from "../ops/admin/lag.ts";
import { offsetsForTimestamp } from "../ops/admin/offsets.ts";
import { listTopics } from "../ops/admin/topics.ts";
import { runDoctor } from "../ops/doctor/doctor.ts";
import {
  type AdminCommand,
  adminKafka,
  command,
  CONNECTION,
  integer,
  parseTime,
  required,
  withAdmin,
} from "./admin_command.ts";
import { replayCommand } from "./admin_replay.ts";
import { doctorText, lagText, messageText, offsetsText, topicsText } from "./admin_text.ts";

export type { AdminCommand } from "./admin_command.ts";

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
    body: async ({ values, positionals, config, brokers, print }) => {
      const report = await withAdmin(adminKafka(brokers, config), (admin) =>
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
      const message = await inspectMessage(adminKafka(brokers, config), address, { timeoutMs });
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
      const timestamp = parseTime(required(values.time as string | undefined, "time"), "time");
      const rows = await withAdmin(
        adminKafka(brokers, config),
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
        adminKafka(brokers, config),
        (admin) => groupLag(admin, { groupId: config.groupId, topic: config.topic }),
      );
      print(lag, () => lagText(lag));
      return 0;
    },
  }),

  replay: replayCommand,

  doctor: command("doctor", {
    summary: "check brokers, advertised addresses, topic, group, functions and tools",
    usage: "[--connect-timeout-ms <n>] [--json]",
    explanation:
      "Checks, in order: each bootstrap broker accepts a TCP connection; TLS (certificate\n" +
      "trusted by KAFKA_SSL_CA_FILE, valid for the name, not expired or expiring within 14\n" +
      "days, client certificate accepted), the SASL mechanism enabled and the credentials\n" +
      "accepted, and the protocol (PLAINTEXT against a TLS listener and the reverse); the addresses the\n" +
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
        security: config,
      });
      print(report, () => doctorText(report));
      return report.ok ? 0 : 1;
    },
  }),
};
