/**
 * The security settings without a broker: which combinations are refused and how, secret
 * files (`$CREDENTIALS_DIRECTORY`), masking, the kafkajs options built, OAUTHBEARER token
 * refresh on a fake clock, and what a listener probe's findings say about certificates.
 */
import { assert, assertEquals, assertMatch, assertThrows } from "../helpers/assert.ts";
import { describeConfig, OPTIONS, resolveConfig } from "../../runner/config.ts";
import { ConfigError, KafkaSecurityError } from "../../runner/errors.ts";
import {
  checkSecurity,
  kafkaAuth,
  PLAINTEXT,
  readSettingFile,
  type SecuritySettings,
} from "../../runner/kafka/security.ts";
import { jwtExpiry, OAuthBearerTokens } from "../../runner/kafka/oauth_token.ts";
import { interpretProbe } from "../../runner/kafka/security_check.ts";
import type { ListenerReport } from "../../runner/kafka/listener_probe.ts";

const settings = (s: Partial<SecuritySettings>): SecuritySettings => ({ ...PLAINTEXT, ...s });

Deno.test("every security setting is a row of OPTIONS, env KAFKA_..., defaults to unset", () => {
  const envs = [
    "KAFKA_SECURITY_PROTOCOL",
    "KAFKA_SSL_CA_FILE",
    "KAFKA_SSL_CERT_FILE",
    "KAFKA_SSL_KEY_FILE",
    "KAFKA_SSL_KEY_PASSWORD_FILE",
    "KAFKA_SSL_SERVERNAME",
    "KAFKA_SASL_MECHANISM",
    "KAFKA_SASL_USERNAME",
    "KAFKA_SASL_PASSWORD_FILE",
    "KAFKA_SASL_PASSWORD",
    "KAFKA_SASL_OAUTHBEARER_TOKEN_FILE",
    "KAFKA_SASL_OAUTHBEARER_TOKEN_URL",
    "KAFKA_SASL_OAUTHBEARER_CLIENT_ID",
    "KAFKA_SASL_OAUTHBEARER_CLIENT_SECRET_FILE",
    "KAFKA_SASL_OAUTHBEARER_SCOPE",
  ];
  for (const env of envs) assert(OPTIONS.some((o) => o.env === env), `${env} has no row`);
  const config = resolveConfig({}, {});
  assertEquals(config.securityProtocol, "PLAINTEXT");
  assertEquals(config.saslMechanism, "");
  assertThrows(
    () => resolveConfig({}, { KAFKA_SECURITY_PROTOCOL: "TLS" }),
    ConfigError,
    'KAFKA_SECURITY_PROTOCOL must be one of PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL, got "TLS"',
  );
  assertThrows(
    () => resolveConfig({ "sasl-mechanism": "gssapi" }, {}),
    ConfigError,
    "--sasl-mechanism must be one of",
  );
  // Flags win over the environment, as for every option.
  assertEquals(
    resolveConfig({ "security-protocol": "SSL" }, { KAFKA_SECURITY_PROTOCOL: "SASL_SSL" })
      .securityProtocol,
    "SSL",
  );
});

Deno.test("the start-up line masks KAFKA_SASL_PASSWORD and shows the rest", () => {
  const config = resolveConfig({}, {
    KAFKA_SECURITY_PROTOCOL: "SASL_SSL",
    KAFKA_SASL_MECHANISM: "plain",
    KAFKA_SASL_USERNAME: "bob",
    KAFKA_SASL_PASSWORD: "hunter2-secret",
  });
  const line = JSON.stringify(describeConfig(config));
  assert(!line.includes("hunter2-secret"), line);
  assertMatch(line, /"saslPassword":"\(set, masked\)"/);
  assertMatch(line, /"saslUsername":"bob"/);
  assertEquals(describeConfig(resolveConfig({}, {})).saslPassword, "");
});

Deno.test("settings that do not fit together are refused, naming them", () => {
  const cases: Array<[Partial<SecuritySettings>, RegExp]> = [
    [
      { sslCaFile: "/ca.pem" },
      /KAFKA_SSL_CA_FILE set, but KAFKA_SECURITY_PROTOCOL=PLAINTEXT does not use TLS/,
    ],
    [
      { securityProtocol: "SASL_SSL" },
      /KAFKA_SECURITY_PROTOCOL=SASL_SSL needs KAFKA_SASL_MECHANISM/,
    ],
    [{ saslMechanism: "plain" }, /KAFKA_SASL_MECHANISM set, but .*PLAINTEXT does not use SASL/],
    [
      { securityProtocol: "SSL", sslCertFile: "/c.pem" },
      /KAFKA_SSL_CERT_FILE and KAFKA_SSL_KEY_FILE go together/,
    ],
    [
      { securityProtocol: "SASL_SSL", saslMechanism: "scram-sha-512", saslUsername: "a" },
      /needs exactly one of KAFKA_SASL_PASSWORD_FILE \(preferred\) and KAFKA_SASL_PASSWORD/,
    ],
    [
      { securityProtocol: "SASL_SSL", saslMechanism: "plain", saslPassword: "x" },
      /KAFKA_SASL_MECHANISM=plain needs KAFKA_SASL_USERNAME/,
    ],
    [
      { securityProtocol: "SASL_SSL", saslMechanism: "oauthbearer" },
      /needs exactly one of KAFKA_SASL_OAUTHBEARER_TOKEN_FILE and KAFKA_SASL_OAUTHBEARER_TOKEN_URL/,
    ],
    [
      {
        securityProtocol: "SASL_SSL",
        saslMechanism: "oauthbearer",
        oauthbearerTokenUrl: "https://idp/t",
      },
      /KAFKA_SASL_OAUTHBEARER_TOKEN_URL needs KAFKA_SASL_OAUTHBEARER_CLIENT_ID/,
    ],
  ];
  for (const [s, message] of cases) {
    const error = assertThrows(() => checkSecurity(settings(s)), ConfigError);
    assertMatch(error.message, message);
  }
  checkSecurity(PLAINTEXT);
});

Deno.test("secret files: $CREDENTIALS_DIRECTORY expanded, content never in an error", async () => {
  const dir = await Deno.makeTempDir();
  await Deno.writeTextFile(`${dir}/pw`, "s3cr3t\n");
  await Deno.writeTextFile(`${dir}/empty`, "");
  const env = (name: string) => name === "CREDENTIALS_DIRECTORY" ? dir : undefined;
  assertEquals(
    readSettingFile("$CREDENTIALS_DIRECTORY/pw", "KAFKA_SASL_PASSWORD_FILE", env),
    "s3cr3t",
  );
  assertThrows(
    () => readSettingFile("$CREDENTIALS_DIRECTORY/pw", "KAFKA_SASL_PASSWORD_FILE", () => undefined),
    KafkaSecurityError,
    "CREDENTIALS_DIRECTORY is not set: add LoadCredential=",
  );
  assertThrows(
    () => readSettingFile(`${dir}/missing`, "KAFKA_SASL_PASSWORD_FILE"),
    KafkaSecurityError,
    `KAFKA_SASL_PASSWORD_FILE: cannot read ${dir}/missing: no such file`,
  );
  assertThrows(
    () => readSettingFile(`${dir}/empty`, "KAFKA_SSL_CA_FILE"),
    KafkaSecurityError,
    "is empty",
  );
  // The kafkajs options: SASL with the file's password, TLS verified.
  const auth = kafkaAuth(settings({
    securityProtocol: "SASL_SSL",
    saslMechanism: "scram-sha-512",
    saslUsername: "alice",
    saslPasswordFile: `${dir}/pw`,
  }));
  assertEquals(auth.sasl, { mechanism: "scram-sha-512", username: "alice", password: "s3cr3t" });
  assertEquals(auth.ssl, { rejectUnauthorized: true });
  assertEquals(kafkaAuth(PLAINTEXT), {});
  await Deno.remove(dir, { recursive: true });
});

Deno.test("OIDC tokens: fetched once, reused, refreshed after 80 % of their lifetime", async () => {
  let now = 1_000_000;
  const requests: Array<{ auth: string; body: string }> = [];
  const tokens = new OAuthBearerTokens({
    tokenFile: "",
    tokenUrl: "https://idp.example/token",
    clientId: "runner",
    clientSecret: "cs",
    scope: "kafka",
    readTokenFile: () => "",
    now: () => now,
    fetch: (_url, init) => {
      requests.push({
        auth: String(new Headers(init?.headers).get("authorization")),
        body: String(init?.body),
      });
      return Promise.resolve(
        Response.json({ access_token: `t${requests.length}`, expires_in: 1000 }),
      );
    },
  });
  assertEquals(await tokens.token(), { value: "t1" });
  assertEquals(requests[0].auth, `Basic ${btoa("runner:cs")}`);
  assertEquals(requests[0].body, "grant_type=client_credentials&scope=kafka");
  now += 799_000;
  assertEquals((await Promise.all([tokens.token(), tokens.token()])).map((t) => t.value), [
    "t1",
    "t1",
  ]);
  now += 2_000; // 801 s of 1000: refresh (a 100 s token would refresh 60 s before expiry)
  const [a, b] = await Promise.all([tokens.token(), tokens.token()]);
  assertEquals(
    [a.value, b.value, requests.length],
    ["t2", "t2", 2],
    "one request for both callers",
  );
});

Deno.test("OIDC endpoint errors name the setting, never the secret", async () => {
  const tokens = new OAuthBearerTokens({
    tokenFile: "",
    tokenUrl: "https://idp.example/token?tenant=x",
    clientId: "runner",
    clientSecret: "very-secret",
    scope: "",
    readTokenFile: () => "",
    fetch: () => Promise.resolve(Response.json({ error: "invalid_client" }, { status: 401 })),
  });
  const error = await tokens.token().then(() => null, (e: Error) => e);
  assert(error instanceof KafkaSecurityError);
  assertEquals(
    error.message,
    "KAFKA_SASL_OAUTHBEARER_TOKEN_URL (https://idp.example): no token, HTTP 401 (invalid_client): " +
      "check KAFKA_SASL_OAUTHBEARER_CLIENT_ID and KAFKA_SASL_OAUTHBEARER_CLIENT_SECRET_FILE",
  );
});

Deno.test("a token file holding an expired JWT is named as such", async () => {
  const b64 = (v: unknown) => btoa(JSON.stringify(v)).replace(/=+$/, "");
  const jwt = `${b64({ alg: "none" })}.${b64({ sub: "x", exp: 1000 })}.`;
  assertEquals(jwtExpiry(jwt), 1_000_000);
  assertEquals(jwtExpiry("opaque-token"), null);
  const tokens = new OAuthBearerTokens({
    tokenFile: "/run/token",
    tokenUrl: "",
    clientId: "",
    clientSecret: "",
    scope: "",
    readTokenFile: () => jwt,
  });
  const error = await tokens.token().then(() => null, (e: Error) => e);
  assertMatch(
    String(error?.message),
    /KAFKA_SASL_OAUTHBEARER_TOKEN_FILE: the token in it expired at 1970/,
  );
});

Deno.test("certificate findings: expiring within 14 days warns, with subject and dates", () => {
  const now = new Date("2026-06-01T00:00:00Z");
  const report = (validTo: string, extra: Partial<ListenerReport> = {}): ListenerReport => ({
    address: "k1:9093",
    speaks: "tls",
    certificate: {
      subject: "CN=k1",
      issuer: "CN=ca",
      validFrom: new Date("2026-01-01T00:00:00Z"),
      validTo: new Date(validTo),
      altNames: "DNS:k1",
    },
    trusted: true,
    nameMatches: true,
    ...extra,
  });
  const ssl = settings({ securityProtocol: "SSL" });
  const [soon] = interpretProbe(report("2026-06-10T00:00:00Z"), ssl, {}, now);
  assertEquals(soon.status, "warn");
  assertEquals(
    soon.message,
    'k1:9093: the broker\'s certificate "CN=k1" (issuer "CN=ca", valid 2026-01-01 to 2026-06-10) expires in 9 days',
  );
  assertEquals(interpretProbe(report("2026-07-01T00:00:00Z"), ssl, {}, now)[0].status, "ok");
  const [expired] = interpretProbe(report("2026-05-01T00:00:00Z"), ssl, {}, now);
  assertEquals(expired.status, "fail");
  assertMatch(expired.message, /expired on 2026-05-01T00:00:00.000Z/);
  const [untrusted] = interpretProbe(
    report("2027-01-01T00:00:00Z", { trusted: false }),
    ssl,
    {},
    now,
  );
  assertMatch(untrusted.message, /is not signed by a CA in the system's trust store/);
  const [name] = interpretProbe(
    report("2027-01-01T00:00:00Z", { nameMatches: false }),
    ssl,
    {},
    now,
  );
  assertMatch(name.message, /is not valid for "k1" \(it names DNS:k1\)/);
});
