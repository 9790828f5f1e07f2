/**
 * Where kafkajs clients are made: every client of the runner, the admin commands, doctor and
 * the benches comes from {@link createKafka}, with the security settings, the codecs and the
 * log routing applied. (Other modules use kafkajs's types and the clients made here.)
 * @module
 */
import { type Admin, Kafka, logLevel, Partitioners, type Producer } from "kafkajs";
import { logger } from "../report/logging.ts";
import { kafkaAuth, PLAINTEXT, securityOf, type SecuritySettings } from "./security.ts";
import { installKafkaWirePatch } from "./wire_patch.ts";

/** Options of {@link createKafka}. */
export interface KafkaOptions {
  /** Bootstrap servers (`host:port`). */
  brokers: string[];
  /** Client id shown in broker logs. @default "task-runner" */
  clientId?: string;
  /** Time allowed for a TCP connection to a broker, in ms. @default 3000 */
  connectionTimeout?: number;
  /** Time allowed for a broker to answer one request, in ms. @default 30000 */
  requestTimeout?: number;
  /**
   * Retries of a failed operation; diagnostics use 0 so that an unreachable broker is reported
   * in seconds instead of after minutes of back-off. @default 8
   */
  retries?: number;
  /**
   * TLS and SASL settings (a whole `RunnerConfig` will do): every client gets the same ones.
   * @default PLAINTEXT, no SASL
   */
  security?: Partial<SecuritySettings>;
}

const LEVELS: Record<number, "error" | "warn" | "info" | "debug"> = {
  [logLevel.ERROR]: "error",
  [logLevel.WARN]: "warn",
  [logLevel.INFO]: "info",
  [logLevel.DEBUG]: "debug",
};

/**
 * A kafkajs client whose logs go to LogTape under `task-runner.kafka`, secured as
 * `options.security` says (its files are read now), decoding every compression codec and
 * bounding record headers (see `wire_patch.ts`).
 *
 * @throws {ConfigError} when the security settings do not fit together.
 * @throws {KafkaSecurityError} when a file they name cannot be read.
 */
export function createKafka(options: KafkaOptions): Kafka {
  installKafkaWirePatch();
  const log = logger("kafka");
  return new Kafka({
    clientId: options.clientId ?? "task-runner",
    brokers: options.brokers,
    ...kafkaAuth(securityOf(options.security ?? PLAINTEXT)),
    connectionTimeout: options.connectionTimeout ?? 3000,
    requestTimeout: options.requestTimeout ?? 30_000,
    retry: { retries: options.retries ?? 8, initialRetryTime: 100, maxRetryTime: 5000 },
    logLevel: logLevel.INFO,
    logCreator: () => ({ namespace, level, log: entry }) => {
      const { message, ...rest } = entry;
      let method = LEVELS[level] ?? "info";
      // kafkajs reports conditions it retries, and that clear in a second on a broker that is
      // starting (coordinator loading or not available, leader elections), at ERROR with a
      // stack. They are warnings without stacks; only a failure that stops work is an error.
      const error = String(rest.error ?? rest.message ?? "");
      if (
        method === "error" &&
        (rest.retryCount !== undefined || rest.retryTime !== undefined ||
          /coordinator is (loading|not available)|not the correct coordinator|leadership election|no leader for this topic-partition|rebalance in progress/i
            .test(error))
      ) {
        method = "warn";
        delete rest.stack;
      }
      log[method](`${namespace}: ${message}`, rest);
    },
  });
}

/** A producer with the default (murmur2, Java-compatible) partitioner. */
export function createProducer(kafka: Kafka): Producer {
  return kafka.producer({ createPartitioner: Partitioners.DefaultPartitioner });
}

/**
 * Make sure `topic` exists, creating it with `partitions` partitions if needed.
 *
 * The PHP daemon's consumer, started before its topic existed, never received data; creating
 * the topic before subscribing removes that trap whatever the broker's auto-create setting.
 * Returns true when the topic was created now.
 */
export async function ensureTopic(
  admin: Admin,
  topic: string,
  partitions: number,
): Promise<boolean> {
  const existing = await admin.listTopics();
  if (existing.includes(topic)) return false;
  // createTopics resolves false when another client created it first: that is fine too.
  return await admin.createTopics({
    waitForLeaders: true,
    topics: [{ topic, numPartitions: partitions }],
  });
}
