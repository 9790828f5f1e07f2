/**
 * What the console reads from outside the runner's memory, on request only: consumer lag and
 * group members (admin), dead letters (read, and replayed, with the same code as
 * `main.ts replay`), and the functions folder.
 * @module
 */
import type { Admin, Kafka } from "kafkajs";
import { join } from "node:path";
import { type GroupLag, groupLag } from "../../ops/admin/lag.ts";
import { replay, type ReplayReport } from "../../ops/admin/replay.ts";
import { hasDefaultExport } from "../default_export.ts";
import type { FunctionConfig, FunctionConfigTable } from "../function_config.ts";
import type { RecentOutcome } from "../report/task_board.ts";

/** Options of {@link ConsoleData}. */
export interface ConsoleDataOptions {
  kafka: Kafka;
  /** A connected admin client. */
  admin: Admin;
  topic: string;
  groupId: string;
  deadLetterTopic: string | null;
  handlerHeader: string;
  functionsDir: string;
  functions: FunctionConfigTable;
  /** Dead letters listed at most. @default 200 */
  deadLetterLimit?: number;
}

/** A function as the Functions page shows it. */
export interface FunctionInfo {
  name: string;
  file: string;
  /** Its functions.json entry, or null. */
  config: Readonly<FunctionConfig> | null;
  /** Whether the file has a default export (read as text; null when it cannot be read). */
  hasDefaultExport: boolean | null;
  /** Its last outcome in the recent outcomes, or null. */
  last: RecentOutcome | null;
}

/** The console's reads from Kafka and disk. */
export class ConsoleData {
  readonly #o: ConsoleDataOptions;
  #lag: { at: number; value: Promise<GroupLag> } | null = null;
  #topicFound = false;

  constructor(options: ConsoleDataOptions) {
    this.#o = options;
  }

  /** The dead-letter topic, or null when dead letters are off. */
  get deadLetterTopic(): string | null {
    return this.#o.deadLetterTopic;
  }

  /**
   * Lag per partition and the group's members; asked of the broker at most every 2 s. Once the
   * topic was found, later asks skip the topic list (metadata of every topic in the cluster).
   */
  lag(): Promise<GroupLag> {
    const now = Date.now();
    if (!this.#lag || now - this.#lag.at > 2000) {
      const { groupId, topic } = this.#o;
      const value = groupLag(this.#o.admin, { groupId, topic, known: this.#topicFound });
      value.then(() => this.#topicFound = true, () => this.#lag = null); // an error is not kept
      this.#lag = { at: now, value };
    }
    return this.#lag.value;
  }

  /** The first dead letters (a dry run of replay over the dead-letter topic). */
  async deadLetters(): Promise<ReplayReport | null> {
    const { deadLetterTopic } = this.#o;
    if (!deadLetterTopic) return null;
    return await replay(this.#o.kafka, {
      fromTopic: deadLetterTopic,
      toTopic: this.#o.topic,
      handlerHeader: this.#o.handlerHeader,
      dryRun: true,
      limit: this.#o.deadLetterLimit ?? 200,
      idleTimeoutMs: 5000,
    });
  }

  /** Replay one dead letter to the task topic (`dryRun`: only say what would be replayed). */
  async replay(partition: number, offset: number, dryRun: boolean): Promise<ReplayReport> {
    const { deadLetterTopic } = this.#o;
    if (!deadLetterTopic) throw new TypeError("dead letters are off (DLQ_TOPIC is empty)");
    return await replay(this.#o.kafka, {
      fromTopic: deadLetterTopic,
      toTopic: this.#o.topic,
      handlerHeader: this.#o.handlerHeader,
      partition,
      startOffset: offset,
      endOffset: offset + 1,
      dryRun,
      limit: 1,
      idleTimeoutMs: 5000,
    });
  }

  /** The `.ts` files of the functions folder, with their configuration and last outcome. */
  async functions(recent: RecentOutcome[]): Promise<FunctionInfo[]> {
    const out: FunctionInfo[] = [];
    const dir = this.#o.functionsDir;
    try {
      for await (const entry of Deno.readDir(dir)) {
        if (!entry.name.endsWith(".ts") || entry.isDirectory) continue;
        const name = entry.name.slice(0, -3);
        const file = join(dir, entry.name);
        let exported: boolean | null = null;
        try {
          const info = await Deno.stat(file);
          if (info.size <= 1_048_576) exported = hasDefaultExport(await Deno.readTextFile(file));
        } catch {
          // Unreadable (a dangling link, no permission): shown as unknown.
        }
        out.push({
          name,
          file,
          config: this.#o.functions.get(name) ?? null,
          hasDefaultExport: exported,
          last: recent.find((r) => r.handler === name) ?? null,
        });
      }
    } catch (error) {
      throw new Error(`cannot list the functions folder ${dir}: ${(error as Error).message}`);
    }
    return out.sort((a, b) => a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
  }
}
