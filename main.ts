/**
 * task-runner command line: `run` the service, `enqueue` a task.
 * @module
 */
import { parseArgs } from "node:util";
import { ADMIN_COMMANDS } from "./cli/admin.ts";
import { HANDLER_COMMANDS } from "./cli/handler_commands.ts";
import { describeConfig, OPTIONS, resolveConfig } from "./runner/config.ts";
import { DelayError, enqueue, parseAt, parseDelay } from "./ops/enqueue.ts";
import { loadFunctionConfig } from "./runner/function_config.ts";
import { createKafka, createProducer } from "./runner/kafka/client.ts";
import { checkBrokerSecurity, explainKafkaError } from "./runner/kafka/security_check.ts";
import { startLocalBroker } from "./ops/local_broker.ts";
import { logger, setUpLogging } from "./runner/report/logging.ts";
import { HealthServer } from "./runner/report/health_server.ts";
import { RunnerMetrics } from "./runner/report/metrics.ts";
import { Runner } from "./runner/runner.ts";
import { positionOf, TaskBoard } from "./runner/report/task_board.ts";
import { ConsoleAccess, isLoopback, loadConsoleToken } from "./runner/console/console_access.ts";
import { ConsoleData } from "./runner/console/console_data.ts";
import { ConsoleServer } from "./runner/console/console_server.ts";
import { checkCanLowerPriority } from "./runner/sandbox/permissions.ts";

const USAGE = `task-runner: run Deno functions triggered by Kafka messages

Usage:
  main.ts run [options]                       consume the task topic and run handlers
  main.ts enqueue <handler> [json] [--key k]  produce one task (payload defaults to {})
          [--delay 10m | --at <ISO time|epoch ms>]  not before then (at most MAX_DELAY_MS ahead)
${
  Object.entries(HANDLER_COMMANDS).map(([name, c]) => `  main.ts ${name.padEnd(36)}${c.summary}`)
    .join("\n")
}
${
  Object.entries(ADMIN_COMMANDS).map(([name, c]) => `  main.ts ${name.padEnd(36)}${c.summary}`)
    .join("\n")
}
  main.ts help                                this text

Each admin command has its own --help.

Options (flag, environment variable, default):
${
  OPTIONS.map((o) =>
    `  --${o.flag.padEnd(20)} ${o.env.padEnd(18)} ${(o.default || '""').padEnd(16)} ${o.doc}`
  ).join("\n")
}
`;

function parse(args: string[]) {
  const options: Record<string, { type: "string" }> = {
    key: { type: "string" },
    delay: { type: "string" },
    at: { type: "string" },
  };
  for (const o of OPTIONS) options[o.flag] = { type: "string" };
  const { values, positionals } = parseArgs({
    args,
    options: { ...options, help: { type: "boolean", short: "h" } },
    allowPositionals: true,
  });
  return { values: values as Record<string, string | boolean | undefined>, positionals };
}

async function run(flags: Record<string, string | undefined>): Promise<number> {
  const config = resolveConfig(flags, Deno.env.toObject());
  checkCanLowerPriority(config.taskNice);
  const consoleToken = config.metricsPort === 0
    ? null
    : await loadConsoleToken(config.metricsHost, config.consoleTokenFile);
  const board = new TaskBoard();
  await setUpLogging({
    level: config.logLevel,
    format: config.logFormat,
    // Output lines of running tasks, for the console's task detail (a map lookup per line).
    tap: config.metricsPort === 0 ? undefined : (record) => {
      const { line, stream } = record.properties;
      if (typeof line === "string" && (stream === "stdout" || stream === "stderr")) {
        board.output(positionOf(record.properties as never), stream, line);
      }
    },
  });
  const log = logger("main");
  let brokers = config.brokers;
  if (brokers === null) {
    log.warn(
      "KAFKA_BROKERS is not set: starting the embedded local broker on 127.0.0.1:{port} " +
        "(development only; it keeps running after the runner exits; stop it with `deno task broker stop`)",
      { port: config.localBrokerPort },
    );
    brokers = [
      await startLocalBroker({
        port: config.localBrokerPort,
        onLine: (line) => log.info("broker: {line}", { line }),
      }),
    ];
  }
  log.info("Starting with {config}", { config: describeConfig({ ...config, brokers }) });
  const functions = await loadFunctionConfig(config.functionsConfig);
  if (functions.size > 0) {
    log.info("Grants for {functions} from {file}", {
      functions: [...functions.keys()],
      file: config.functionsConfig,
    });
  }
  const kafka = createKafka({ brokers, security: config });
  const admin = kafka.admin();
  const metrics = new RunnerMetrics({ topic: config.topic, groupId: config.groupId, admin });
  const runner = new Runner({ kafka, settings: config, functions, observer: metrics, board });
  metrics.watch(runner);
  const consoleServer = config.metricsPort === 0 ? null : new ConsoleServer({
    state: runner,
    access: new ConsoleAccess({ token: consoleToken }),
    loopbackOnly: isLoopback(config.metricsHost),
    data: new ConsoleData({ ...config, kafka, admin, functions }),
  });
  await consoleServer?.load();
  const health = config.metricsPort === 0 ? null : new HealthServer({
    port: config.metricsPort,
    hostname: config.metricsHost,
    metrics,
    ready: () => runner.readiness(),
    routes: consoleServer ?? undefined,
  });

  const { promise: stopRequested, resolve: requestStop } = Promise.withResolvers<string>();
  let signals = 0;
  const onSignal = (signal: Deno.Signal) => () => {
    signals++;
    if (signals === 1) {
      log.info("Received {signal}: draining (send it again to force)", { signal });
      requestStop(signal);
    } else {
      log.warn("Received {signal} again: killing running tasks now", { signal });
      runner.kill(`forced by a second ${signal}`, true).then(() => Deno.exit(1));
    }
  };
  for (const signal of ["SIGTERM", "SIGINT"] as const) {
    Deno.addSignalListener(signal, onSignal(signal));
  }

  if (health) {
    await health.start();
    const origin = `http://${
      config.metricsHost.includes(":") ? `[${config.metricsHost}]` : config.metricsHost
    }:${health.port}`;
    log.info("Metrics on {origin}/metrics, health on /healthz and /readyz, console on {url}", {
      port: health.port,
      origin,
      url: `${origin}/`,
      consoleActions: consoleToken !== null,
    });
  }
  try {
    // A security mismatch is refused at once, naming the setting, not retried for a minute.
    await checkBrokerSecurity(brokers, config);
    await admin.connect();
    await runner.start();
  } catch (error) {
    await health?.stop();
    throw explainKafkaError(error, config);
  }
  const fatal = await Promise.race([stopRequested.then(() => null), runner.fatal]);
  await runner.stop();
  consoleServer?.close();
  await health?.stop();
  await admin.disconnect();
  if (fatal) {
    log.error("Exiting after a fatal consumer error: {error}", { error: fatal.message });
    return 1;
  }
  return 0;
}

async function enqueueCommand(
  positionals: string[],
  flags: Record<string, string | undefined>,
): Promise<number> {
  const [handler, json = "{}"] = positionals;
  if (!handler) {
    console.error("enqueue: missing <handler>\n\n" + USAGE);
    return 2;
  }
  let payload: unknown;
  try {
    payload = JSON.parse(json);
  } catch (error) {
    console.error(`enqueue: the payload is not valid JSON: ${(error as Error).message}`);
    return 2;
  }
  const config = resolveConfig(flags, Deno.env.toObject());
  let notBefore: number | undefined;
  try {
    if (flags.delay !== undefined && flags.at !== undefined) {
      throw new DelayError("give --delay or --at, not both");
    }
    if (flags.delay !== undefined) notBefore = Date.now() + parseDelay(flags.delay);
    if (flags.at !== undefined) notBefore = parseAt(flags.at);
  } catch (error) {
    if (!(error instanceof DelayError)) throw error;
    console.error(`enqueue: ${error.message}`);
    return 2;
  }
  await setUpLogging({ level: "warning", format: config.logFormat });
  const brokers = config.brokers ?? [`127.0.0.1:${config.localBrokerPort}`];
  const producer = createProducer(
    createKafka({ brokers, clientId: "task-runner-enqueue", security: config }),
  );
  try {
    await checkBrokerSecurity(brokers, config);
    await producer.connect();
  } catch (error) {
    throw explainKafkaError(error, config);
  }
  try {
    const meta = await enqueue(producer, handler, payload, {
      topic: config.topic,
      key: flags.key,
      handlerHeader: config.handlerHeader,
      notBefore,
      notBeforeHeader: config.notBeforeHeader,
      maxDelayMs: config.maxDelayMs,
    });
    console.log(`enqueued ${handler} to ${meta.topicName}/${meta.partition}@${meta.baseOffset}`);
  } finally {
    await producer.disconnect();
  }
  return 0;
}

async function main(args: string[]): Promise<number> {
  const admin = ADMIN_COMMANDS[args[0]];
  if (admin) return await admin.run(args.slice(1));
  const handlers = HANDLER_COMMANDS[args[0]];
  if (handlers) return await handlers.run(args.slice(1));
  const { values, positionals } = parse(args);
  const [command = "help", ...rest] = positionals;
  const flags = Object.fromEntries(
    Object.entries(values).filter(([, v]) => typeof v === "string"),
  ) as Record<string, string>;
  if (values.help || command === "help") {
    console.log(USAGE);
    return 0;
  }
  switch (command) {
    case "run":
      return await run(flags);
    case "enqueue":
      return await enqueueCommand(rest, flags);
    default:
      console.error(`Unknown command "${command}"\n\n${USAGE}`);
      return 2;
  }
}

if (import.meta.main) {
  try {
    Deno.exit(await main(Deno.args));
  } catch (error) {
    const e = error as Error;
    console.error(`task-runner: ${e.name}: ${e.message}`);
    Deno.exit(1);
  }
}
