/**
 * What is safe to commit on one partition, when tasks start and end out of order.
 *
 * Every offset taken from Kafka is tracked until nothing more needs saying about it. The
 * committed offset is the lowest offset that must still run after a crash: a task waiting to
 * start, or an at-least-once task that has not reached its outcome. An at-most-once task that
 * started does not hold it back, so Kafka's own tools (`kafka-consumer-groups --describe`, lag
 * exporters, the PHP daemon after a rollback) see it as committed before it runs.
 *
 * The commit's metadata says what the next owner needs besides that offset: `s` lists the
 * at-most-once tasks that started and have not ended (below the committed offset too: their
 * end is unknown, and a new owner names each as lost), `f` the tasks above the committed
 * offset that are final. Offsets are runs of `[start - committed, length]`, so a start may be
 * negative. At-least-once tasks that started are in neither list, so they run again.
 *
 * The metadata is bounded by design: Kafka refuses a commit whose metadata exceeds the
 * broker's `offset.metadata.max.bytes` (4096 by default). At most {@link MAX_ACTIVE} offsets
 * of a partition may be started or final-but-uncommitted at once ({@link PartitionLedger.room}); the
 * dispatcher starts nothing more on a full partition until tasks end, so its own lists never
 * pass 2/3 of the limit, whatever the pattern. The last third carries offsets inherited from
 * the previous owner's metadata that this owner has not fetched yet; if they do not all fit,
 * the ones left out are reported ({@link PendingCommit.dropped}) because a second crash before
 * they are fetched would run them again.
 * @module
 */

/** What the previous owner's commit says about offsets at and above its committed offset. */
export interface SkipSet {
  /** At-most-once tasks an earlier owner started, end unknown (below the offset too). */
  started: Set<bigint>;
  /** Tasks an earlier owner finished (above the offset). */
  finished: Set<bigint>;
}

/** A commit to make: the offset and the metadata that goes with it. */
export interface LedgerCommit {
  offset: string;
  metadata: string;
}

/** A commit, and the inherited offsets its metadata had no room for. */
export interface PendingCommit extends LedgerCommit {
  /** Inherited offsets left out of the metadata (the previous owner's, not fetched yet). */
  dropped: number;
}

/** Kafka's default `offset.metadata.max.bytes`: the most the metadata may take. */
export const MAX_METADATA_BYTES = 4096;

/** The most one run `[-9223372036854775808,150],` can take. */
const MAX_RUN_BYTES = 27;

/** `{"v":1,"s":[],"f":[]}`. */
const ENVELOPE_BYTES = 21;

/**
 * Offsets of one partition that may be started or final-and-uncommitted at once. Each adds at
 * most one run to the metadata, so this many runs take at most 2/3 of the limit.
 */
export const MAX_ACTIVE = Math.floor(
  ((MAX_METADATA_BYTES - ENVELOPE_BYTES) * 2) / 3 / MAX_RUN_BYTES,
);

const VERSION = 1;

/** Offsets as runs of `[start - base, length]` (compact, exact), and their JSON size. */
class Runs {
  readonly runs: number[][] = [];
  /** Bytes of `JSON.stringify(this.runs)`. */
  bytes = 2;
  readonly #base: bigint;

  constructor(base: bigint) {
    this.#base = base;
  }

  /** The bytes the array would take with `offset` added. */
  bytesWith(offset: bigint): number {
    const d = Number(offset - this.#base);
    const last = this.runs.at(-1);
    if (last && last[0] + last[1] === d) {
      return this.bytes - digits(last[1]) + digits(last[1] + 1);
    }
    return this.bytes + runBytes(d, 1) + (this.runs.length > 0 ? 1 : 0);
  }

  add(offset: bigint): void {
    this.bytes = this.bytesWith(offset);
    const d = Number(offset - this.#base);
    const last = this.runs.at(-1);
    if (last && last[0] + last[1] === d) last[1]++;
    else this.runs.push([d, 1]);
  }
}

const digits = (n: number) => String(n).length;
const runBytes = (d: number, length: number) => 3 + digits(d) + digits(length);

function fromRuns(runs: unknown, base: bigint): Set<bigint> {
  const out = new Set<bigint>();
  if (!Array.isArray(runs)) return out;
  for (const run of runs) {
    if (!Array.isArray(run) || run.length !== 2) continue;
    const [start, length] = run.map(Number);
    if (!Number.isSafeInteger(start) || !Number.isSafeInteger(length)) continue;
    for (let i = 0; i < length; i++) out.add(base + BigInt(start + i));
  }
  return out;
}

/**
 * Read the skip set from a committed offset and its metadata. Metadata this runner did not
 * write (another tool, or none) gives an empty set.
 */
export function parseSkipSet(offset: string, metadata: string | null | undefined): SkipSet {
  const empty = { started: new Set<bigint>(), finished: new Set<bigint>() };
  if (!metadata || BigInt(offset) < 0n) return empty;
  try {
    const data = JSON.parse(metadata);
    if (data?.v !== VERSION) return empty;
    const base = BigInt(offset);
    return { started: fromRuns(data.s, base), finished: fromRuns(data.f, base) };
  } catch {
    return empty;
  }
}

interface Entry {
  state: "waiting" | "started" | "final";
  atMostOnce: boolean;
  /** Settled by the previous owner (a skip): carried in the metadata's last third. */
  inherited: boolean;
}

/** `{"v":1,"s":` + `,"f":` + `}`. */
const FIXED_BYTES = 17;

/** The ledger of one partition. */
export class PartitionLedger {
  /** Tracked offsets in ascending order (Kafka hands them out in order). */
  readonly #entries = new Map<bigint, Entry>();
  /** Tasks adopted from an earlier state of this partition (see {@link adopt}): a few. */
  readonly #adopted = new Map<bigint, Entry>();
  /** Offsets the previous owner settled, not fetched here yet, ascending. */
  readonly #inherited: Map<bigint, "started" | "finished">;
  /** Inherited at-most-once starts below the committed offset: they will not be fetched. */
  readonly #lostBelow: bigint[] = [];
  #watermark: bigint | null;
  /** The offset after the last one tracked, or null before any. */
  #next: bigint | null = null;
  /** Own (not inherited) entries that are started or final. */
  #active = 0;
  #lastCommitted: string | null = null;

  /**
   * @param committed the group's committed offset ("-1" when none) and its metadata, as the
   * previous owner left them. @default nothing inherited
   */
  constructor(committed?: { offset: string; metadata: string | null }) {
    const offset = BigInt(committed?.offset ?? "-1");
    const skip = parseSkipSet(offset.toString(), committed?.metadata);
    const kinds: Array<[bigint, "started" | "finished"]> = [];
    for (const o of skip.started) {
      if (o < offset) this.#lostBelow.push(o);
      else kinds.push([o, "started"]);
    }
    for (const o of skip.finished) if (o >= offset) kinds.push([o, "finished"]);
    kinds.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
    this.#inherited = new Map(kinds);
    this.#watermark = offset >= 0n ? offset : null;
  }

  /**
   * At-most-once tasks the previous owner started below its committed offset and never
   * finished: they are not fetched again, so they are named now. Empty after the first call.
   */
  takeLostBelow(): bigint[] {
    return this.#lostBelow.splice(0);
  }

  /** The offset a commit now would carry, or null before any. */
  get watermark(): bigint | null {
    return this.#watermark;
  }

  /**
   * How many more offsets may become started or final here ({@link MAX_ACTIVE} at once): at 0,
   * start nothing more on this partition until tasks end.
   */
  get room(): number {
    return MAX_ACTIVE - this.#active;
  }

  /**
   * If the previous owner settled `offset`, track it as final and say how ("started": it ran,
   * its end is unknown; "finished"); else null and nothing changes.
   */
  skip(offset: bigint): "started" | "finished" | null {
    const kind = this.#inherited.get(offset);
    if (kind === undefined) return null;
    this.#inherited.delete(offset);
    this.#track(offset, { state: "final", atMostOnce: true, inherited: true });
    return kind;
  }

  /** Start tracking `offset` (taken from Kafka in order), waiting to start. */
  add(offset: bigint, atMostOnce: boolean): void {
    this.#track(offset, { state: "waiting", atMostOnce, inherited: false });
  }

  /** Mark an offset started (an at-most-once one must not run again from here on). */
  started(offset: bigint): void {
    const entry = this.#entries.get(offset) ?? this.#adopted.get(offset);
    if (!entry || entry.state !== "waiting") return;
    entry.state = "started";
    this.#active++;
    this.#advance();
  }

  /** Mark an offset final (its outcome is logged, or it was rejected). */
  final(offset: bigint): void {
    const entry = this.#entries.get(offset) ?? this.#adopted.get(offset);
    if (!entry || entry.state === "final") return;
    if (entry.state === "waiting") this.#active++;
    entry.state = "final";
    this.#advance();
  }

  /**
   * True if `offset` was taken from Kafka here already (Kafka may deliver it again after a
   * rebalance or a restart of the consumer); then it counts as fetched again.
   */
  seen(offset: bigint): boolean {
    const seen = this.#entries.has(offset) || this.#adopted.has(offset) ||
      (this.#watermark !== null && offset < this.#watermark);
    if (seen && offset + 1n > (this.#next ?? this.#watermark ?? -1n)) {
      this.#next = offset + 1n;
      this.#advance();
    }
    return seen;
  }

  /**
   * Track a task this process started under an earlier state of the partition (before a
   * rebalance gave it back, or before a failed commit made the state be read again) and that
   * has not ended: it is this owner's, not a loss of the previous one. Call right after
   * construction, before any {@link add}, in ascending order.
   */
  adopt(offset: bigint, atMostOnce: boolean): void {
    const lost = this.#lostBelow.indexOf(offset);
    if (lost >= 0) this.#lostBelow.splice(lost, 1);
    this.#inherited.delete(offset);
    this.#adopted.set(offset, { state: "started", atMostOnce, inherited: false });
    this.#active++;
    this.#advance();
  }

  /**
   * Take over an offset an earlier state of this partition in this process saw finish, which
   * no commit may have recorded (the commit that would have failed): it is not named lost, and
   * it is skipped when fetched again. Call right after construction, before any {@link add}.
   */
  adoptFinished(offset: bigint): void {
    const lost = this.#lostBelow.indexOf(offset);
    if (lost >= 0) this.#lostBelow.splice(lost, 1);
    if (this.#watermark !== null && offset < this.#watermark) return; // committed already
    this.#inherited.set(offset, "finished");
  }

  #track(offset: bigint, entry: Entry): void {
    this.#entries.set(offset, entry);
    if (entry.state === "final" && !entry.inherited) this.#active++;
    this.#next = offset + 1n;
    this.#advance();
  }

  /** Move the watermark to the lowest offset that must run again; drop what it passed. */
  #advance(): void {
    let watermark = this.#next ?? this.#watermark;
    if (watermark === null) return;
    // Entries are ascending: drop the final ones up to the first that must run again (started
    // at-most-once ones are passed over and kept until they end). Cost: the entries before it.
    for (const [offset, entry] of this.#entries) {
      if (isBlocking(entry)) {
        watermark = offset;
        break;
      }
      if (entry.state === "final") {
        this.#entries.delete(offset);
        if (!entry.inherited) this.#active--;
      }
    }
    for (const [offset, entry] of this.#adopted) {
      if (isBlocking(entry) && offset < watermark) watermark = offset;
    }
    for (const [offset, entry] of this.#adopted) {
      if (entry.state === "final" && offset < watermark) {
        this.#adopted.delete(offset);
        this.#active--;
      }
    }
    this.#watermark = watermark;
  }

  /**
   * The commit that reflects the current state, or null if it equals the last one taken.
   * Call {@link committed} once the commit succeeded.
   */
  pendingCommit(): PendingCommit | null {
    const commit = this.snapshot();
    if (commit === null || `${commit.offset}|${commit.metadata}` === this.#lastCommitted) {
      return null;
    }
    return commit;
  }

  /** The commit that reflects the current state. */
  snapshot(): PendingCommit | null {
    if (this.#watermark === null) return null;
    const s = new Runs(this.#watermark);
    const f = new Runs(this.#watermark);
    // Own entries first: at most MAX_ACTIVE runs, within 2/3 of the limit by construction.
    const carried: Array<[bigint, "started" | "finished"]> = [];
    for (const [offset, entry] of [...this.#adopted, ...this.#entries]) {
      if (entry.inherited) carried.push([offset, "finished"]); // its skip was logged here
      else if (entry.state === "final") f.add(offset);
      else if (entry.state === "started" && entry.atMostOnce) s.add(offset);
    }
    // Then what the previous owner settled, as far as the limit allows.
    let dropped = 0;
    for (const list of [carried, this.#inherited]) {
      for (const [offset, kind] of list) {
        const runs = kind === "started" ? s : f;
        const other = kind === "started" ? f : s;
        if (
          dropped > 0 || runs.bytesWith(offset) + other.bytes + FIXED_BYTES > MAX_METADATA_BYTES
        ) {
          dropped++;
        } else runs.add(offset);
      }
    }
    const metadata = s.runs.length + f.runs.length === 0
      ? ""
      : JSON.stringify({ v: VERSION, s: s.runs, f: f.runs });
    return { offset: this.#watermark.toString(), metadata, dropped };
  }

  /** Record that `commit` is now in Kafka. */
  committed(commit: LedgerCommit): void {
    this.#lastCommitted = `${commit.offset}|${commit.metadata}`;
  }
}

/** An entry that holds the committed offset below it: it must run (again) after a crash. */
function isBlocking(entry: Entry): boolean {
  return entry.state === "waiting" || (entry.state === "started" && !entry.atMostOnce);
}
