/**
 * The commented example of the service's environment file (`EnvironmentFile=` of
 * task-runner.service), generated from the runner's own option list so that it never drifts.
 * `systemd/install.sh` writes it to /etc/task-runner/env when that file is missing.
 *
 * Usage: `deno run systemd/env_example.ts [--brokers host:port] [--install-dir dir]`
 * @module
 */
import { parseArgs } from "node:util";
import { OPTIONS } from "../runner/config.ts";

/** The note of a secret file option: how to hand it over with LoadCredential= (systemd). */
function CREDENTIAL(name: string): string {
  return `Secret: add LoadCredential=${name}:/etc/task-runner/credentials/${name} (systemctl ` +
    `edit task-runner), then set it to $CREDENTIALS_DIRECTORY/${name}.`;
}

/** What the unit ties to some options (see the comments in task-runner.service). */
const UNIT_NOTES: Readonly<Record<string, string>> = {
  KAFKA_BROKERS: "Required by the service (the embedded broker is for development only).",
  MAX_RUNNING: "Scale MemoryMax= and TasksMax= of the unit with it (systemctl edit task-runner).",
  KILL_GRACE_MS: "TimeoutStopSec= of the unit must exceed DRAIN_TIMEOUT_MS + KILL_GRACE_MS.",
  DRAIN_TIMEOUT_MS: "TimeoutStopSec= of the unit must exceed DRAIN_TIMEOUT_MS + KILL_GRACE_MS.",
  KAFKA_SSL_KEY_PASSWORD_FILE: CREDENTIAL("kafka-ssl-key-password"),
  KAFKA_SASL_PASSWORD_FILE: CREDENTIAL("kafka-sasl-password"),
  KAFKA_SASL_PASSWORD:
    "Prefer KAFKA_SASL_PASSWORD_FILE: a secret in this file is readable by anyone who can read it.",
  KAFKA_SASL_OAUTHBEARER_CLIENT_SECRET_FILE: CREDENTIAL("kafka-oauth-client-secret"),
};

/** Options of {@link envExample}. */
export interface EnvExampleOptions {
  /** Value of the one active line, `KAFKA_BROKERS=`. @default "127.0.0.1:9092" */
  brokers?: string;
  /** Where the service runs (its WorkingDirectory=), for relative paths. @default "/opt/task-runner" */
  installDir?: string;
}

/**
 * The environment file: `KAFKA_BROKERS` set, every other option commented out at its default.
 *
 * @example
 * ```ts
 * await Deno.writeTextFile("/etc/task-runner/env", envExample({ brokers: "10.0.0.5:9092" }));
 * ```
 */
export function envExample(options: EnvExampleOptions = {}): string {
  const brokers = options.brokers ?? "127.0.0.1:9092";
  const installDir = options.installDir ?? "/opt/task-runner";
  if (!/^\S+$/.test(brokers)) {
    throw new TypeError(`Cannot write env example: "brokers" must not be empty, got "${brokers}"`);
  }
  const lines = [
    "# task-runner service environment (EnvironmentFile= of task-runner.service): KEY=value,",
    "# one a line, no quotes needed. Apply changes with `systemctl restart task-runner`: the",
    "# runner drains running tasks first.",
    `# Relative paths resolve against ${installDir} (WorkingDirectory=). Keep your own`,
    "# handlers and functions config outside it: an upgrade replaces that folder.",
    "# Variables that the functions config grants to handlers (allowEnv) are read from here too.",
    "",
  ];
  for (const o of OPTIONS) {
    lines.push(`# ${o.doc}`);
    if (UNIT_NOTES[o.env]) lines.push(`# ${UNIT_NOTES[o.env]}`);
    lines.push(o.env === "KAFKA_BROKERS" ? `${o.env}=${brokers}` : `#${o.env}=${o.default}`);
    lines.push("");
  }
  return lines.join("\n");
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: { brokers: { type: "string" }, "install-dir": { type: "string" } },
  });
  console.log(envExample({ brokers: values.brokers, installDir: values["install-dir"] }).trimEnd());
}
