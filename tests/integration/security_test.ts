/**
 * The runner, `enqueue` and the admin commands against the secured broker (broker/kafka.sh
 * secured mode): each security mode end to end (enqueue → run → outcome, result topic and
 * dead letters included), each misconfiguration refused within 30 s with one error naming the
 * setting, and no secret in any line any of them printed.
 */
import { assert, assertEquals, assertMatch } from "../helpers/assert.ts";
import { functionsConfig, readTopic, ROOT, RunnerProcess, unique } from "../helpers/harness.ts";
import {
  plaintextKafka,
  type SecuredBroker,
  securedEnv,
  startSecuredBroker,
  unsecuredJwt,
} from "../helpers/secured_broker.ts";
import { runAdmin } from "../helpers/cli_capture.ts";
import { OPTIONS } from "../../runner/config.ts";

const text = new TextDecoder();

/** `main.ts enqueue` as a user runs it, with `env`. */
async function enqueue(
  env: Record<string, string>,
  args: string[],
): Promise<{ code: number; output: string }> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", `${ROOT}main.ts`, "enqueue", ...args],
    cwd: ROOT,
    env,
    stdout: "piped",
    stderr: "piped",
  }).output();
  return { code: out.code, output: text.decode(out.stdout) + text.decode(out.stderr) };
}

/** The environment as the command-line flags of the same options (flags > env). */
function asFlags(env: Record<string, string>): string[] {
  return Object.entries(env).flatMap((
    [k, v],
  ) => [`--${OPTIONS.find((o) => o.env === k)!.flag}`, v]);
}

/** No line contains any of the secrets. */
function assertNoSecret(lines: string[], secrets: string[], what: string): void {
  for (const secret of secrets) {
    const leaked = lines.filter((l) => l.includes(secret));
    assertEquals(leaked, [], `${what} printed a secret`);
  }
}

/** enqueue → run → ok outcome with its result, and a rejected one dead-lettered. */
async function endToEnd(broker: SecuredBroker, env: Record<string, string>, secrets: string[]) {
  const topic = unique("sec");
  const results = `${topic}.results`;
  const dlq = `${topic}.dlq`;
  const admin = plaintextKafka(broker).admin();
  await admin.connect();
  await admin.createTopics({
    waitForLeaders: true,
    topics: [topic, results, dlq].map((t) => ({ topic: t, numPartitions: 1 })),
  });
  await admin.disconnect();
  await using config = await functionsConfig({ returns_value: { resultTopic: results } });
  await using runner = RunnerProcess.onTopic(topic, {
    ...env,
    FUNCTIONS_CONFIG: config.path,
    DLQ_TOPIC: dlq,
  });
  await runner.ready();
  const enqueued = [
    await enqueue({ ...env, TASK_TOPIC: topic }, ["returns_value", '{"n":21}', "--key", "k-21"]),
    await enqueue({ ...env, TASK_TOPIC: topic }, ["no_such", "{}"]),
  ];
  for (const e of enqueued) {
    assertEquals(e.code, 0, e.output);
    assertMatch(e.output, new RegExp(`^enqueued \\w+ to ${topic}/0@\\d+\\n$`));
  }
  const outcomes = await runner.waitForOutcomes(2);
  const ok = outcomes.find((o) => o.handler === "returns_value")!;
  assertEquals([ok.outcome, ok.resultTopic], ["ok", results]);
  const rejected = outcomes.find((o) => o.handler === "no_such")!;
  assertEquals([rejected.outcome, rejected.deadLetter], ["rejected", dlq]);
  const [result] = await readTopic(results, 1, plaintextKafka(broker));
  assertEquals(String(result.key), "k-21");
  assertEquals(JSON.parse(String(result.value)).doubled, 42);
  const [letter] = await readTopic(dlq, 1, plaintextKafka(broker));
  assertEquals(String(letter.headers!["x-task-runner-outcome"]), "rejected");
  // The admin commands use the same settings.
  const lag = await runAdmin("lag", [
    "--topic",
    topic,
    "--group",
    topic,
    ...asFlags(env),
  ]);
  assertEquals(lag.code, 0, lag.stderr);
  assertMatch(lag.stdout, new RegExp(topic));
  runner.kill("SIGTERM");
  assertEquals((await runner.exited).code, 0);
  assertNoSecret(
    [...runner.raw, ...enqueued.map((e) => e.output), lag.stdout, lag.stderr],
    secrets,
    "runner, enqueue or lag",
  );
  const started = runner.lines.find((l) => l.message.startsWith("Starting with"));
  assertEquals(
    (started?.properties.config as Record<string, unknown>).securityProtocol,
    env.KAFKA_SECURITY_PROTOCOL,
  );
  return runner.lines;
}

/** The runner with `env` must exit non-zero within 30 s, with one error matching `error`. */
async function refused(env: Record<string, string>, error: RegExp, secrets: string[]) {
  const started = performance.now();
  await using runner = RunnerProcess.onTopic(unique("refused"), env);
  const status = await runner.exited;
  const ms = performance.now() - started;
  assert(status.code !== 0, "the runner exited 0");
  assert(ms < 30_000, `the runner took ${Math.round(ms)} ms to give up`);
  const errors = runner.raw.filter((l) => l.startsWith("task-runner: "));
  assertEquals(errors.length, 1, runner.raw.slice(-5).join("\n"));
  assertMatch(errors[0], error);
  assertNoSecret(runner.raw, secrets, "the refused runner");
}

Deno.test({
  name: "secured broker: every security mode end to end, misconfigurations refused",
  sanitizeOps: false,
  sanitizeResources: false,
}, async (t) => {
  const broker = await startSecuredBroker();
  const secrets = [broker.alicePassword, broker.bobPassword];
  const keyPassword = Deno.readTextFileSync(`${broker.tls}/client.key.password`).trim();
  try {
    for (
      const mode of [
        "sasl_ssl_scram512",
        "sasl_ssl_scram256",
        "sasl_ssl_plain",
        "sasl_plaintext",
        "mtls",
      ] as const
    ) {
      await t.step(`${mode}: enqueue → run → outcome, result and dead letter`, async () => {
        await endToEnd(broker, securedEnv(broker, mode), [...secrets, keyPassword]);
      });
    }

    await t.step("KAFKA_SASL_PASSWORD itself: masked in the start-up line", async () => {
      const env = {
        ...securedEnv(broker, "sasl_ssl_plain"),
        KAFKA_SASL_PASSWORD: broker.bobPassword,
      };
      delete (env as Record<string, string>).KAFKA_SASL_PASSWORD_FILE;
      const lines = await endToEnd(broker, env, secrets);
      const started = lines.find((l) => l.message.startsWith("Starting with"))!;
      assertEquals(
        (started.properties.config as Record<string, unknown>).saslPassword,
        "(set, masked)",
      );
    });

    await t.step("oauthbearer: a token file, re-read at each authentication", async () => {
      const dir = await Deno.makeTempDir();
      const token = unsecuredJwt("task-runner", 3600);
      await Deno.writeTextFile(`${dir}/token`, token);
      await endToEnd(broker, {
        KAFKA_BROKERS: broker.saslSsl,
        KAFKA_SECURITY_PROTOCOL: "SASL_SSL",
        KAFKA_SSL_CA_FILE: `${broker.tls}/ca.pem`,
        KAFKA_SASL_MECHANISM: "oauthbearer",
        KAFKA_SASL_OAUTHBEARER_TOKEN_FILE: `${dir}/token`,
      }, [token]);
      await Deno.remove(dir, { recursive: true });
    });

    await t.step(
      "oauthbearer: OIDC client credentials, tokens refreshed before expiry",
      async () => {
        const dir = await Deno.makeTempDir();
        const clientSecret = `cs-${crypto.randomUUID()}`;
        await Deno.writeTextFile(`${dir}/client-secret`, clientSecret);
        const issued: string[] = [];
        const server = Deno.serve(
          { hostname: "127.0.0.1", port: 0, onListen() {} },
          async (req) => {
            const form = new URLSearchParams(await req.text());
            const [id, secret] = atob(req.headers.get("authorization")!.slice(6)).split(":");
            if (
              form.get("grant_type") !== "client_credentials" || id !== "runner" ||
              secret !== clientSecret
            ) {
              return Response.json({ error: "invalid_client" }, { status: 401 });
            }
            // 20 s tokens: the broker ends sessions at 15 s (connections.max.reauth.ms), the
            // runner fetches a new token after 80 % of the lifetime (16 s).
            const token = unsecuredJwt("task-runner", 20);
            issued.push(token);
            return Response.json({ access_token: token, token_type: "bearer", expires_in: 20 });
          },
        );
        try {
          const env = {
            KAFKA_BROKERS: broker.saslSsl,
            KAFKA_SECURITY_PROTOCOL: "SASL_SSL",
            KAFKA_SSL_CA_FILE: `${broker.tls}/ca.pem`,
            KAFKA_SASL_MECHANISM: "oauthbearer",
            KAFKA_SASL_OAUTHBEARER_TOKEN_URL: `http://127.0.0.1:${server.addr.port}/token`,
            KAFKA_SASL_OAUTHBEARER_CLIENT_ID: "runner",
            KAFKA_SASL_OAUTHBEARER_CLIENT_SECRET_FILE: `${dir}/client-secret`,
            KAFKA_SASL_OAUTHBEARER_SCOPE: "kafka",
          };
          const topic = unique("oidc");
          await using runner = RunnerProcess.onTopic(topic, { ...env, TOPIC_PARTITIONS: "1" });
          await runner.ready();
          const first = issued.length;
          assert(first >= 1, "no token was fetched");
          // Past the first token's lifetime: tasks still run, on re-authenticated sessions.
          await new Promise((r) => setTimeout(r, 24_000));
          const e = await enqueue({ ...env, TASK_TOPIC: topic }, ["echo", '{"after":"expiry"}']);
          assertEquals(e.code, 0, e.output);
          const [outcome] = await runner.waitForOutcomes(1);
          assertEquals(outcome.outcome, "ok");
          assert(issued.length > first, `no token refresh: ${issued.length} token(s) in 24 s`);
          assertNoSecret([...runner.raw, e.output], [clientSecret, ...issued], "runner or enqueue");
        } finally {
          await server.shutdown();
          await Deno.remove(dir, { recursive: true });
        }
      },
    );

    const scram = securedEnv(broker, "sasl_ssl_scram512");
    const mtls = securedEnv(broker, "mtls");
    const dir = await Deno.makeTempDir();
    const wrong = `wrong-${crypto.randomUUID()}`;
    await Deno.writeTextFile(`${dir}/wrong.password`, wrong);
    const tlsDir = broker.tls;
    const cases: Array<[string, Record<string, string>, RegExp]> = [
      [
        "wrong password",
        { ...scram, KAFKA_SASL_PASSWORD_FILE: `${dir}/wrong.password` },
        /KafkaSecurityError: .*rejected SASL SCRAM-SHA-512 authentication \(wrong credentials.*check KAFKA_SASL_USERNAME=alice and KAFKA_SASL_PASSWORD_FILE/,
      ],
      [
        "wrong CA",
        { ...scram, KAFKA_SSL_CA_FILE: `${tlsDir}/other-ca.pem` },
        /KafkaSecurityError: .*not signed by a CA in KAFKA_SSL_CA_FILE .*set KAFKA_SSL_CA_FILE/,
      ],
      [
        "missing client certificate",
        {
          ...mtls,
          KAFKA_SSL_CERT_FILE: "",
          KAFKA_SSL_KEY_FILE: "",
          KAFKA_SSL_KEY_PASSWORD_FILE: "",
        },
        /KafkaSecurityError: .*requires a client certificate.*set KAFKA_SSL_CERT_FILE and KAFKA_SSL_KEY_FILE/,
      ],
      [
        "expired client certificate",
        {
          ...mtls,
          KAFKA_SSL_CERT_FILE: `${tlsDir}/expired-client.pem`,
          KAFKA_SSL_KEY_FILE: `${tlsDir}/expired-client.key`,
          KAFKA_SSL_KEY_PASSWORD_FILE: "",
        },
        /KafkaSecurityError: .*refused the client certificate in KAFKA_SSL_CERT_FILE .*expired on 2020-02-01/,
      ],
      [
        "expired broker certificate",
        {
          ...mtls,
          KAFKA_BROKERS: broker.expiredTls,
          KAFKA_SSL_CERT_FILE: "",
          KAFKA_SSL_KEY_FILE: "",
          KAFKA_SSL_KEY_PASSWORD_FILE: "",
        },
        /KafkaSecurityError: .*the broker's certificate "CN=localhost \(expired\)".*expired on 2020-02-01/,
      ],
      [
        "PLAINTEXT client against a TLS listener",
        { KAFKA_BROKERS: broker.mtls },
        /KafkaSecurityError: .*is a TLS listener .*KAFKA_SECURITY_PROTOCOL=PLAINTEXT does not use TLS: set KAFKA_SECURITY_PROTOCOL=SSL/,
      ],
      [
        "TLS client against a PLAINTEXT listener",
        {
          KAFKA_BROKERS: broker.plaintext,
          KAFKA_SECURITY_PROTOCOL: "SSL",
          KAFKA_SSL_CA_FILE: `${tlsDir}/ca.pem`,
        },
        /KafkaSecurityError: .*is a plaintext listener .*KAFKA_SECURITY_PROTOCOL=SSL expects TLS/,
      ],
      [
        "SASL mechanism the listener does not enable",
        { ...securedEnv(broker, "sasl_plaintext"), KAFKA_SASL_MECHANISM: "scram-sha-256" },
        /KafkaSecurityError: .*does not enable SASL SCRAM-SHA-256 \(KAFKA_SASL_MECHANISM\); it enables SCRAM-SHA-512, PLAIN/,
      ],
      [
        "password file missing",
        { ...scram, KAFKA_SASL_PASSWORD_FILE: `${dir}/nope` },
        /KafkaSecurityError: KAFKA_SASL_PASSWORD_FILE: cannot read .*nope: no such file/,
      ],
      [
        "settings that do not fit together",
        { ...scram, KAFKA_SECURITY_PROTOCOL: "SSL" },
        /ConfigError: .*KAFKA_SASL_MECHANISM.* set, but KAFKA_SECURITY_PROTOCOL=SSL does not use SASL/,
      ],
    ];
    for (const [what, env, error] of cases) {
      await t.step(`refused: ${what}`, () => refused(env, error, [...secrets, wrong, keyPassword]));
    }

    await t.step("doctor and topics as processes print their own output only", async () => {
      for (const command of [["doctor", "--topic", "x"], ["topics"]]) {
        const out = await new Deno.Command(Deno.execPath(), {
          args: ["run", "-A", `${ROOT}main.ts`, ...command],
          cwd: ROOT,
          env: scram,
          stdout: "piped",
          stderr: "piped",
        }).output();
        const stderr = text.decode(out.stderr);
        const stdout = text.decode(out.stdout);
        assertEquals(stderr, "", `${command[0]} printed on stderr`);
        assert(
          !/Warning|"level"/.test(stdout),
          `${command[0]} printed more than its output:\n${stdout}`,
        );
        assertNoSecret([stdout], secrets, command[0]);
      }
    });

    const doctorCases: Array<[string, Record<string, string>, RegExp]> = [
      [
        "expired broker certificate, named with subject and dates",
        {
          ...mtls,
          KAFKA_BROKERS: broker.expiredTls,
          KAFKA_SSL_CERT_FILE: "",
          KAFKA_SSL_KEY_FILE: "",
          KAFKA_SSL_KEY_PASSWORD_FILE: "",
        },
        /^fail tls +127\.0\.0\.1:29303: the broker's certificate "CN=localhost \(expired\)" \(issuer "CN=task-runner test ca", valid 2020-01-01 to 2020-02-01\) expired on 2020-02-01T00:00:00\.000Z$/m,
      ],
      [
        "untrusted CA",
        { ...scram, KAFKA_SSL_CA_FILE: `${tlsDir}/other-ca.pem` },
        /^fail tls .*"CN=localhost" .*is not signed by a CA in KAFKA_SSL_CA_FILE/m,
      ],
      [
        "hostname mismatch",
        { ...scram, KAFKA_SSL_SERVERNAME: "wrong.example" },
        /^fail tls .*is not valid for "wrong\.example" \(it names IP Address:127\.0\.0\.1, DNS:localhost\)/m,
      ],
      [
        "SASL mechanism not enabled",
        { ...securedEnv(broker, "sasl_plaintext"), KAFKA_SASL_MECHANISM: "scram-sha-256" },
        /^fail sasl .*does not enable SASL SCRAM-SHA-256 .*it enables SCRAM-SHA-512, PLAIN/m,
      ],
      [
        "wrong credentials",
        { ...scram, KAFKA_SASL_PASSWORD_FILE: `${dir}/wrong.password` },
        /^fail sasl .*rejected SASL SCRAM-SHA-512 authentication \(wrong credentials/m,
      ],
      [
        "PLAINTEXT client against a TLS listener",
        { KAFKA_BROKERS: broker.mtls },
        /^fail protocol .*is a TLS listener \(certificate "CN=localhost"\), but KAFKA_SECURITY_PROTOCOL=PLAINTEXT/m,
      ],
      [
        "TLS client against a PLAINTEXT listener",
        {
          KAFKA_BROKERS: broker.plaintext,
          KAFKA_SECURITY_PROTOCOL: "SSL",
          KAFKA_SSL_CA_FILE: `${tlsDir}/ca.pem`,
        },
        /^fail protocol .*is a plaintext listener .*KAFKA_SECURITY_PROTOCOL=SSL expects TLS/m,
      ],
      [
        "all well",
        scram,
        /^ok +tls .*trusted\n.*\n^ok +sasl +authenticated with SASL SCRAM-SHA-512 as alice$/m,
      ],
    ];
    for (const [what, env, line] of doctorCases) {
      await t.step(`doctor: ${what}`, async () => {
        const { code, stdout, stderr } = await runAdmin("doctor", [
          ...asFlags(env),
          "--topic",
          "x",
        ]);
        assertMatch(stdout, line);
        assertEquals(code, what === "all well" ? 0 : 1, stdout);
        assertEquals(stderr, "", "doctor printed something besides its report");
        assertNoSecret([stdout], [...secrets, wrong, keyPassword], "doctor");
      });
    }
    await Deno.remove(dir, { recursive: true });
  } finally {
    await broker.stop();
  }
});
