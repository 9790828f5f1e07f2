/**
 * What is safe to commit on one partition, when tasks start and end out of order.
 *
 * Every offset taken from Kafka is tracked until it is *final* (a task reached its outcome, a
 * rejected message was logged). The committed offset is the watermark: the lowest offset that
 * is not final. Offsets above it that must not run again travel in the commit's metadata:
 * `s` lists at-most-once tasks that started (committed before they start; their end is
 * unknown), `f` tasks that finished. After a crash or a rebalance the next owner skips exactly
 * those, and can name the `s` ones as lost rather than lose them silently. At-least-once tasks
 * that started are in neither list, so they run again.
 * @module
 */

/** The state of one tracked offset. */
export type EntryState = "waiting" | "started" | "final";

/** Offsets above the watermark a previous owner made safe, read from the commit metadata. */
export interface SkipSet {
  /** Started by an earlier owner (at-most-once), end unknown. */
  started: Set<bigint>;
  /** Finished by an earlier owner. */
  finished: Set<bigint>;
}

/** A commit to make: the watermark and the metadata that goes with it. */
export interface LedgerCommit {
  offset: string;
  metadata: string;
}

const VERSION = 1;

/** Encode sorted offsets above `base` as runs of `[start - base, length]` (compact, exact). */
function toRuns(offsets: bigint[], base: bigint): number[][] {
  const runs: number[][] = [];
  for (const o of offsets) {
    const d = Number(o - base);
    const last = runs.at(-1);
    if (last && last[0] + last[1] === d) last[1]++;
    else runs.push([d, 1]);
  }
  return runs;
}

function fromRuns(runs: unknown, base: bigint): Set<bigint> {
  const out = new Set<bigint>();
  if (!Array.isArray(runs)) return out;
  for (const run of runs) {
    if (!Array.isArray(run) || run.length !== 2) continue;
    const [start, length] = run.map(Number);
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

/** The ledger of one partition. */
export class PartitionLedger {
  readonly #entries = new Map<bigint, { state: EntryState; atMostOnce: boolean }>();
  #watermark: bigint | null = null;
  #lastCommitted: string | null = null;

  /** Offsets tracked and not yet below the watermark. */
  get size(): number {
    return this.#entries.size;
  }

  /** The lowest offset that is not final (the offset to commit), or null before any. */
  get watermark(): bigint | null {
    return this.#watermark;
  }

  /** Start tracking `offset` (taken from Kafka in order). */
  add(offset: bigint, atMostOnce: boolean): void {
    if (this.#watermark === null) this.#watermark = offset;
    this.#entries.set(offset, { state: "waiting", atMostOnce });
  }

  /** Mark an offset started (an at-most-once one must not run again from here on). */
  started(offset: bigint): void {
    const entry = this.#entries.get(offset);
    if (entry && entry.state === "waiting") entry.state = "started";
    this.#advance();
  }

  /** Mark an offset final. */
  final(offset: bigint): void {
    const entry = this.#entries.get(offset);
    if (entry) entry.state = "final";
    this.#advance();
  }

  /** True if `offset` was handled here already (tracked, or below the watermark). */
  has(offset: bigint): boolean {
    return this.#entries.has(offset) || (this.#watermark !== null && offset < this.#watermark);
  }

  #advance(): void {
    if (this.#watermark === null) return;
    while (true) {
      const entry = this.#entries.get(this.#watermark);
      if (!entry || entry.state !== "final") break;
      this.#entries.delete(this.#watermark);
      this.#watermark++;
    }
  }

  /**
   * The commit that reflects the current state, or null if it equals the last one taken.
   * Call {@link committed} once the commit succeeded.
   */
  pendingCommit(): LedgerCommit | null {
    const commit = this.snapshot();
    if (commit === null || `${commit.offset}|${commit.metadata}` === this.#lastCommitted) {
      return null;
    }
    return commit;
  }

  /** The commit that reflects the current state. */
  snapshot(): LedgerCommit | null {
    if (this.#watermark === null) return null;
    const started: bigint[] = [];
    const finished: bigint[] = [];
    for (const [offset, entry] of [...this.#entries].sort((a, b) => (a[0] < b[0] ? -1 : 1))) {
      if (entry.state === "final") finished.push(offset);
      else if (entry.state === "started" && entry.atMostOnce) started.push(offset);
    }
    const metadata = started.length + finished.length === 0 ? "" : JSON.stringify({
      v: VERSION,
      s: toRuns(started, this.#watermark),
      f: toRuns(finished, this.#watermark),
    });
    return { offset: this.#watermark.toString(), metadata };
  }

  /** Record that `commit` is now in Kafka. */
  committed(commit: LedgerCommit): void {
    this.#lastCommitted = `${commit.offset}|${commit.metadata}`;
  }

  /** Bytes the metadata would take now (Kafka's default limit is 4096). */
  metadataBytes(): number {
    return this.snapshot()?.metadata.length ?? 0;
  }
}
