/**
 * Structured logging with LogTape: JSON lines (journald, tests) or readable text (a TTY).
 * @module
 */
import {
  configure,
  getAnsiColorFormatter,
  getLogger,
  type Logger,
  type LogRecord,
  reset,
  type TextFormatter,
} from "@logtape/logtape";
import process from "node:process";

/** Options of {@link setUpLogging}. */
export interface LoggingOptions {
  /** Lowest level written. @default "info" */
  level?: "debug" | "info" | "warning" | "error";
  /** `json`, `pretty` or `auto` (pretty when stdout is a terminal). @default "auto" */
  format?: "json" | "pretty" | "auto";
  /**
   * Also told of every record written (the console keeps tasks' output lines from it). It
   * sees what the level lets through. @default none
   */
  tap?: (record: LogRecord) => void;
}

/** Root category of every logger of the runner. */
export const ROOT = "task-runner";

/** A logger under the runner's root category, e.g. `logger("task")`. */
export function logger(...category: string[]): Logger {
  return getLogger([ROOT, ...category]);
}

/** A value inside a message: strings bare, null as `-`, errors by message, objects as JSON. */
function renderValue(value: unknown): string {
  if (typeof value === "string") return value;
  if (value === null || value === undefined) return "-";
  if (value instanceof Error) return value.message;
  if (typeof value === "object") {
    try {
      return JSON.stringify(value);
    } catch {
      return String(value);
    }
  }
  return String(value);
}

/** A record's message as a sentence, its values bare. */
function renderMessage(record: LogRecord): string {
  let text = "";
  for (let i = 0; i < record.message.length; i++) {
    text += i % 2 === 0 ? record.message[i] as string : renderValue(record.message[i]);
  }
  return text;
}

/** JSON of a property value; bigints as strings (JSON has none). */
const replacer = (_key: string, value: unknown) =>
  typeof value === "bigint" ? value.toString() : value;

/**
 * One JSON line per record (journald, tests): `@timestamp`, `level`, `message`, `logger`,
 * `properties`. The message is a short sentence whose values are written bare
 * (`task ok: hello async_task/3@0 in 38 ms`); the fields are in `properties` only once
 * each. An output line (property `line`) is never part of a message template, so that it is
 * written once.
 */
export function jsonLineFormatter(record: LogRecord): string {
  const line = {
    "@timestamp": new Date(record.timestamp).toISOString(),
    level: record.level === "warning" ? "WARN" : record.level.toUpperCase(),
    message: renderMessage(record),
    logger: record.category.join("."),
    properties: record.properties,
  };
  try {
    // Without a replacer first: it is several times faster, and a bigint is rare.
    return JSON.stringify(line) + "\n";
  } catch {
    return JSON.stringify(line, replacer) + "\n";
  }
}

const ansi = getAnsiColorFormatter({ value: "bare", timestamp: "time" });

/** Readable text with colours (a terminal): the sentence, then an output line's text. */
export function prettyFormatter(record: LogRecord): string {
  const line = record.properties.line;
  if (typeof line !== "string") return ansi(record);
  const message = [...record.message];
  message[message.length - 1] = `${message.at(-1)}: `;
  return ansi({ ...record, message: [...message, line, ""] });
}

/** syslog priorities, for journald's `<N>` line prefix. */
const PRIORITY: Record<string, number> = {
  trace: 7,
  debug: 7,
  info: 6,
  warning: 4,
  error: 3,
  fatal: 2,
};

/** A sink of {@link lineSink}, with what it still holds. */
interface LineSink {
  (record: LogRecord): void;
  /** Write what is held now. */
  flush(): void;
}

/** Bytes a {@link lineSink} holds at most before it writes them. */
const HELD_BYTES = 65_536;

/**
 * A sink that writes whole lines synchronously. Lines logged in one turn of the event loop go
 * out in one write at its end (under load, one write for many task outcomes instead of one
 * each); a warning or an error, and the lines before it, are written at once, and so is
 * everything held when the process exits (`unload`) or logging is undone. A stdout that fails
 * (its reader gone) drops the lines, says so once on stderr, and stops nothing. Under systemd
 * (stdout connected to the journal) each line starts with its syslog priority, so that
 * `journalctl -p warning` works.
 */
function lineSink(formatter: TextFormatter, journal: boolean): LineSink {
  const encoder = new TextEncoder();
  let held = "";
  let timer: ReturnType<typeof setTimeout> | undefined;
  let failed = false;
  const flush = () => {
    clearTimeout(timer);
    timer = undefined;
    if (held === "") return;
    let bytes = encoder.encode(held);
    held = "";
    try {
      while (bytes.length > 0) bytes = bytes.subarray(Deno.stdout.writeSync(bytes));
    } catch (error) {
      // stdout is gone (its reader exited): nowhere to write, and no reason to stop the tasks.
      if (failed) return;
      failed = true;
      const why = `task-runner: log lines dropped, stdout failed: ${(error as Error).message}\n`;
      try {
        Deno.stderr.writeSync(encoder.encode(why));
      } catch {
        // stderr is gone too
      }
    }
  };
  const sink = (record: LogRecord) => {
    const line = formatter(record);
    held += journal ? `<${PRIORITY[record.level] ?? 6}>${line}` : line;
    if (PRIORITY[record.level] < PRIORITY.info || held.length >= HELD_BYTES) flush();
    else timer ??= setTimeout(flush, 0);
  };
  return Object.assign(sink, { flush });
}

/**
 * Route Node warnings (`process.emitWarning`, used by npm packages) to the log as structured
 * lines, in place of the free text Node's default listener prints on stderr.
 *
 * kafkajs 2.2.4 emits a TimeoutNegativeWarning on connecting (tulios/kafkajs#1751, unfixed
 * upstream): a pending-request check it means to run at once gets a negative delay, which the
 * timer turns into 1 ms, as intended. That one is logged at debug; any other warning at warning.
 * Returns a function that puts the previous listeners back. Admin commands call it without
 * configuring a sink, so that a warning never mixes into their output.
 */
export function routeProcessWarnings(): () => void {
  const previous = process.listeners("warning");
  process.removeAllListeners("warning");
  const log = logger("process");
  const onWarning = (warning: Error) => {
    const props = { name: warning.name, warning: warning.message };
    if (warning.name === "TimeoutNegativeWarning" && warning.stack?.includes("/kafkajs/")) {
      log.debug("{name} from kafkajs (harmless, tulios/kafkajs#1751): {warning}", props);
    } else {
      log.warn("{name}: {warning}", props);
    }
  };
  process.on("warning", onWarning);
  return () => {
    process.off("warning", onWarning);
    for (const listener of previous) process.on("warning", listener);
  };
}

/**
 * Configure LogTape for the process, and route Node warnings to it. Call once, at start-up,
 * from `main.ts`. Returns a function that undoes both.
 */
export async function setUpLogging(options: LoggingOptions = {}): Promise<() => Promise<void>> {
  const format = options.format ?? "auto";
  const pretty = format === "pretty" || (format === "auto" && Deno.stdout.isTerminal());
  const out = lineSink(
    pretty ? prettyFormatter : jsonLineFormatter,
    // systemd sets JOURNAL_STREAM when stdout goes to the journal.
    Deno.env.get("JOURNAL_STREAM") !== undefined,
  );
  await configure({
    reset: true,
    sinks: { out, tap: options.tap ?? (() => {}) },
    loggers: [
      {
        category: [ROOT],
        lowestLevel: options.level ?? "info",
        sinks: options.tap ? ["out", "tap"] : ["out"],
      },
      { category: ["logtape", "meta"], lowestLevel: "warning", sinks: ["out"] },
    ],
  });
  const unroute = routeProcessWarnings();
  globalThis.addEventListener("unload", out.flush);
  return async () => {
    unroute();
    globalThis.removeEventListener("unload", out.flush);
    out.flush();
    await reset();
  };
}
