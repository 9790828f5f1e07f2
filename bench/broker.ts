/**
 * The broker the benches use: KAFKA_BROKERS if set, else the local broker on 127.0.0.1:39092
 * (started if needed). Either way KAFKA_BROKERS is set afterwards, because the runner
 * subprocesses the benches start read it.
 */
import { startLocalBroker } from "../ops/local_broker.ts";
import { resolveConfig, type RunnerConfig } from "../runner/config.ts";

/** Bootstrap servers for a bench, with KAFKA_BROKERS set for its subprocesses. */
export async function benchBrokers(): Promise<string> {
  const brokers = Deno.env.get("KAFKA_BROKERS") || await startLocalBroker({ port: 39092 });
  Deno.env.set("KAFKA_BROKERS", brokers);
  return brokers;
}

/**
 * The security settings from the environment (KAFKA_SECURITY_PROTOCOL, KAFKA_SSL_*,
 * KAFKA_SASL_*), for the benches' own clients: the runner subprocesses read the same ones.
 */
export function benchSecurity(): RunnerConfig {
  return resolveConfig({}, Deno.env.toObject());
}
