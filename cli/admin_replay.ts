/**
 * The `replay` admin command's process edge: flags to {@link ReplayOptions}, the report as text
 * or JSON. The work is done in `ops/admin/replay.ts`.
 * @module
 */
import { checkReplayOptions, replay, type ReplayOptions } from "../ops/admin/replay.ts";
import { ConfigError, OffsetOutOfRangeError } from "../runner/errors.ts";
import {
  type AdminCommand,
  adminKafka,
  command,
  CONNECTION,
  integer,
  parseTime,
  type Values,
} from "./admin_command.ts";
import { replayText } from "./admin_text.ts";

/** The flag of each option, to name flags (not option names) in error messages. */
const FLAGS: Record<string, string> = {
  fromTopic: "from-topic",
  toTopic: "to-topic",
  partition: "partition",
  startOffset: "start-offset",
  endOffset: "end-offset",
  since: "since",
  until: "until",
  handler: "handler",
  limit: "limit",
  idleTimeoutMs: "timeout-ms",
};

/** `"startOffset"` in a message of the core becomes `--start-offset`. */
function withFlagNames(message: string): string {
  return message.replace(/"(\w+)"/g, (quoted, name) => FLAGS[name] ? `--${FLAGS[name]}` : quoted);
}

function text(values: Values, flag: string): string | undefined {
  const value = values[flag];
  return typeof value === "string" ? value : undefined;
}

/** `main.ts replay`. */
export const replayCommand: AdminCommand = command("replay", {
  summary: "re-enqueue tasks from a topic (e.g. the dead letters) by offsets or times",
  usage: "--from-topic <t> [--to-topic <t>] [--partition <p>] [range] [--handler <h>] " +
    "[--dry-run] [--limit <n>] [--json]",
  explanation: [
    "Reads messages from --from-topic (the dead-letter topic, e.g. async_task.dlq, or the task",
    "topic itself) and produces them again to --to-topic (default: the task topic), with",
    "acks=all. Each one keeps its key and payload byte for byte and its headers, minus every",
    "x-task-runner-* header (the dead-letter headers: outcome, error, attempts, ...), plus",
    "x-task-runner-replayed-from: <from-topic>/<partition>@<offset>, so a replayed task can be",
    "traced. It gets a new timestamp; its partition in --to-topic comes from its key.",
    "",
    "Range, per partition (default: every partition, the whole log):",
    "  --start-offset/--end-offset  offsets, start inclusive, end exclusive; need --partition.",
    "  --since/--until              times (ms since the epoch or ISO 8601), each turned into the",
    "                               partition's first offset whose timestamp is at or after it",
    "                               (like the offsets command); --until is exclusive.",
    "The range ends at the end offsets seen when the command starts, and everything is read",
    "before anything is produced: messages written meanwhile are not replayed, and replaying a",
    "topic into itself adds the selected messages once and stops.",
    "",
    "--handler keeps only messages whose handler header (--header, default php_worker) is that",
    "name. --limit caps how many are replayed (default 1000): the first ones by partition, then",
    "offset; the summary says where the rest starts. --dry-run prints what would be produced",
    "(partition@offset, handler, key, payload size, and for dead letters the recorded outcome,",
    "attempts and error) and produces nothing.",
    "",
    "Reading goes through a throwaway consumer group that never commits and is deleted",
    "afterwards: no real group's offsets are read or written. A missing topic or partition, or",
    "offsets outside the log, are errors that say what exists (exit 1); invalid flags exit 2.",
  ].join("\n"),
  configFlags: [...CONNECTION, "topic", "header"],
  flags: {
    "from-topic": { type: "string", doc: "Topic to read (required)." },
    "to-topic": { type: "string", doc: "Topic to produce to (default: the task topic)." },
    partition: { type: "string", doc: "Only this partition (default: all)." },
    "start-offset": { type: "string", doc: "First offset, inclusive (needs --partition)." },
    "end-offset": { type: "string", doc: "Offset to stop before, exclusive (needs --partition)." },
    since: { type: "string", doc: "Start at this time (ms since the epoch or ISO 8601)." },
    until: { type: "string", doc: "Stop before this time (ms since the epoch or ISO 8601)." },
    handler: { type: "string", doc: "Only messages for this handler." },
    "dry-run": { type: "boolean", doc: "Print what would be produced; produce nothing." },
    limit: { type: "string", doc: "Replay at most this many messages (default 1000)." },
    "timeout-ms": {
      type: "string",
      doc: "Give up when the broker sends nothing for this long (default 15000).",
    },
  },
  body: async ({ values, config, brokers, print }) => {
    const time = (flag: string) => {
      const raw = text(values, flag);
      return raw === undefined ? undefined : parseTime(raw, flag);
    };
    const fromTopic = text(values, "from-topic");
    if (fromTopic === undefined) throw new ConfigError("--from-topic is required");
    const options: ReplayOptions = {
      fromTopic,
      toTopic: text(values, "to-topic") ?? config.topic,
      partition: integer(values, "partition", 0),
      startOffset: integer(values, "start-offset", 0),
      endOffset: integer(values, "end-offset", 0),
      since: time("since"),
      until: time("until"),
      handler: text(values, "handler"),
      handlerHeader: config.handlerHeader,
      dryRun: values["dry-run"] === true,
      limit: integer(values, "limit", 1),
      idleTimeoutMs: integer(values, "timeout-ms", 1),
    };
    try {
      checkReplayOptions(options);
    } catch (error) {
      if (!(error instanceof RangeError || error instanceof TypeError)) throw error;
      throw new ConfigError(withFlagNames(error.message));
    }
    try {
      const report = await replay(adminKafka(brokers, config), options);
      print(report, () => replayText(report));
      return 0;
    } catch (error) {
      // The core names its options ("startOffset"); here the user typed flags.
      if (error instanceof OffsetOutOfRangeError) error.message = withFlagNames(error.message);
      throw error;
    }
  },
});
