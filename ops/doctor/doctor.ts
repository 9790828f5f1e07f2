/**
 * `doctor`: checks that a runner can work here, each with a status, plain words and a fix.
 *
 * The broker checks answer in seconds even when the broker is misconfigured: TCP probes have a
 * short timeout, and the kafkajs client used here has short timeouts and no retries (a runner's
 * client would keep retrying an unreachable advertised address for minutes).
 * @module
 */
import { type Admin, ConfigResourceTypes } from "kafkajs";
import { groupLag } from "../admin/lag.ts";
import { localChecks } from "./local_checks.ts";
import { createKafka } from "../../runner/kafka/client.ts";
import {
  PLAINTEXT,
  securityOf,
  type SecuritySettings,
  usesSasl,
} from "../../runner/kafka/security.ts";
import { saslFinding } from "../../runner/kafka/security_check.ts";
import { SECURITY_CHECKS, securityChecks } from "./security_checks.ts";

/**
 * Outcome of one check. `ok`: fine; `info`: worth knowing, nothing to do; `warn`: works, but
 * probably not as intended; `fail`: tasks will not run; `skip`: not checked because an earlier
 * check failed.
 */
export type CheckStatus = "ok" | "info" | "warn" | "fail" | "skip";

/** One line of the report. */
export interface Check {
  /** What was checked: `bootstrap`, `advertised`, `topic`, `group`, `lag`, `functions`, ... */
  name: string;
  /** The outcome. */
  status: CheckStatus;
  /** What was found, in plain words. */
  message: string;
  /** What to do about it (for `warn` and `fail`). */
  fix?: string;
}

/** What {@link runDoctor} returns. */
export interface DoctorReport {
  /** False when any check failed. */
  ok: boolean;
  /** The checks, in the order they ran. */
  checks: Check[];
}

/** Options of {@link runDoctor}: what to check, usually taken from the runner's config. */
export interface DoctorOptions {
  /** Bootstrap servers (`host:port`). */
  brokers: string[];
  /** Task topic. */
  topic: string;
  /** Consumer group id of the runner. */
  groupId: string;
  /** Folder of `<name>.ts` handlers. */
  functionsDir: string;
  /** The functions config file (per-function grants). */
  functionsConfig: string;
  /** The brokers are the embedded local broker: also check Java and Maven. @default false */
  localBroker?: boolean;
  /** Time allowed for each TCP connection, in ms. @default 1500 */
  connectTimeoutMs?: number;
  /** Time allowed for each broker request, in ms. @default 5000 */
  requestTimeoutMs?: number;
  /** The runner's TLS and SASL settings (a whole `RunnerConfig` will do). @default PLAINTEXT */
  security?: Partial<SecuritySettings>;
}

/** Result of a TCP connection attempt. */
type Probe = { reachable: true; ms: number } | { reachable: false; reason: string };

/** Split `host:port` (also `[v6]:port`). */
function splitAddress(address: string): { host: string; port: number } {
  const at = address.lastIndexOf(":");
  return {
    host: address.slice(0, at).replace(/^\[(.*)\]$/, "$1"),
    port: Number(address.slice(at + 1)),
  };
}

/** Try a TCP connection to `address` and close it at once. */
async function probe(address: string, timeoutMs: number): Promise<Probe> {
  const { host, port } = splitAddress(address);
  const started = performance.now();
  try {
    const conn = await Deno.connect({
      hostname: host,
      port,
      signal: AbortSignal.timeout(timeoutMs),
    });
    conn.close();
    return { reachable: true, ms: Math.round(performance.now() - started) };
  } catch (error) {
    const e = error as Error;
    const reason = e.name === "TimeoutError" || e.name === "AbortError"
      ? `no answer within ${timeoutMs} ms`
      : e.message.replace(/ \(os error \d+\)$/, "");
    return { reachable: false, reason };
  }
}

/** The address kafkajs failed to connect to, from an error or its causes. */
function unreachableBroker(error: unknown): string | undefined {
  for (let e = error as Record<string, unknown> | undefined; e; e = e.cause as typeof e) {
    if (e.name === "KafkaJSConnectionError" && typeof e.broker === "string") return e.broker;
  }
  return undefined;
}

const message = (error: unknown) => (error as Error).message;

/**
 * Check one advertised address with a TCP probe. Unreachable: the advertised.listeners trap,
 * with the address to advertise instead. `failure` is kafkajs's error when it already failed
 * to use the address.
 */
async function advertisedCheck(
  advertised: { address: string; nodeId?: number; listener: string },
  bootstrap: string[],
  timeoutMs: number,
  failure?: unknown,
): Promise<Check> {
  const { address, nodeId, listener } = advertised;
  const who = nodeId === undefined ? "the broker" : `broker ${nodeId}`;
  const probed = await probe(address, timeoutMs);
  if (!probed.reachable) {
    // The address that answered: the bootstrap on the advertised port if there is one, else
    // the first that answered (never its host with the advertised port: nothing may listen there).
    const { port } = splitAddress(address);
    const suggested = bootstrap.find((b) => splitAddress(b).port === port) ?? bootstrap[0];
    return {
      name: "advertised",
      status: "fail",
      message:
        `${who} advertises ${address}, which this machine cannot reach (${probed.reason}), ` +
        `although bootstrap ${bootstrap.join(",")} answers: this is the advertised.listeners ` +
        "trap. Clients use the advertised address for every request after the first metadata, " +
        "so producing, consuming and group membership all fail",
      fix:
        `on the broker set advertised.listeners=${listener}://${suggested} (a host:port clients ` +
        "can reach) and restart it; for broker/kafka.sh leave BROKER_ADVERTISED_HOST unset",
    };
  }
  if (failure !== undefined) {
    return {
      name: "advertised",
      status: "fail",
      message: `${who} advertises ${address}; TCP connects but Kafka fails: ${message(failure)}`,
      fix: "check the broker's listeners and advertised.listeners",
    };
  }
  const same = bootstrap.includes(address) ? "the bootstrap address" : "reachable";
  return {
    name: "advertised",
    status: "ok",
    message: `${who} advertises ${address}: ${same}, connects in ${probed.ms} ms`,
  };
}

/** What the cluster checks share; they append to `checks` as they go. */
interface ClusterContext {
  options: DoctorOptions;
  /** Bootstrap addresses that accepted a TCP connection. */
  reachable: string[];
  connectTimeoutMs: number;
  checks: Check[];
  security: SecuritySettings;
}

/**
 * Checks 2-4: advertised addresses, then (if the cluster is usable) topic, group and lag.
 * Appends to `ctx.checks`, so what was found before an unexpected error is kept.
 */
async function clusterChecks(admin: Admin, ctx: ClusterContext): Promise<void> {
  const { checks, reachable, connectTimeoutMs: timeoutMs } = ctx;
  const listener = ctx.security.securityProtocol;
  const skipRest = (why: string) => {
    for (const name of ["topic", "group"]) {
      checks.push({ name, status: "skip", message: `not checked: ${why}` });
    }
  };
  let brokers: Array<{ nodeId: number; host: string; port: number }>;
  try {
    await admin.connect();
    brokers = (await admin.describeCluster()).brokers;
  } catch (error) {
    const sasl = saslFinding(error, ctx.security);
    if (sasl) {
      checks.push(sasl);
      return skipRest("SASL authentication failed (see sasl)");
    }
    // The first metadata answer (from the bootstrap broker) is kept inside kafkajs; when the
    // advertised address is unusable, kafkajs's connection error is what names it.
    const advertised = unreachableBroker(error);
    if (advertised === undefined || reachable.includes(advertised)) {
      checks.push({
        name: "advertised",
        status: "fail",
        message: `could not read the cluster metadata from ${reachable.join(",")}: ${
          message(error)
        }`,
        fix: "check that the bootstrap address is a Kafka listener of KAFKA_SECURITY_PROTOCOL",
      });
      return skipRest("no cluster metadata");
    }
    checks.push(
      await advertisedCheck({ address: advertised, listener }, reachable, timeoutMs, error),
    );
    return skipRest("the advertised address is unusable (see advertised)");
  }

  if (usesSasl(ctx.security)) {
    const { saslMechanism, saslUsername } = ctx.security;
    checks.push({
      name: "sasl",
      status: "ok",
      message: `authenticated with SASL ${saslMechanism.toUpperCase()}${
        saslUsername ? ` as ${saslUsername}` : ""
      }`,
    });
  }
  for (const b of brokers.sort((x, y) => x.nodeId - y.nodeId)) {
    const address = `${b.host}:${b.port}`;
    checks.push(
      await advertisedCheck({ address, nodeId: b.nodeId, listener }, reachable, timeoutMs),
    );
  }
  if (checks.some((c) => c.status === "fail")) {
    return skipRest("an advertised address is unreachable (see advertised)");
  }
  const linger = await readCommitLinger(admin, brokers.map((b) => b.nodeId));
  const lingerCheck = commitLingerCheck(linger);
  if (lingerCheck) checks.push(lingerCheck);

  const { topic, groupId } = ctx.options;
  const topics = await admin.listTopics();
  if (!topics.includes(topic)) {
    checks.push({
      name: "topic",
      status: "warn",
      message: `${topic} does not exist yet`,
      fix: "nothing to do: the runner creates it on start (TOPIC_PARTITIONS partitions)",
    });
  } else {
    const { topics: [meta] } = await admin.fetchTopicMetadata({ topics: [topic] });
    const leaderless = meta.partitions.filter((p) => p.leader < 0).map((p) => p.partitionId);
    checks.push(
      leaderless.length === 0
        ? {
          name: "topic",
          status: "ok",
          message: `${topic} exists, ${meta.partitions.length} partitions`,
        }
        : {
          name: "topic",
          status: "fail",
          message: `${topic}: partitions ${leaderless.join(", ")} have no leader`,
          fix: "bring the brokers holding them back online",
        },
    );
  }
  checks.push(...await groupChecks(admin, groupId, topics.includes(topic) ? topic : undefined));
}

/** Broker setting: how long Kafka 4's group coordinator holds writes (offset commits) to batch them. */
export const COMMIT_LINGER_CONFIG = "group.coordinator.append.linger.ms";

/** Each broker's {@link COMMIT_LINGER_CONFIG}, `undefined` where it has none (Kafka < 4). */
async function readCommitLinger(
  admin: Admin,
  nodeIds: number[],
): Promise<Array<{ nodeId: number; value: string | undefined }> | Error> {
  try {
    const { resources } = await admin.describeConfigs({
      includeSynonyms: false,
      resources: nodeIds.map((id) => ({
        type: ConfigResourceTypes.BROKER,
        name: String(id),
        configNames: [COMMIT_LINGER_CONFIG],
      })),
    });
    return resources.map((r) => ({
      nodeId: Number(r.resourceName),
      value: r.configEntries.find((e) => e.configName === COMMIT_LINGER_CONFIG)?.configValue,
    }));
  } catch (error) {
    return error as Error;
  }
}

/**
 * The commit-latency check: every at-most-once task is committed before it starts, so it waits
 * for the broker's {@link COMMIT_LINGER_CONFIG} (Kafka 4 defaults to 5 ms). Null when no broker
 * has the setting (older Kafka: nothing to say).
 */
export function commitLingerCheck(
  found: Array<{ nodeId: number; value: string | undefined }> | Error,
): Check | null {
  if (found instanceof Error) {
    return {
      name: "commit-latency",
      status: "info",
      message: `could not read ${COMMIT_LINGER_CONFIG} from the brokers: ${message(found)}`,
    };
  }
  const known = found.filter((f) => f.value !== undefined);
  if (known.length === 0) return null;
  const worst = known.reduce((a, b) => (Number(b.value) > Number(a.value) ? b : a));
  const ms = Number(worst.value);
  if (ms === 0) {
    return {
      name: "commit-latency",
      status: "ok",
      message: `offset commits are acknowledged without lingering (${COMMIT_LINGER_CONFIG}=0)`,
    };
  }
  return {
    name: "commit-latency",
    status: "info",
    message: `broker ${worst.nodeId} holds offset commits up to ${ms} ms ` +
      `(${COMMIT_LINGER_CONFIG}=${ms}): at-most-once tasks wait that long before they start`,
    fix: `if start latency matters, set ${COMMIT_LINGER_CONFIG}=0 on the brokers ` +
      "(the local broker does)",
  };
}

/** Check 4: the group's state and members, and its lag on the topic when the topic exists. */
async function groupChecks(admin: Admin, groupId: string, topic?: string): Promise<Check[]> {
  const { groups: [group] } = await admin.describeGroups([groupId]);
  const members = group.members.length;
  const who = group.members.map((m) => `${m.clientId}@${m.clientHost}`).join(", ");
  const state: Check = group.state === "Stable"
    ? { name: "group", status: "ok", message: `${groupId}: Stable, ${members} member(s): ${who}` }
    : group.state === "Dead"
    ? {
      name: "group",
      status: "info",
      message: `${groupId} does not exist yet: it appears when a runner first joins`,
    }
    : group.state === "Empty"
    ? { name: "group", status: "info", message: `${groupId}: Empty (no runner is consuming now)` }
    : { name: "group", status: "info", message: `${groupId}: ${group.state} (rebalancing)` };
  if (topic === undefined) return [state];

  const lag = await groupLag(admin, { groupId, topic });
  const { totals } = lag;
  const uncommitted = totals.uncommitted === 0 ? "" : `; ${totals.uncommitted} partition(s) ` +
    `without a committed offset (${totals.uncommittedMessages} message(s) from the log start)`;
  const waiting = totals.lag + totals.uncommittedMessages;
  return [state, {
    name: "lag",
    status: waiting > 0 && members === 0 ? "warn" : "ok",
    message: `${topic}: lag ${totals.lag} over ${lag.partitions.length} partition(s)${uncommitted}`,
    ...(waiting > 0 && members === 0
      ? { fix: "start a runner (`deno task run`): tasks are waiting and nobody consumes them" }
      : {}),
  }];
}

/**
 * Run every check and return the report. Never throws for what it diagnoses: a broker that
 * cannot be reached or a broken file is a `fail` line, not an exception.
 *
 * @example
 * ```ts
 * const config = resolveConfig({}, Deno.env.toObject());
 * const report = await runDoctor({ ...config, brokers: config.brokers ?? ["127.0.0.1:9092"] });
 * if (!report.ok) Deno.exit(1);
 * ```
 */
export async function runDoctor(options: DoctorOptions): Promise<DoctorReport> {
  const connectTimeoutMs = options.connectTimeoutMs ?? 1500;
  const requestTimeoutMs = options.requestTimeoutMs ?? 5000;
  for (const [name, value] of Object.entries({ connectTimeoutMs, requestTimeoutMs })) {
    if (!Number.isSafeInteger(value) || value <= 0) {
      throw new RangeError(`Cannot run doctor: "${name}" must be a positive integer, got ${value}`);
    }
  }
  if (options.brokers.length === 0) {
    throw new RangeError('Cannot run doctor: "brokers" must list at least one host:port, got []');
  }
  const checks: Check[] = [];

  // 1. Bootstrap: a plain TCP connection to each configured broker.
  const probes = await Promise.all(options.brokers.map((b) => probe(b, connectTimeoutMs)));
  const reachable = options.brokers.filter((_, i) => probes[i].reachable);
  options.brokers.forEach((address, i) => {
    const p = probes[i];
    checks.push(
      p.reachable
        ? { name: "bootstrap", status: "ok", message: `${address} reachable (${p.ms} ms)` }
        : {
          name: "bootstrap",
          status: reachable.length > 0 ? "warn" : "fail",
          message: `${address} not reachable: ${p.reason}`,
          fix: options.localBroker
            ? `start the local broker: BROKER_PORT=${splitAddress(address).port} ` +
              "deno task broker start (or set KAFKA_BROKERS)"
            : "check KAFKA_BROKERS and that the broker is running and listening on that address",
        },
    );
  });

  // 2. TLS and SASL as the runner would use them: a raw handshake names what kafkajs cannot.
  const security = securityOf(options.security ?? PLAINTEXT);
  checks.push(...await securityChecks(reachable, { security, timeoutMs: connectTimeoutMs }));
  const securityFailed = checks.some((c) =>
    SECURITY_CHECKS.includes(c.name) && c.status === "fail"
  );

  // 3-5. The cluster, through kafkajs with short timeouts and no retries.
  if (securityFailed) {
    for (const name of ["advertised", "topic", "group"]) {
      checks.push({ name, status: "skip", message: "not checked: the security check failed" });
    }
  } else if (reachable.length === 0) {
    for (const name of ["advertised", "topic", "group"]) {
      checks.push({ name, status: "skip", message: "not checked: no bootstrap broker reachable" });
    }
  } else {
    const kafka = createKafka({
      brokers: reachable,
      security,
      clientId: "task-runner-doctor",
      connectionTimeout: connectTimeoutMs,
      requestTimeout: requestTimeoutMs,
      retries: 0,
    });
    const admin = kafka.admin({ retry: { retries: 0 } });
    try {
      await clusterChecks(admin, { options, reachable, connectTimeoutMs, checks, security });
    } catch (error) {
      checks.push({
        name: "cluster",
        status: "fail",
        message: `the broker answered the first requests, then failed: ${message(error)}`,
        fix: "run `doctor` again; if it persists, read the broker's log",
      });
    } finally {
      await admin.disconnect();
    }
  }

  // 5-7. Files and tools on this machine.
  checks.push(...await localChecks(options));
  return { ok: checks.every((c) => c.status !== "fail"), checks };
}
