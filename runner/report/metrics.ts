/**
 * Prometheus metrics of a runner (prom-client), kept apart from the logs.
 * @module
 */
import type { Admin } from "kafkajs";
import client from "prom-client";
import type { Outcome } from "./task_reporter.ts";
import { WAIT_REASONS, type WaitReason } from "../dispatch/flow_control.ts";

/** What the metrics read from the runner at scrape time. */
export interface RunnerGauges {
  /** Live handler processes. */
  readonly running: number;
  /** The cap. */
  readonly maxRunning: number;
  /** True while fetching waits for a free slot. */
  readonly saturated: boolean;
  /** Warm processes alive (functions with `isolation: "function"`). */
  readonly warmProcesses: number;
  /** Idle prewarmed children (PREWARM, functions.json `prewarm`). */
  readonly prewarmedIdle: number;
  /** Tasks waiting without a slot, by reason (flow control). */
  waitingByReason?(): Record<WaitReason, number>;
}

/** Options of {@link RunnerMetrics}. */
export interface RunnerMetricsOptions {
  /** A connected admin client, for consumer lag; without it no lag is reported. @default none */
  admin?: Admin;
  /** Task topic (for lag). */
  topic: string;
  /** Consumer group (for lag). */
  groupId: string;
}

/** The registry and the instruments the runner updates. */
export class RunnerMetrics {
  readonly registry = new client.Registry();
  readonly #tasks: client.Counter<"handler" | "outcome">;
  readonly #duration: client.Histogram<"handler" | "outcome">;
  readonly #spawnFailures: client.Counter<"handler">;
  readonly #waited: client.Histogram<"reason">;

  constructor(options: RunnerMetricsOptions) {
    const registers = [this.registry];
    const { admin, topic, groupId } = options;
    this.#tasks = new client.Counter({
      name: "task_runner_tasks_total",
      help: "Tasks that reached a final outcome, by handler and outcome.",
      labelNames: ["handler", "outcome"],
      registers,
    });
    this.#duration = new client.Histogram({
      name: "task_runner_task_duration_seconds",
      help: "Time from spawn to exit of handler processes.",
      labelNames: ["handler", "outcome"],
      buckets: [0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300],
      registers,
    });
    this.#spawnFailures = new client.Counter({
      name: "task_runner_spawn_failures_total",
      help: "Handler processes that could not be started.",
      labelNames: ["handler"],
      registers,
    });
    this.#waited = new client.Histogram({
      name: "task_runner_task_wait_seconds",
      help: "Time tasks waited before they started, by what they waited for last.",
      labelNames: ["reason"],
      buckets: [0.01, 0.05, 0.1, 0.5, 1, 5, 10, 60, 300, 900],
      registers,
    });
    new client.Gauge({
      name: "task_runner_resident_memory_bytes",
      help: "Resident set size of the runner process (children not included).",
      registers,
      collect() {
        this.set(Deno.memoryUsage().rss);
      },
    });
    new client.Gauge({
      name: "task_runner_heap_used_bytes",
      help: "V8 heap in use by the runner process.",
      registers,
      collect() {
        this.set(Deno.memoryUsage().heapUsed);
      },
    });
    if (admin) {
      new client.Gauge({
        name: "task_runner_consumer_lag",
        help: "End offset minus the group's committed offset, per partition of the task topic.",
        labelNames: ["topic", "partition"],
        registers,
        async collect() {
          const [ends, [committed]] = await Promise.all([
            admin.fetchTopicOffsets(topic),
            admin.fetchOffsets({ groupId, topics: [topic] }),
          ]);
          const done = new Map(committed.partitions.map((p) => [p.partition, BigInt(p.offset)]));
          this.reset();
          for (const end of ends) {
            const high = BigInt(end.high);
            const at = done.get(end.partition) ?? -1n;
            // No commit yet (-1): everything from the log start is still to do.
            const lag = at < 0n ? high - BigInt(end.low) : high - at;
            this.set({ topic, partition: String(end.partition) }, Number(lag));
          }
        },
      });
    }
  }

  /** Report the runner's live state (children, cap, paused) at each scrape. Call once. */
  watch(gauges: RunnerGauges): void {
    const registers = [this.registry];
    new client.Gauge({
      name: "task_runner_live_children",
      help: "Handler processes running now.",
      registers,
      collect() {
        this.set(gauges.running);
      },
    });
    new client.Gauge({
      name: "task_runner_max_running",
      help: "The concurrency cap (MAX_RUNNING).",
      registers,
      collect() {
        this.set(gauges.maxRunning);
      },
    });
    new client.Gauge({
      name: "task_runner_warm_processes",
      help: "Warm sandbox processes alive (isolation: function).",
      registers,
      collect() {
        this.set(gauges.warmProcesses);
      },
    });
    new client.Gauge({
      name: "task_runner_prewarmed_idle",
      help: "Prewarmed sandboxes waiting for a task (they count toward the cap).",
      registers,
      collect() {
        this.set(gauges.prewarmedIdle);
      },
    });
    if (gauges.waitingByReason) {
      const waiting = gauges.waitingByReason.bind(gauges);
      new client.Gauge({
        name: "task_runner_waiting_tasks",
        help: "Tasks waiting without a slot, by reason (cap, function_limit, key_limit, " +
          "rate_limit, delay, key_order, retry).",
        labelNames: ["reason"],
        registers,
        collect() {
          const counts = waiting();
          for (const reason of WAIT_REASONS) this.set({ reason }, counts[reason]);
        },
      });
    }
    new client.Gauge({
      name: "task_runner_paused",
      help: "1 while fetching is held back because the cap is full.",
      registers,
      collect() {
        this.set(gauges.saturated ? 1 : 0);
      },
    });
  }

  /** Record a task's final outcome. */
  taskEnded(handler: string | null, outcome: Outcome, durationMs: number): void {
    const labels = { handler: handler ?? "(none)", outcome };
    this.#tasks.inc(labels);
    if (outcome !== "rejected") this.#duration.observe(labels, durationMs / 1000);
  }

  /** Record how long a task waited before it started (flow control). */
  taskWaited(reason: WaitReason, ms: number): void {
    this.#waited.observe({ reason }, ms / 1000);
  }

  /** Record a spawn failure. */
  spawnFailed(handler: string): void {
    this.#spawnFailures.inc({ handler });
  }

  /** The exposition text and its content type. */
  async render(): Promise<{ body: string; contentType: string }> {
    return { body: await this.registry.metrics(), contentType: this.registry.contentType };
  }
}
