import { assert, assertEquals } from "../helpers/assert.ts";
import {
  MAX_ACTIVE,
  MAX_METADATA_BYTES,
  parseSkipSet,
  PartitionLedger,
} from "../../runner/intake/partition_ledger.ts";

Deno.test("the committed offset moves past started at-most-once tasks; waiting and at-least-once ones hold it", () => {
  const ledger = new PartitionLedger();
  ledger.add(10n, true); // at-most-once
  ledger.add(11n, false); // at-least-once
  ledger.add(12n, true); // at-most-once
  ledger.add(13n, true); // at-most-once, still waiting
  assertEquals(ledger.watermark, 10n, "nothing started: everything must still run");
  ledger.started(10n);
  assertEquals(ledger.watermark, 11n, "a started at-most-once task is committed as done");
  ledger.started(11n);
  ledger.started(12n);
  assertEquals(ledger.watermark, 11n, "a running at-least-once task must run again after a crash");
  const commit = ledger.pendingCommit()!;
  assertEquals(commit.offset, "11");
  const skip = parseSkipSet(commit.offset, commit.metadata);
  assertEquals([...skip.started], [10n, 12n], "started at-most-once tasks, below the offset too");
  assertEquals([...skip.finished], []);

  ledger.committed(commit);
  assertEquals(ledger.pendingCommit(), null, "nothing changed since the last commit");
  ledger.final(12n);
  const next = parseSkipSet("11", ledger.pendingCommit()!.metadata);
  assertEquals([...next.finished], [12n]);
  assertEquals([...next.started], [10n]);

  ledger.final(11n);
  assertEquals(ledger.watermark, 13n);
  ledger.final(10n);
  assertEquals(ledger.snapshot(), { offset: "13", metadata: "", dropped: 0 });
  ledger.started(13n);
  assertEquals(ledger.snapshot()?.offset, "14");
  assert(ledger.seen(11n) && ledger.seen(13n) && !ledger.seen(14n));
});

Deno.test("gaps in the offsets (transaction markers, compaction) do not stall the committed offset", () => {
  const ledger = new PartitionLedger({ offset: "0", metadata: null });
  ledger.add(0n, false);
  ledger.add(5n, false);
  ledger.final(0n);
  assertEquals(ledger.watermark, 5n);
  ledger.final(5n);
  assertEquals(ledger.watermark, 6n);
});

Deno.test("metadata stays small: runs of offsets", () => {
  const ledger = new PartitionLedger();
  ledger.add(0n, false);
  for (let i = 1n; i <= 90n; i++) {
    ledger.add(i, false);
    ledger.started(i);
    ledger.final(i);
  }
  const commit = ledger.pendingCommit()!;
  assertEquals(commit.offset, "0");
  assert(commit.metadata.length < 40, commit.metadata);
  assertEquals(parseSkipSet("0", commit.metadata).finished.size, 90);
});

Deno.test("worst case: MAX_ACTIVE alternating offsets far from the committed offset fit Kafka's default limit", () => {
  // Deltas as large as JSON numbers hold exactly, every other offset still waiting (at-least-once, holding the
  // committed offset far below), the others alternately started at-most-once and finished.
  const base = BigInt(Number.MAX_SAFE_INTEGER) - 1000n;
  const ledger = new PartitionLedger({ offset: "0", metadata: null });
  ledger.add(0n, false); // holds the committed offset at 0: deltas of 16 digits
  let offset = base;
  for (let i = 0; ledger.room > 0; i++) {
    ledger.add(offset, i % 2 === 0);
    ledger.started(offset);
    if (i % 2 === 1) ledger.final(offset);
    ledger.add(offset + 1n, false); // a gap between runs
    offset += 2n;
  }
  assertEquals(ledger.room, 0);
  const commit = ledger.snapshot()!;
  assert(
    commit.metadata.length <= (MAX_METADATA_BYTES * 2) / 3,
    `own runs take ${commit.metadata.length} bytes`,
  );
  const skip = parseSkipSet(commit.offset, commit.metadata);
  assertEquals(skip.started.size + skip.finished.size, MAX_ACTIVE);
});

Deno.test("a new owner carries the offsets it inherited until it fetches them, within the limit", () => {
  const previous = new PartitionLedger({ offset: "100", metadata: null });
  previous.add(100n, false); // waiting: holds the offset
  previous.add(101n, true);
  previous.started(101n);
  previous.add(102n, false);
  previous.started(102n);
  previous.final(102n);
  const left = previous.snapshot()!;
  assertEquals(left.offset, "100");

  const next = new PartitionLedger(left);
  // Nothing fetched yet: a commit now must still protect 101 and 102.
  const carried = parseSkipSet(next.snapshot()!.offset, next.snapshot()!.metadata);
  assertEquals([...carried.started], [101n]);
  assertEquals([...carried.finished], [102n]);
  next.add(100n, true);
  next.started(100n);
  assertEquals(next.skip(101n), "started");
  assertEquals(next.skip(102n), "finished");
  assertEquals(next.skip(103n), null);
  assertEquals(next.snapshot()?.offset, "103");
});

Deno.test("inherited offsets beyond the limit are left out and counted, never silently", () => {
  const runs = Array.from({ length: 600 }, (_, i) => [i * 2, 1]);
  const metadata = JSON.stringify({ v: 1, s: [], f: runs });
  const ledger = new PartitionLedger({ offset: "0", metadata });
  const commit = ledger.snapshot()!;
  assert(commit.metadata.length <= MAX_METADATA_BYTES, `${commit.metadata.length} bytes`);
  const kept = parseSkipSet(commit.offset, commit.metadata).finished.size;
  assertEquals(kept + commit.dropped, 600);
  assert(commit.dropped > 0);
});

Deno.test("foreign or missing metadata means nothing to skip", () => {
  assertEquals(parseSkipSet("5", "").started.size, 0);
  assertEquals(parseSkipSet("5", "not json").finished.size, 0);
  assertEquals(parseSkipSet("5", '{"v":2,"s":[[0,1]]}').started.size, 0);
});
