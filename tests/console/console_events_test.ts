/**
 * The console's live stream without a browser: a page that lists no tasks costs the runner
 * nothing per task; one that lists them gets the tasks' starts and ends in batches.
 */
import { ConsoleAccess } from "../../runner/console/console_access.ts";
import type { ConsoleData } from "../../runner/console/console_data.ts";
import { ConsoleServer } from "../../runner/console/console_server.ts";
import { TaskBoard } from "../../runner/report/task_board.ts";
import { assertEquals } from "../helpers/assert.ts";

const TASK = {
  handler: "h",
  topic: "t",
  partition: 0,
  offset: "7",
  key: null,
  attempt: 1,
  timeoutMs: 1000,
};

/** A console server on `board`, with nothing else running and no Kafka behind it. */
function serverOn(board: TaskBoard): ConsoleServer {
  return new ConsoleServer({
    state: {
      running: 0,
      maxRunning: 1,
      saturated: false,
      prewarmedIdle: 0,
      warmProcesses: 0,
      board,
    },
    data: {} as ConsoleData,
    access: new ConsoleAccess({ token: null }),
    tickMs: 60_000,
  });
}

/** The event names a stream of `path` sends within `ms` while a task starts and ends. */
async function eventsOf(path: string, ms: number): Promise<string[]> {
  const board = new TaskBoard();
  const server = serverOn(board);
  const response = await server.handle(new Request(`http://127.0.0.1${path}`))!;
  const reader = response.body!.pipeThrough(new TextDecoderStream()).getReader();
  board.started(TASK);
  board.stopped("t/0@7");
  board.ended({
    ...TASK,
    outcome: "ok",
    durationMs: 1,
    reason: "exit 0",
    attempts: 1,
    error: null,
  });
  let text = "";
  const until = Date.now() + ms;
  while (Date.now() < until) {
    const next = await Promise.race([
      reader.read(),
      new Promise<null>((resolve) => setTimeout(() => resolve(null), until - Date.now())),
    ]);
    if (next === null || next.done) break;
    text += next.value;
  }
  server.close();
  await reader.cancel().catch(() => {});
  return [...text.matchAll(/^event: (\w+)$/gm)].map((m) => m[1]);
}

Deno.test("the live stream sends task batches only to a page that asks for them", async () => {
  assertEquals(await eventsOf("/api/events", 600), ["overview"], "no tasks asked for");
  assertEquals(await eventsOf("/api/events?tasks=1", 600), ["overview", "batch"]);
});

Deno.test("a browser that goes away stops its stream: no listener is left on the board", async () => {
  let listeners = 0;
  class CountingBoard extends TaskBoard {
    override subscribe(listener: Parameters<TaskBoard["subscribe"]>[0]): () => void {
      listeners++;
      const unsubscribe = super.subscribe(listener);
      return () => {
        listeners--;
        return unsubscribe();
      };
    }
  }
  const server = serverOn(new CountingBoard());
  const http = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    (request) => server.handle(request) ?? new Response("not found", { status: 404 }),
  );
  try {
    const gone = new AbortController();
    const response = await fetch(`http://127.0.0.1:${http.addr.port}/api/events?tasks=1`, {
      signal: gone.signal,
    });
    await response.body!.getReader().read(); // the first overview: the stream is open
    assertEquals(listeners, 1, "listening while the page is open");
    gone.abort();
    const until = Date.now() + 5000;
    while (listeners > 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
    assertEquals(listeners, 0, "the stream ended with the connection");
  } finally {
    server.close();
    await http.shutdown();
  }
});
