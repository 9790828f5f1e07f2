/**
 * The operator console's HTTP side, served on the metrics listener: the page and its two
 * static files (`static/`, shipped in the repository: no build step, no CDN), a JSON API the
 * page reads, and a server-sent event stream of task starts and ends. It costs the runner
 * nothing while no page is open: the board is read on request and the stream subscribes only
 * while it is connected.
 * @module
 */
import { positionOf, type RunnerState } from "../report/task_board.ts";
import { type ConsoleAccess, isLoopback } from "./console_access.ts";
import type { ConsoleData } from "./console_data.ts";
import type { Outcome } from "../report/task_reporter.ts";

/** Options of a {@link ConsoleServer}. */
export interface ConsoleServerOptions {
  state: RunnerState;
  data: ConsoleData;
  access: ConsoleAccess;
  /** Interval of the overview figures on the event stream. @default 2000 */
  tickMs?: number;
  /**
   * Answer only requests whose `Host` is a loopback name or address (set when the listener
   * binds loopback): a page of another site that rebinds its own name to 127.0.0.1 (DNS
   * rebinding) is refused, so it cannot read payloads. @default false
   */
  loopbackOnly?: boolean;
}

const STATIC: Record<string, { file: string; type: string }> = {
  "/": { file: "index.html", type: "text/html; charset=utf-8" },
  "/console/app.js": { file: "app.js", type: "text/javascript; charset=utf-8" },
  "/console/app.css": { file: "app.css", type: "text/css; charset=utf-8" },
};

/**
 * Nothing but this origin's own files and requests: even markup slipped past the escaping
 * would run no script and load no image from elsewhere.
 */
const SECURITY_HEADERS = {
  "content-security-policy": "default-src 'none'; script-src 'self'; style-src 'self'; " +
    "img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; " +
    "frame-ancestors 'none'",
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
  "cache-control": "no-store",
};

const OUTCOMES = new Set(["ok", "failed", "timeout", "rejected"]);

/** How often live changes go to a connected page, in ms. */
const BATCH_MS = 250;

/** Outcomes one batch carries at most (the newest; the Recent page reloads the rest). */
const MAX_BATCH_OUTCOMES = 50;

/** The console's routes. {@link handle} answers null for paths that are not the console's. */
export class ConsoleServer {
  readonly #o: ConsoleServerOptions;
  readonly #files = new Map<string, string>();
  /** Ends each open event stream. */
  readonly #streams = new Set<() => void>();

  constructor(options: ConsoleServerOptions) {
    this.#o = options;
  }

  /** Read the static files (once, at start-up). */
  async load(): Promise<void> {
    for (const { file } of Object.values(STATIC)) {
      this.#files.set(file, await Deno.readTextFile(new URL(`./static/${file}`, import.meta.url)));
    }
  }

  /** End the open event streams, so that the listener can shut down. */
  close(): void {
    for (const end of [...this.#streams]) end();
  }

  /** Answer a console request, or null when `request` is not for the console. */
  handle(request: Request): Promise<Response> | null {
    const url = new URL(request.url);
    const asset = STATIC[url.pathname];
    if (!asset && !url.pathname.startsWith("/api/")) return null;
    if (this.#o.loopbackOnly && !isLoopback(hostOf(request.headers.get("host") ?? ""))) {
      return Promise.resolve(
        text(421, "the console answers only at 127.0.0.1 or localhost (this Host is another name)"),
      );
    }
    if (asset) {
      if (request.method !== "GET") return Promise.resolve(text(405, "GET only"));
      return Promise.resolve(
        new Response(this.#files.get(asset.file) ?? "", {
          headers: { ...SECURITY_HEADERS, "content-type": asset.type },
        }),
      );
    }
    return this.#api(request, url).catch((error) =>
      json({ error: `the console could not answer: ${(error as Error).message}` }, 502)
    );
  }

  async #api(request: Request, url: URL): Promise<Response> {
    const { state, data, access } = this.#o;
    const path = url.pathname.slice("/api/".length);
    if (path === "replay") return await this.#replay(request);
    if (request.method !== "GET") return text(405, "GET only");
    switch (path) {
      case "session":
        return json({
          csrf: access.csrf,
          actions: access.actionsEnabled,
          deadLetterTopic: data.deadLetterTopic,
        });
      case "overview":
        return json(this.#overview());
      case "lag":
        return json(await data.lag());
      case "running":
        return json(state.board.running());
      case "recent": {
        const handler = url.searchParams.get("handler");
        const outcome = url.searchParams.get("outcome");
        if (outcome && !OUTCOMES.has(outcome)) {
          return json({ error: `outcome must be one of ${[...OUTCOMES].join(", ")}` }, 400);
        }
        return json(
          state.board.recent().filter((r) =>
            (!handler || r.handler === handler) && (!outcome || r.outcome === outcome as Outcome)
          ),
        );
      }
      case "dead-letters": {
        const report = await data.deadLetters();
        return json(report ?? { error: "dead letters are off (DLQ_TOPIC is empty)" });
      }
      case "functions":
        return json(await data.functions(state.board.recent()));
      case "events":
        return this.#events(request);
      default:
        return json({ error: `no such console API: /api/${path}` }, 404);
    }
  }

  #overview() {
    const { state } = this.#o;
    const buckets = state.board.buckets();
    const last = buckets.at(-1);
    let lastCount = 0;
    for (const counts of Object.values(last?.counts ?? {})) {
      for (const n of Object.values(counts)) lastCount += n ?? 0;
    }
    return {
      running: state.running,
      maxRunning: state.maxRunning,
      saturated: state.saturated,
      prewarmedIdle: state.prewarmedIdle,
      warmProcesses: state.warmProcesses,
      buckets,
      /** Over the latest ten-second bucket. */
      tasksPerSecond: lastCount / 10,
      now: Date.now(),
    };
  }

  /**
   * Server-sent events while connected: `overview` every tick, and with `?tasks=1` (the pages
   * that list tasks) `batch`: tasks started, stopped and ended since the last one, at most every
   * {@link BATCH_MS}. Without it nothing is done per task for this page.
   */
  #events(request: Request): Response {
    const withTasks = new URL(request.url).searchParams.get("tasks") === "1";
    const encoder = new TextEncoder();
    let close = () => {};
    const body = new ReadableStream<Uint8Array>({
      start: (controller) => {
        const send = (event: string, value: unknown) => {
          try {
            controller.enqueue(
              encoder.encode(`event: ${event}\ndata: ${JSON.stringify(value)}\n\n`),
            );
          } catch {
            close();
          }
        };
        // Changes go out at most every BATCH_MS as one `batch` event (a task that starts and
        // ends within it is sent once, as ended): the cost per task stays a map update here,
        // and the page redraws a few times a second, whatever the task rate.
        const started = new Map<string, unknown>();
        const stopped = new Set<string>();
        let ended: unknown[] = [];
        let flush: ReturnType<typeof setTimeout> | undefined;
        const flushSoon = () => {
          flush ??= setTimeout(() => {
            flush = undefined;
            send("batch", { started: [...started.values()], stopped: [...stopped], ended });
            started.clear();
            stopped.clear();
            ended = [];
          }, BATCH_MS);
        };
        const unsubscribe = !withTasks ? () => {} : this.#o.state.board.subscribe((e) => {
          if (e.kind === "started") {
            const key = positionOf(e.task);
            stopped.delete(key);
            started.set(key, e.task);
          } else if (e.kind === "stopped") {
            if (!started.delete(e.position)) stopped.add(e.position);
          } else {
            ended.push(e.outcome);
            if (ended.length > MAX_BATCH_OUTCOMES) ended = ended.slice(-MAX_BATCH_OUTCOMES);
          }
          flushSoon();
        });
        const timer = setInterval(() => send("overview", this.#overview()), this.#o.tickMs ?? 2000);
        close = () => {
          unsubscribe();
          clearInterval(timer);
          clearTimeout(flush);
          this.#streams.delete(end);
        };
        const end = () => {
          close();
          try {
            controller.close();
          } catch {
            // Already closed by the browser.
          }
        };
        this.#streams.add(end);
        send("overview", this.#overview());
      },
      cancel: () => close(),
    });
    return new Response(body, {
      headers: { ...SECURITY_HEADERS, "content-type": "text/event-stream" },
    });
  }

  async #replay(request: Request): Promise<Response> {
    const refusal = this.#o.access.checkAction(request);
    if (refusal) return json({ error: refusal.message }, refusal.status);
    let body: { partition?: unknown; offset?: unknown; dryRun?: unknown };
    try {
      body = await request.json();
    } catch {
      return json({ error: "the body must be JSON: {partition, offset, dryRun}" }, 400);
    }
    const { partition, offset, dryRun } = body;
    if (!Number.isSafeInteger(partition) || (partition as number) < 0) {
      return json({ error: `partition must be an integer >= 0, got ${String(partition)}` }, 400);
    }
    if (!Number.isSafeInteger(offset) || (offset as number) < 0) {
      return json({ error: `offset must be an integer >= 0, got ${String(offset)}` }, 400);
    }
    if (typeof dryRun !== "boolean") {
      return json({ error: "dryRun must be true or false: a dry run comes first" }, 400);
    }
    return json(await this.#o.data.replay(partition as number, offset as number, dryRun));
  }
}

/** The host name of a `Host` header, without its port (`[::1]:80` → `[::1]`). */
function hostOf(header: string): string {
  const end = header.startsWith("[") ? header.indexOf("]") + 1 : header.lastIndexOf(":");
  return end > 0 ? header.slice(0, end) : header;
}

function json(value: unknown, status = 200): Response {
  return new Response(JSON.stringify(value), {
    status,
    headers: { ...SECURITY_HEADERS, "content-type": "application/json" },
  });
}

function text(status: number, message: string): Response {
  return new Response(`${message}\n`, { status, headers: SECURITY_HEADERS });
}
