/**
 * Runner configuration: flags over environment over defaults, validated in one place.
 * @module
 */
import { resolve } from "node:path";
import { ConfigError } from "./errors.ts";

/** Resolved, validated configuration of a runner. */
export interface RunnerConfig {
  /** Kafka bootstrap servers; `null` means "start the embedded local broker". @default null */
  brokers: string[] | null;
  /** Topic the tasks are consumed from. @default "async_task" */
  topic: string;
  /** Topic for dead letters (rejected tasks, exhausted retries); empty: none. @default "" */
  deadLetterTopic: string | null;
  /** Consumer group id. @default "task-runner" */
  groupId: string;
  /** Time the group waits for a silent member before handing its partitions over. @default 30000 */
  sessionTimeoutMs: number;
  /** Folder holding `<name>.ts` handlers. @default "./functions" */
  functionsDir: string;
  /** Operator file with per-function grants; missing file = no grants. @default "./functions.json" */
  functionsConfig: string;
  /** Message header carrying the handler name. @default "php_worker" */
  handlerHeader: string;
  /** Maximum number of live handler processes. @default 100 */
  maxRunning: number;
  // Flow control (issue 15).
  /** Message header with a task's not-before time (ISO 8601 or epoch ms). @default "x-task-runner-not-before" */
  notBeforeHeader: string;
  /** Longest delay a not-before header may ask for; tasks further ahead are rejected. @default 900000 */
  maxDelayMs: number;
  /** Tasks waiting (key order, retries, limits, delays) before fetching holds back. @default 1000 */
  maxWaiting: number;
  /**
   * Sandboxes per function started ahead of time (handler imported, waiting for one task),
   * from the function's first task on; they count toward `maxRunning`. @default 0
   */
  prewarm: number;
  /** Time a task may run before it is killed. @default 30000 */
  taskTimeoutMs: number;
  /** Time between SIGTERM and SIGKILL when a child is stopped. @default 5000 */
  killGraceMs: number;
  /** On SIGTERM/SIGINT, time running tasks get to finish before they are killed. @default 25000 */
  drainTimeoutMs: number;
  /**
   * Nice value of handler processes (0: the runner's own), so that a full cap of handlers
   * does not starve the runner and the broker of CPU. @default 10
   */
  taskNice: number;
  /** V8 heap cap of each handler process, in MiB. @default 128 */
  memoryMb: number;
  /** Largest accepted payload in bytes; larger tasks are rejected. @default 1048576 */
  maxPayloadBytes: number;
  /** Partitions of the task topic when the runner has to create it. @default 4 */
  topicPartitions: number;
  /** Port of the embedded local broker (used only when `brokers` is null). @default 9092 */
  localBrokerPort: number;
  /** Port of `/metrics`, `/healthz`, `/readyz` and the console; 0 turns them off. @default 9464 */
  metricsPort: number;
  /**
   * Address the metrics listener (and the console) binds to. Anything but a loopback address
   * needs `consoleTokenFile`. @default "127.0.0.1"
   */
  metricsHost: string;
  /**
   * File holding the console token (`CONSOLE_TOKEN`) that console actions (replay) need; empty:
   * the console is read-only. @default ""
   */
  consoleTokenFile: string | null;
  /** Lowest log level written. @default "info" */
  logLevel: "debug" | "info" | "warning" | "error";
  /** `json` lines, `pretty` text, or `auto` (pretty on a TTY, JSON otherwise). @default "auto" */
  logFormat: "json" | "pretty" | "auto";
  /** How clients talk to the brokers. @default "PLAINTEXT" */
  securityProtocol: "PLAINTEXT" | "SSL" | "SASL_PLAINTEXT" | "SASL_SSL";
  /** PEM CA bundle to trust; empty: the system's. @default "" */
  sslCaFile: string;
  /** PEM client certificate for mTLS. @default "" */
  sslCertFile: string;
  /** PEM private key of the client certificate. @default "" */
  sslKeyFile: string;
  /** File holding the passphrase of the client key. @default "" */
  sslKeyPasswordFile: string;
  /** SNI / host name to verify; empty: the broker's address. @default "" */
  sslServername: string;
  /** SASL mechanism; empty: none. @default "" */
  saslMechanism: "" | "plain" | "scram-sha-256" | "scram-sha-512" | "oauthbearer";
  /** SASL user name. @default "" */
  saslUsername: string;
  /** File holding the SASL password. @default "" */
  saslPasswordFile: string;
  /** The SASL password itself (secret: masked by {@link describeConfig}). @default "" */
  saslPassword: string;
  /** oauthbearer: file holding the token. @default "" */
  oauthbearerTokenFile: string;
  /** oauthbearer: OIDC token endpoint (client credentials grant). @default "" */
  oauthbearerTokenUrl: string;
  /** oauthbearer: client id. @default "" */
  oauthbearerClientId: string;
  /** oauthbearer: file holding the client secret. @default "" */
  oauthbearerClientSecretFile: string;
  /** oauthbearer: scope. @default "" */
  oauthbearerScope: string;
}

type Parser = (raw: string, name: string) => unknown;

interface OptionSpec {
  key: keyof RunnerConfig;
  flag: string;
  env: string;
  default: string;
  parse: Parser;
  doc: string;
  /** The value itself is a secret: masked in the start-up line, never echoed in errors. */
  secret?: boolean;
}

const fail = (name: string, must: string, raw: string): never => {
  throw new ConfigError(
    `Cannot start runner: ${name} must be ${must}, got ${JSON.stringify(raw)}`,
  );
};

const integer = (min: number, max = Number.MAX_SAFE_INTEGER): Parser => (raw, name) => {
  const n = Number(raw);
  if (!/^\d+$/.test(raw.trim()) || !Number.isSafeInteger(n) || n < min || n > max) {
    fail(name, `an integer from ${min} to ${max}`, raw);
  }
  return n;
};

/**
 * The longest time any timeout, grace or backoff may be, in ms: 2^31-1, about 24.8 days.
 * Timers take a signed 32-bit delay and fire after 1 ms for anything larger, so a bigger value
 * would kill every task at once. There is no "no timeout": every task ends in one outcome, and
 * this maximum is the nearest to none.
 */
export const MAX_TIMER_MS = 2_147_483_647;

/** What a timer option must be, for error messages. */
export const TIMER_RULE = (min: number) =>
  `an integer from ${min} to ${MAX_TIMER_MS} (the longest timer, about 24.8 days; ` +
  "there is no value for no timeout)";

const timer = (min: number): Parser => (raw, name) => {
  const n = Number(raw);
  if (!/^\d+$/.test(raw.trim()) || !Number.isSafeInteger(n) || n < min || n > MAX_TIMER_MS) {
    fail(name, TIMER_RULE(min), raw);
  }
  return n;
};

const text = (pattern: RegExp, must: string): Parser => (raw, name) =>
  pattern.test(raw) ? raw : fail(name, must, raw);

const oneOf = (...values: string[]): Parser => (raw, name) =>
  values.includes(raw) ? raw : fail(name, `one of ${values.join(", ")}`, raw);

const brokers: Parser = (raw, name) => {
  if (raw.trim() === "") return null;
  const list = raw.split(",").map((s) => s.trim()).filter(Boolean);
  for (const b of list) {
    if (!/^[\w.\-\[\]:]+:\d{1,5}$/.test(b)) fail(name, "a comma-separated list of host:port", raw);
  }
  return list;
};

/**
 * A file path, resolved against the working directory; empty stays empty (not set). A path
 * under `$CREDENTIALS_DIRECTORY/` is kept as written and expanded when the file is read, since
 * an EnvironmentFile= cannot expand it (systemd LoadCredential=).
 */
const path: Parser = (raw) =>
  raw === "" || raw.startsWith("$CREDENTIALS_DIRECTORY/") ? raw : resolve(raw);

/** Kafka topic names: legal characters, at most 249. */
const TOPIC = /^[A-Za-z0-9._-]{1,249}$/;

/** Every option: its flag, its environment variable, its default and how it is checked. */
export const OPTIONS: readonly OptionSpec[] = [
  {
    key: "brokers",
    flag: "brokers",
    env: "KAFKA_BROKERS",
    default: "",
    parse: brokers,
    doc: "Kafka bootstrap servers, comma-separated. Empty: start the embedded local broker.",
  },
  {
    key: "topic",
    flag: "topic",
    env: "TASK_TOPIC",
    default: "async_task",
    parse: text(TOPIC, "a Kafka topic name ([A-Za-z0-9._-], 1-249 chars)"),
    doc: "Topic the tasks are consumed from (created if missing).",
  },
  {
    key: "deadLetterTopic",
    flag: "dead-letter-topic",
    env: "DLQ_TOPIC",
    default: "",
    parse: (raw, name) =>
      raw === ""
        ? null
        : text(TOPIC, "a Kafka topic name ([A-Za-z0-9._-], 1-249 chars)")(raw, name),
    doc:
      "Topic for dead letters (rejected tasks, exhausted retries), e.g. async_task.dlq. Empty: none.",
  },
  {
    key: "groupId",
    flag: "group",
    env: "GROUP_ID",
    default: "task-runner",
    parse: text(/^\S{1,255}$/, "a non-empty consumer group id without spaces"),
    doc: "Consumer group id.",
  },
  {
    key: "sessionTimeoutMs",
    flag: "session-timeout-ms",
    env: "SESSION_TIMEOUT_MS",
    default: "30000",
    parse: integer(6000, 300_000),
    doc: "How long the group waits for a silent member (e.g. one killed) before rebalancing.",
  },
  {
    key: "functionsDir",
    flag: "functions-dir",
    env: "FUNCTIONS_DIR",
    default: "./functions",
    parse: (raw) => resolve(raw),
    doc: "Folder of `<name>.ts` handlers.",
  },
  {
    key: "functionsConfig",
    flag: "functions-config",
    env: "FUNCTIONS_CONFIG",
    default: "./functions.json",
    parse: (raw) => resolve(raw),
    doc: "Operator file granting permissions and limits per function (optional).",
  },
  {
    key: "handlerHeader",
    flag: "header",
    env: "HANDLER_HEADER",
    default: "php_worker",
    parse: text(/^[\x21-\x7e]{1,255}$/, "a printable header name"),
    doc: "Message header naming the handler.",
  },
  {
    key: "maxRunning",
    flag: "max-running",
    env: "MAX_RUNNING",
    default: "100",
    parse: integer(1, 10_000),
    doc: "Concurrency cap: live handler processes.",
  },
  {
    key: "notBeforeHeader",
    flag: "not-before-header",
    env: "NOT_BEFORE_HEADER",
    default: "x-task-runner-not-before",
    parse: text(/^[\x21-\x7e]{1,255}$/, "a printable header name"),
    doc: "Message header with a task's not-before time (ISO 8601 or epoch ms).",
  },
  {
    key: "maxDelayMs",
    flag: "max-delay-ms",
    env: "MAX_DELAY_MS",
    default: "900000",
    parse: timer(0),
    doc: "Longest delay a task may ask for; tasks further ahead are rejected.",
  },
  {
    key: "maxWaiting",
    flag: "max-waiting",
    env: "MAX_WAITING",
    default: "1000",
    parse: integer(1, 100_000),
    doc: "Tasks waiting without a slot (keys, retries, limits, delays) before fetching waits.",
  },
  {
    key: "prewarm",
    flag: "prewarm",
    env: "PREWARM",
    default: "0",
    parse: integer(0, 10_000),
    doc: "Sandboxes per function started ahead of time (after its first task); within the cap.",
  },
  {
    key: "taskTimeoutMs",
    flag: "task-timeout-ms",
    env: "TASK_TIMEOUT_MS",
    default: "30000",
    parse: timer(1),
    doc: "Per-task timeout, then SIGTERM, then SIGKILL after the grace period.",
  },
  {
    key: "killGraceMs",
    flag: "kill-grace-ms",
    env: "KILL_GRACE_MS",
    default: "5000",
    parse: timer(0),
    doc: "Grace between SIGTERM and SIGKILL.",
  },
  {
    key: "drainTimeoutMs",
    flag: "drain-timeout-ms",
    env: "DRAIN_TIMEOUT_MS",
    default: "25000",
    parse: timer(0),
    doc: "On SIGTERM/SIGINT, how long running tasks may finish before they are killed.",
  },
  {
    key: "taskNice",
    flag: "task-nice",
    env: "TASK_NICE",
    default: "10",
    parse: integer(0, 19),
    doc: "Nice value of handler processes (0: the runner's), so the runner keeps the CPU.",
  },
  {
    key: "memoryMb",
    flag: "memory-mb",
    env: "TASK_MEMORY_MB",
    default: "128",
    parse: integer(16, 65_536),
    doc: "V8 heap cap per handler process (MiB).",
  },
  {
    key: "maxPayloadBytes",
    flag: "max-payload-bytes",
    env: "MAX_PAYLOAD_BYTES",
    default: "1048576",
    parse: integer(1),
    doc: "Larger payloads are rejected.",
  },
  {
    key: "topicPartitions",
    flag: "partitions",
    env: "TOPIC_PARTITIONS",
    default: "4",
    parse: integer(1, 10_000),
    doc: "Partitions of the task topic when the runner creates it.",
  },
  {
    key: "localBrokerPort",
    flag: "local-broker-port",
    env: "LOCAL_BROKER_PORT",
    default: "9092",
    parse: integer(1, 65_535),
    doc: "Port of the embedded local broker (only when KAFKA_BROKERS is empty).",
  },
  {
    key: "metricsPort",
    flag: "metrics-port",
    env: "METRICS_PORT",
    default: "9464",
    parse: integer(0, 65_535),
    doc: "Port of /metrics, /healthz, /readyz and the console (/); 0 turns them off.",
  },
  {
    key: "metricsHost",
    flag: "metrics-host",
    env: "METRICS_HOST",
    default: "127.0.0.1",
    parse: text(/^[\w.:\-\[\]]{1,253}$/, "a host name or IP address"),
    doc: "Address of the metrics listener and console; non-loopback needs CONSOLE_TOKEN_FILE.",
  },
  {
    key: "consoleTokenFile",
    flag: "console-token-file",
    env: "CONSOLE_TOKEN_FILE",
    default: "",
    parse: (raw) => raw.trim() === "" ? null : resolve(raw.trim()),
    doc: "File holding the console token that actions (replay) need; empty: read-only console.",
  },
  {
    key: "logLevel",
    flag: "log-level",
    env: "LOG_LEVEL",
    default: "info",
    parse: oneOf("debug", "info", "warning", "error"),
    doc: "Lowest log level written.",
  },
  {
    key: "logFormat",
    flag: "log-format",
    env: "LOG_FORMAT",
    default: "auto",
    parse: oneOf("auto", "json", "pretty"),
    doc: "`json` lines, `pretty` text, or `auto` (pretty on a TTY).",
  },
  // Security (issue 12): the same settings reach every Kafka client (runner/kafka/security.ts).
  // Secrets are read from files (systemd LoadCredential=); a *_FILE path may start with
  // $CREDENTIALS_DIRECTORY/. Only KAFKA_SASL_PASSWORD holds a secret itself: it is masked.
  {
    key: "securityProtocol",
    flag: "security-protocol",
    env: "KAFKA_SECURITY_PROTOCOL",
    default: "PLAINTEXT",
    parse: oneOf("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"),
    doc: "How clients talk to the brokers: PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL.",
  },
  {
    key: "sslCaFile",
    flag: "ssl-ca-file",
    env: "KAFKA_SSL_CA_FILE",
    default: "",
    parse: path,
    doc: "PEM CA bundle to trust (SSL, SASL_SSL). Empty: the system's trusted CAs.",
  },
  {
    key: "sslCertFile",
    flag: "ssl-cert-file",
    env: "KAFKA_SSL_CERT_FILE",
    default: "",
    parse: path,
    doc: "PEM client certificate (chain) for mTLS; needs KAFKA_SSL_KEY_FILE.",
  },
  {
    key: "sslKeyFile",
    flag: "ssl-key-file",
    env: "KAFKA_SSL_KEY_FILE",
    default: "",
    parse: path,
    doc: "PEM private key of the client certificate.",
  },
  {
    key: "sslKeyPasswordFile",
    flag: "ssl-key-password-file",
    env: "KAFKA_SSL_KEY_PASSWORD_FILE",
    default: "",
    parse: path,
    doc: "File holding the passphrase of an encrypted KAFKA_SSL_KEY_FILE.",
  },
  {
    key: "sslServername",
    flag: "ssl-servername",
    env: "KAFKA_SSL_SERVERNAME",
    default: "",
    parse: text(/^[\w.\-:]{0,253}$/, "a host name (SNI), or empty"),
    doc: "Host name to send (SNI) and verify, when it differs from the broker's address.",
  },
  {
    key: "saslMechanism",
    flag: "sasl-mechanism",
    env: "KAFKA_SASL_MECHANISM",
    default: "",
    parse: oneOf("", "plain", "scram-sha-256", "scram-sha-512", "oauthbearer"),
    doc: "SASL mechanism (SASL_*): plain, scram-sha-256, scram-sha-512 or oauthbearer.",
  },
  {
    key: "saslUsername",
    flag: "sasl-username",
    env: "KAFKA_SASL_USERNAME",
    default: "",
    parse: text(/^[^\s]{0,255}$/, "a user name without spaces"),
    doc: "SASL user name (plain, scram-*).",
  },
  {
    key: "saslPasswordFile",
    flag: "sasl-password-file",
    env: "KAFKA_SASL_PASSWORD_FILE",
    default: "",
    parse: path,
    doc: "File holding the SASL password (preferred over KAFKA_SASL_PASSWORD).",
  },
  {
    key: "saslPassword",
    flag: "sasl-password",
    env: "KAFKA_SASL_PASSWORD",
    default: "",
    parse: (raw) => raw,
    secret: true,
    doc: "The SASL password itself, when a file cannot be used (never logged).",
  },
  {
    key: "oauthbearerTokenFile",
    flag: "sasl-oauthbearer-token-file",
    env: "KAFKA_SASL_OAUTHBEARER_TOKEN_FILE",
    default: "",
    parse: path,
    doc: "oauthbearer: file holding the token, re-read at every (re)authentication.",
  },
  {
    key: "oauthbearerTokenUrl",
    flag: "sasl-oauthbearer-token-url",
    env: "KAFKA_SASL_OAUTHBEARER_TOKEN_URL",
    default: "",
    parse: text(/^(https?:\/\/\S+)?$/, "an http(s) URL, or empty"),
    doc: "oauthbearer: OIDC token endpoint (client credentials); tokens refresh before expiry.",
  },
  {
    key: "oauthbearerClientId",
    flag: "sasl-oauthbearer-client-id",
    env: "KAFKA_SASL_OAUTHBEARER_CLIENT_ID",
    default: "",
    parse: text(/^\S{0,255}$/, "a client id without spaces"),
    doc: "oauthbearer: client id at the token endpoint.",
  },
  {
    key: "oauthbearerClientSecretFile",
    flag: "sasl-oauthbearer-client-secret-file",
    env: "KAFKA_SASL_OAUTHBEARER_CLIENT_SECRET_FILE",
    default: "",
    parse: path,
    doc: "oauthbearer: file holding the client secret.",
  },
  {
    key: "oauthbearerScope",
    flag: "sasl-oauthbearer-scope",
    env: "KAFKA_SASL_OAUTHBEARER_SCOPE",
    default: "",
    parse: text(/^[\x20-\x7e]{0,1000}$/, "space-separated scopes"),
    doc: "oauthbearer: scope to ask the token endpoint for (empty: none).",
  },
];

/**
 * Resolve the configuration. For each option the flag wins, then the environment, then the
 * default. Every value is validated here and nowhere else.
 *
 * @throws {ConfigError} naming the option, what it must be and what it was.
 * @example
 * ```ts
 * const config = resolveConfig({ "max-running": "10" }, Deno.env.toObject());
 * ```
 */
export function resolveConfig(
  flags: Readonly<Record<string, string | undefined>>,
  env: Readonly<Record<string, string | undefined>>,
): RunnerConfig {
  const out: Record<string, unknown> = {};
  for (const spec of OPTIONS) {
    const fromFlag = flags[spec.flag];
    const fromEnv = env[spec.env];
    const [raw, name] = fromFlag !== undefined
      ? [fromFlag, `--${spec.flag}`]
      : fromEnv !== undefined
      ? [fromEnv, spec.env]
      : [spec.default, `${spec.env} (default)`];
    out[spec.key] = spec.parse(raw, name);
  }
  return out as unknown as RunnerConfig;
}

/** The configuration as a flat record for the start-up log line, secret values masked. */
export function describeConfig(config: RunnerConfig): Record<string, unknown> {
  const out: Record<string, unknown> = {
    ...config,
    brokers: config.brokers?.join(",") ?? "(embedded local broker)",
  };
  for (const spec of OPTIONS) {
    if (spec.secret && out[spec.key] !== "") out[spec.key] = "(set, masked)";
  }
  return out;
}
