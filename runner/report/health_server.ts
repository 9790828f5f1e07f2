/**
 * The HTTP endpoint for operations: `/metrics`, `/healthz`, `/readyz`, and the console's
 * routes when one is given. It binds 127.0.0.1 unless told otherwise.
 * @module
 */
import type { RunnerMetrics } from "./metrics.ts";

/** Options of {@link HealthServer}. */
export interface HealthServerOptions {
  /** Port; 0 picks a free one. */
  port: number;
  /** Address to bind. @default "127.0.0.1" */
  hostname?: string;
  /** More routes (the console): answers null for a path that is not its own. @default none */
  routes?: { handle(request: Request): Promise<Response> | null };
  /** Metrics to expose. */
  metrics: RunnerMetrics;
  /** Readiness: connected to Kafka and holding partitions. Returns a reason when not ready. */
  ready: () => string | null;
}

/** A small HTTP server. `start()` / `stop()` are the lifecycle. */
export class HealthServer {
  readonly #options: HealthServerOptions;
  #server: Deno.HttpServer<Deno.NetAddr> | null = null;
  #stopped: Promise<void> | null = null;

  constructor(options: HealthServerOptions) {
    this.#options = options;
  }

  /** The bound port (after start). */
  get port(): number {
    if (!this.#server) throw new Error("HealthServer.port read before start()");
    return this.#server.addr.port;
  }

  /** Listen; resolves once bound. */
  start(): Promise<void> {
    const { promise, resolve } = Promise.withResolvers<void>();
    this.#server = Deno.serve(
      {
        hostname: this.#options.hostname ?? "127.0.0.1",
        port: this.#options.port,
        onListen: () => resolve(),
      },
      (request) => this.#handle(request),
    );
    return promise;
  }

  /** Stop listening. Idempotent. */
  stop(): Promise<void> {
    this.#stopped ??= this.#server?.shutdown() ?? Promise.resolve();
    return this.#stopped;
  }

  async #handle(request: Request): Promise<Response> {
    const routed = this.#options.routes?.handle(request);
    if (routed) return await routed;
    const { pathname } = new URL(request.url);
    switch (pathname) {
      case "/metrics": {
        try {
          const { body, contentType } = await this.#options.metrics.render();
          return new Response(body, { headers: { "content-type": contentType } });
        } catch (error) {
          return new Response(`cannot collect metrics: ${(error as Error).message}\n`, {
            status: 500,
          });
        }
      }
      case "/healthz":
        return new Response("ok\n");
      case "/readyz": {
        const reason = this.#options.ready();
        return reason === null
          ? new Response("ready\n")
          : new Response(`not ready: ${reason}\n`, { status: 503 });
      }
      default:
        return new Response(
          `not found: try /metrics, /healthz or /readyz${
            this.#options.routes ? ", or / (the console)" : ""
          }\n`,
          { status: 404 },
        );
    }
  }
}
