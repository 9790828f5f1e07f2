/**
 * The secured test broker (`BROKER_MODE=secured bash broker/kafka.sh start`, ports 29300-29305)
 * and the client settings of each of its listeners. Its certificates and SASL passwords are
 * made at first start with openssl into the git-ignored `.broker/tls-29300/`.
 */
import type { Kafka } from "kafkajs";
import { createKafka } from "../../runner/kafka/client.ts";
import { ROOT } from "./harness.ts";

/** SASL_SSL listener; the others are at fixed offsets from it (see broker/kafka.sh). */
export const SECURED_PORT = 29300;

/** The secured broker: where its listeners are, and its test secrets. */
export interface SecuredBroker {
  /** Folder of the certificates (ca.pem, client.pem, ...) and users/<name>.password. */
  tls: string;
  saslSsl: string;
  mtls: string;
  expiredTls: string;
  plaintext: string;
  saslPlaintext: string;
  /** SCRAM-SHA-512/256 password of alice, PLAIN password of bob. */
  alicePassword: string;
  bobPassword: string;
  /** Stop the broker if {@link startSecuredBroker} started it. */
  stop(): Promise<void>;
}

async function kafkaSh(command: string): Promise<{ code: number; output: string }> {
  const out = await new Deno.Command("bash", {
    args: [`${ROOT}broker/kafka.sh`, command],
    env: { BROKER_MODE: "secured", BROKER_PORT: String(SECURED_PORT), BROKER_CDS: "0" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder();
  return { code: out.code, output: text.decode(out.stdout) + text.decode(out.stderr) };
}

/** Start the secured broker unless it runs; `stop()` stops it only if this call started it. */
export async function startSecuredBroker(): Promise<SecuredBroker> {
  const wasRunning = (await kafkaSh("status")).code === 0;
  if (!wasRunning) {
    const started = await kafkaSh("start");
    if (started.code !== 0) throw new Error(`secured broker did not start:\n${started.output}`);
  }
  const tls = `${ROOT}.broker/tls-${SECURED_PORT}`;
  const at = (offset: number) => `127.0.0.1:${SECURED_PORT + offset}`;
  const read = (name: string) => Deno.readTextFileSync(`${tls}/${name}`).trim();
  return {
    tls,
    saslSsl: at(0),
    mtls: at(2),
    expiredTls: at(3),
    plaintext: at(4),
    saslPlaintext: at(5),
    alicePassword: read("users/alice.password"),
    bobPassword: read("users/bob.password"),
    async stop() {
      if (!wasRunning) await kafkaSh("stop");
    },
  };
}

/** A kafkajs client on the broker's PLAINTEXT listener, for set-up and reading back. */
export function plaintextKafka(broker: SecuredBroker): Kafka {
  return createKafka({ brokers: [broker.plaintext], clientId: "tests-secured" });
}

/** An unsigned JWT (alg "none") for Kafka's unsecured OAUTHBEARER validator. */
export function unsecuredJwt(subject: string, lifetimeSeconds: number): string {
  const b64 = (value: unknown) =>
    btoa(JSON.stringify(value)).replace(/=+$/, "").replace(/\+/g, "-").replace(/\//g, "_");
  const now = Math.floor(Date.now() / 1000);
  return `${b64({ alg: "none" })}.${b64({ sub: subject, iat: now, exp: now + lifetimeSeconds })}.`;
}

/** The client settings (environment) of each way the broker can be reached. */
export function securedEnv(
  broker: SecuredBroker,
  mode: "sasl_ssl_scram512" | "sasl_ssl_scram256" | "sasl_ssl_plain" | "sasl_plaintext" | "mtls",
): Record<string, string> {
  const users = `${broker.tls}/users`;
  switch (mode) {
    case "sasl_ssl_scram512":
    case "sasl_ssl_scram256":
      return {
        KAFKA_BROKERS: broker.saslSsl,
        KAFKA_SECURITY_PROTOCOL: "SASL_SSL",
        KAFKA_SSL_CA_FILE: `${broker.tls}/ca.pem`,
        KAFKA_SASL_MECHANISM: mode === "sasl_ssl_scram512" ? "scram-sha-512" : "scram-sha-256",
        KAFKA_SASL_USERNAME: "alice",
        KAFKA_SASL_PASSWORD_FILE: `${users}/alice.password`,
      };
    case "sasl_ssl_plain":
      return {
        KAFKA_BROKERS: broker.saslSsl,
        KAFKA_SECURITY_PROTOCOL: "SASL_SSL",
        KAFKA_SSL_CA_FILE: `${broker.tls}/ca.pem`,
        KAFKA_SASL_MECHANISM: "plain",
        KAFKA_SASL_USERNAME: "bob",
        KAFKA_SASL_PASSWORD_FILE: `${users}/bob.password`,
      };
    case "sasl_plaintext":
      return {
        KAFKA_BROKERS: broker.saslPlaintext,
        KAFKA_SECURITY_PROTOCOL: "SASL_PLAINTEXT",
        KAFKA_SASL_MECHANISM: "scram-sha-512",
        KAFKA_SASL_USERNAME: "alice",
        KAFKA_SASL_PASSWORD_FILE: `${users}/alice.password`,
      };
    case "mtls":
      return {
        KAFKA_BROKERS: broker.mtls,
        KAFKA_SECURITY_PROTOCOL: "SSL",
        KAFKA_SSL_CA_FILE: `${broker.tls}/ca.pem`,
        KAFKA_SSL_CERT_FILE: `${broker.tls}/client.pem`,
        KAFKA_SSL_KEY_FILE: `${broker.tls}/client.key`,
        KAFKA_SSL_KEY_PASSWORD_FILE: `${broker.tls}/client.key.password`,
      };
  }
}
