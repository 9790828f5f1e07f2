/**
 * The embedded local broker for development: `broker/kafka.sh` driven from Deno.
 * @module
 */
import { fileURLToPath as fromFileUrl } from "node:url";
import { LocalBrokerError } from "../runner/errors.ts";

const SCRIPT = fromFileUrl(new URL("../broker/kafka.sh", import.meta.url));

/** Options of {@link startLocalBroker}. */
export interface LocalBrokerOptions {
  /** Port the broker listens on, on 127.0.0.1. @default 9092 */
  port?: number;
  /** Called with each line the control script prints. @default ignore */
  onLine?: (line: string) => void;
}

/**
 * Start (or find already running) the single-node KRaft broker on 127.0.0.1 and return its
 * bootstrap address. Fetches the Kafka jars with Maven on first use.
 * @throws {LocalBrokerError} with the script's own explanation (no Java, port taken, ...).
 */
export async function startLocalBroker(options: LocalBrokerOptions = {}): Promise<string> {
  const port = options.port ?? 9092;
  const command = new Deno.Command("bash", {
    args: [SCRIPT, "start"],
    env: { BROKER_PORT: String(port) },
    stdout: "piped",
    stderr: "piped",
  });
  const { code, stdout, stderr } = await command.output();
  const text = new TextDecoder().decode(stdout) + new TextDecoder().decode(stderr);
  for (const line of text.split("\n")) if (line.trim()) options.onLine?.(line);
  if (code !== 0) {
    throw new LocalBrokerError(
      `the local broker did not start (broker/kafka.sh start exited ${code}):\n${text.trim()}\n` +
        "Set KAFKA_BROKERS to use another broker.",
    );
  }
  return `127.0.0.1:${port}`;
}
