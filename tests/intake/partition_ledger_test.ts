import { assert, assertEquals } from "../helpers/assert.ts";
import { parseSkipSet, PartitionLedger } from "../../runner/intake/partition_ledger.ts";

Deno.test("the watermark waits for final outcomes; started at-most-once tasks are listed", () => {
  const ledger = new PartitionLedger();
  ledger.add(10n, false); // at-least-once
  ledger.add(11n, true); // at-most-once
  ledger.add(12n, false);
  ledger.add(13n, true); // at-most-once, still waiting
  ledger.started(10n);
  ledger.started(11n);
  assertEquals(ledger.watermark, 10n);
  const commit = ledger.pendingCommit()!;
  assertEquals(commit.offset, "10");
  const skip = parseSkipSet(commit.offset, commit.metadata);
  assertEquals([...skip.started], [11n], "only the started at-most-once task must not run again");
  assertEquals([...skip.finished], []);

  ledger.committed(commit);
  assertEquals(ledger.pendingCommit(), null, "nothing changed since the last commit");
  ledger.final(12n);
  const next = parseSkipSet("10", ledger.pendingCommit()!.metadata);
  assertEquals([...next.finished], [12n]);

  ledger.final(10n);
  ledger.final(11n);
  assertEquals(ledger.watermark, 13n);
  assertEquals(ledger.pendingCommit(), { offset: "13", metadata: "" });
  assert(ledger.has(11n) && ledger.has(13n) && !ledger.has(14n));
});

Deno.test("metadata stays small: runs of offsets", () => {
  const ledger = new PartitionLedger();
  ledger.add(0n, false);
  for (let i = 1n; i <= 1000n; i++) {
    ledger.add(i, false);
    ledger.started(i);
    ledger.final(i);
  }
  const commit = ledger.pendingCommit()!;
  assertEquals(commit.offset, "0");
  assert(commit.metadata.length < 40, commit.metadata);
  assertEquals(parseSkipSet("0", commit.metadata).finished.size, 1000);
});

Deno.test("foreign or missing metadata means nothing to skip", () => {
  assertEquals(parseSkipSet("5", "").started.size, 0);
  assertEquals(parseSkipSet("5", "not json").finished.size, 0);
  assertEquals(parseSkipSet("5", '{"v":2,"s":[[0,1]]}').started.size, 0);
});
