/**
 * Human-readable text of the admin commands' results: aligned columns, one idea per line.
 * @module
 */
import type { InspectedMessage } from "../ops/admin/inspect.ts";
import type { GroupLag } from "../ops/admin/lag.ts";
import type { TimestampOffset } from "../ops/admin/offsets.ts";
import type { ReplayedMessage, ReplayReport } from "../ops/admin/replay.ts";
import type { TopicsReport } from "../ops/admin/topics.ts";
import type { DoctorReport } from "../ops/doctor/doctor.ts";

/** Rows as left-aligned columns separated by two spaces (trailing blanks trimmed). */
export function columns(rows: string[][]): string {
  const widths: number[] = [];
  for (const row of rows) {
    row.forEach((cell, i) => widths[i] = Math.max(widths[i] ?? 0, cell.length));
  }
  return rows
    .map((row) => row.map((cell, i) => cell.padEnd(widths[i])).join("  ").trimEnd())
    .join("\n");
}

/** A timestamp as `ms (ISO)`. */
export function when(ms: number): string {
  return `${ms} (${new Date(ms).toISOString()})`;
}

const nodes = (ids: number[]) => ids.length === 0 ? "-" : ids.join(",");

/** Text of the `topics` command. */
export function topicsText(report: TopicsReport): string {
  const brokers = report.brokers
    .map((b) => `${b.nodeId}=${b.host}:${b.port}${b.controller ? " (controller)" : ""}`)
    .join(", ");
  const out = [`cluster ${report.clusterId}, brokers: ${brokers}`];
  if (report.topics.length === 0) out.push("", "no topics");
  for (const t of report.topics) {
    const messages = t.partitions.reduce((sum, p) => sum + p.high - p.low, 0);
    out.push(
      "",
      `${t.topic}${t.internal ? " (internal)" : ""}: ${t.partitions.length} partition(s), ` +
        `${messages} message(s) in the log`,
    );
    const rows = [["  partition", "leader", "replicas", "isr", "start", "end"]];
    for (const p of t.partitions) {
      rows.push([
        `  ${p.partition}`,
        p.leader < 0 ? "none" : String(p.leader),
        nodes(p.replicas),
        nodes(p.isr) + (p.offline.length > 0 ? ` (offline: ${nodes(p.offline)})` : ""),
        String(p.low),
        String(p.high),
      ]);
    }
    out.push(columns(rows));
  }
  out.push(
    "",
    "start: first offset still in the log; end: the offset the next message will get " +
      "(end - start = messages kept).",
  );
  return out.join("\n");
}

/** Text of the `inspect` command. */
export function messageText(m: InspectedMessage): string {
  const b64 = (field: string) => m.base64.includes(field) ? " (not UTF-8: base64)" : "";
  const rows = [
    ["message", `${m.topic}/${m.partition}@${m.offset}`],
    ["timestamp", when(m.timestamp)],
    ["key", m.key === null ? "(none)" : JSON.stringify(m.key) + b64("key")],
  ];
  const headers = Object.entries(m.headers).flatMap(([name, value]) =>
    (Array.isArray(value) ? value : [value]).map((v) => `${name}: ${v}${b64(`headers.${name}`)}`)
  );
  if (headers.length === 0) rows.push(["headers", "(none)"]);
  headers.forEach((line, i) => rows.push([i === 0 ? "headers" : "", line]));
  rows.push(["payload", `${m.payloadBytes} byte(s)${b64("payload")}:`]);
  return `${columns(rows)}\n${m.payload ?? "(none: a tombstone)"}`;
}

/** Text of the `offsets` command. */
export function offsetsText(topic: string, timestamp: number, rows: TimestampOffset[]): string {
  const table = [["partition", "offset", "start", "end", ""]];
  for (const r of rows) {
    table.push([
      String(r.partition),
      String(r.offset),
      String(r.low),
      String(r.high),
      r.pastEnd ? "past the end: no message at or after the time; this is the end offset" : "",
    ]);
  }
  return [
    `${topic} at ${when(timestamp)}:`,
    "per partition, the first offset whose timestamp is at or after that time.",
    "",
    columns(table),
    "",
    "Not an exact-match lookup: any time works. When no message is that recent, Kafka answers",
    "the end offset, i.e. the offset the next message will get (nothing to read there yet).",
    "See a message's own timestamp with: inspect --partition P --offset O",
  ].join("\n");
}

/** Text of the `lag` command. */
export function lagText(lag: GroupLag): string {
  const members = lag.members.length === 0 ? "no members" : `${lag.members.length} member(s): ` +
    lag.members.map((m) => `${m.clientId}@${m.clientHost} [${m.partitions.join(",")}]`).join(
      ", ",
    );
  const table = [["partition", "committed", "end", "lag", "owner", ""]];
  for (const p of lag.partitions) {
    table.push([
      String(p.partition),
      p.committed === null ? "none" : String(p.committed),
      String(p.high),
      p.lag === null ? "-" : String(p.lag),
      p.owner ?? "-",
      p.committed === null
        ? `no committed offset (${p.high - p.low} message(s) in the log)`
        : p.committed < p.low
        ? `committed is before the log start ${p.low}: messages were deleted unread`
        : "",
    ]);
  }
  const t = lag.totals;
  table.push(["total", "", String(t.high), String(t.lag)]);
  const out = [
    `group ${lag.groupId} on ${lag.topic}: ${lag.state}, ${members}`,
    "",
    columns(table),
    "",
    "committed: the next offset the group will read; lag = end - committed " +
    "(messages not yet started).",
  ];
  if (t.uncommitted > 0) {
    out.push(
      `${t.uncommitted} partition(s) have no committed offset for this group: their ` +
        `${t.uncommittedMessages} message(s) are not in the lag total (the runner starts them ` +
        "from the log start when it joins).",
    );
  }
  return out.join("\n");
}

/** Text of the `doctor` command: `status  name  message`, with `fix:` lines under problems. */
export function doctorText(report: DoctorReport): string {
  const width = Math.max(...report.checks.map((c) => c.name.length));
  const out: string[] = [];
  for (const c of report.checks) {
    out.push(`${c.status.padEnd(4)} ${c.name.padEnd(width)}  ${c.message}`);
    if (c.fix && (c.status === "warn" || c.status === "fail")) {
      out.push(`${" ".repeat(5 + width + 2)}fix: ${c.fix}`);
    }
  }
  const count = (s: string) => report.checks.filter((c) => c.status === s).length;
  out.push(
    "",
    `doctor: ${report.checks.length} checks, ${count("fail")} failed, ${count("warn")} warning(s)` +
      (report.ok ? "" : " (exit 1)"),
  );
  return out.join("\n");
}

/** What a dead letter's headers say, on one line (errors cut to 100 characters). */
function deadLetterText(m: ReplayedMessage): string {
  const d = m.deadLetter;
  if (d === null) return "-";
  const error = d.error !== null && d.error.length > 100 ? `${d.error.slice(0, 99)}…` : d.error;
  return [
    d.outcome ?? "(no outcome)",
    d.attempts === null ? "" : ` after ${d.attempts} attempt(s)`,
    d.origin === null ? "" : ` at ${d.origin}`,
    error === null ? "" : `: ${error}`,
  ].join("");
}

/** Text of the `replay` command: the ranges, one line per message, then the summary. */
export function replayText(r: ReplayReport): string {
  const out = [
    `replay from ${r.fromTopic} to ${r.toTopic}` +
    (r.handler === null ? "" : `, handler ${r.handler} only`) + `, limit ${r.limit}` +
    (r.dryRun ? " (dry run: nothing is produced)" : ""),
    "",
    "offsets read, per partition (start inclusive, end exclusive):",
    ...r.ranges.map((p) =>
      `  partition ${p.partition}: ${p.start} to ${p.end}` + (p.start === p.end ? " (empty)" : "")
    ),
    "",
  ];
  if (r.messages.length > 0) {
    const head = ["source", ...(r.dryRun ? [] : ["target"]), "handler", "key", "bytes"];
    const rows = [[...head, "dead letter"]];
    for (const m of r.messages) {
      rows.push([
        `${m.partition}@${m.offset}`,
        ...(m.target === null ? [] : [`${r.toTopic}/${m.target.partition}@${m.target.offset}`]),
        m.handler ?? "(none)",
        m.key === null ? "(none)" : JSON.stringify(m.key) + (m.keyBase64 ? " (base64)" : ""),
        String(m.payloadBytes),
        deadLetterText(m),
      ]);
    }
    out.push(columns(rows), "");
  }
  const skipped = r.handler === null ? "" : `, skipped ${r.skipped} by --handler ${r.handler}`;
  out.push(
    r.dryRun
      ? `dry run: read ${r.read}, would produce ${r.messages.length}${skipped}; nothing produced`
      : `read ${r.read}, produced ${r.produced} to ${r.toTopic} (acks=all)${skipped}`,
  );
  if (r.limitReached) {
    const rest = r.ranges.filter((p) => p.resumeAt !== null)
      .map((p) => `partition ${p.partition} offset ${p.resumeAt}`);
    out.push(
      `limit of ${r.limit} reached: more messages match, not replayed from ${rest.join(", ")} ` +
        "on (run again with --partition P --start-offset O, or a larger --limit)",
    );
  }
  return out.join("\n");
}
