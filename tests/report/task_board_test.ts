/** The console's board: running tasks, a bounded ring of outcomes with their output, buckets. */
import { assertEquals } from "../helpers/assert.ts";
import { type BoardEvent, TaskBoard } from "../../runner/report/task_board.ts";

const task = (offset: string) => ({
  handler: "h",
  topic: "t",
  partition: 0,
  offset,
  key: null,
  attempt: 1,
  timeoutMs: 1000,
});
const outcome = (offset: string) => ({
  outcome: "failed" as const,
  handler: "h",
  topic: "t",
  partition: 0,
  offset,
  durationMs: 5,
  reason: "exit 3",
  attempts: 1,
  error: null,
});

Deno.test("a task is running from its start to its attempt's end, then has its outcome", () => {
  let now = 1_000_000;
  const board = new TaskBoard({ recent: 3, now: () => now });
  board.started(task("1"));
  board.output("t/0@1", "stdout", "hello");
  assertEquals(board.running().map((t) => [t.offset, t.startedAt]), [["1", 1_000_000]]);
  now += 50;
  board.stopped("t/0@1");
  assertEquals(board.running(), []);
  board.ended(outcome("1"));
  const [r] = board.recent();
  assertEquals([r.id, r.endedAt, r.output], [1, 1_000_050, [{ stream: "stdout", line: "hello" }]]);
});

Deno.test("the ring keeps the newest outcomes only, newest first", () => {
  const board = new TaskBoard({ recent: 3 });
  for (let i = 0; i < 5; i++) board.ended(outcome(String(i)));
  assertEquals(board.recent().map((r) => r.offset), ["4", "3", "2"]);
});

Deno.test("output is bounded per task", () => {
  const board = new TaskBoard();
  board.started(task("1"));
  for (let i = 0; i < 50; i++) board.output("t/0@1", "stderr", `line ${i}`);
  board.stopped("t/0@1");
  board.ended(outcome("1"));
  const lines = board.recent()[0].output;
  assertEquals([lines.length, lines[0].line, lines.at(-1)!.line], [20, "line 30", "line 49"]);
});

Deno.test("subscribers hear starts and ends; buckets count outcomes by handler", () => {
  const board = new TaskBoard({ now: () => 123_456 });
  const events: BoardEvent[] = [];
  const off = board.subscribe((e) => events.push(e));
  board.started(task("1"));
  board.stopped("t/0@1");
  board.ended(outcome("1"));
  off();
  board.ended(outcome("2"));
  assertEquals(events.map((e) => e.kind), ["started", "stopped", "ended"]);
  assertEquals(board.buckets(), [{ at: 120_000, counts: { h: { failed: 2 } } }]);
});

Deno.test("kept output is bounded in characters too: the newest lines stay", () => {
  const board = new TaskBoard();
  board.started(task("1"));
  board.output("t/0@1", "stdout", "x".repeat(5000));
  board.output("t/0@1", "stdout", "y".repeat(1500));
  board.output("t/0@1", "stdout", "z".repeat(400));
  board.stopped("t/0@1");
  board.ended(outcome("1"));
  const lines = board.recent()[0].output.map((o) => o.line);
  assertEquals(lines, ["y".repeat(1500), "z".repeat(400)]);
});
