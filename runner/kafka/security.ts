/**
 * Kafka client security: the `KAFKA_SECURITY_PROTOCOL`, `KAFKA_SSL_*` and `KAFKA_SASL_*`
 * settings checked together, their secrets read from files, and turned into kafkajs `ssl` and
 * `sasl` options. Nothing here logs; no message holds a secret (only setting names and paths).
 * @module
 */
import type { ConnectionOptions } from "node:tls";
import type { SASLOptions } from "kafkajs";
import type { RunnerConfig } from "../config.ts";
import { ConfigError, KafkaSecurityError } from "../errors.ts";
import { OAuthBearerTokens } from "./oauth_token.ts";

/** The security settings of {@link RunnerConfig} (a whole config may be passed). */
export type SecuritySettings = Pick<
  RunnerConfig,
  | "securityProtocol"
  | "sslCaFile"
  | "sslCertFile"
  | "sslKeyFile"
  | "sslKeyPasswordFile"
  | "sslServername"
  | "saslMechanism"
  | "saslUsername"
  | "saslPasswordFile"
  | "saslPassword"
  | "oauthbearerTokenFile"
  | "oauthbearerTokenUrl"
  | "oauthbearerClientId"
  | "oauthbearerClientSecretFile"
  | "oauthbearerScope"
>;

/** PLAINTEXT, nothing else set: the defaults of every security setting. */
export const PLAINTEXT: SecuritySettings = Object.freeze({
  securityProtocol: "PLAINTEXT",
  sslCaFile: "",
  sslCertFile: "",
  sslKeyFile: "",
  sslKeyPasswordFile: "",
  sslServername: "",
  saslMechanism: "",
  saslUsername: "",
  saslPasswordFile: "",
  saslPassword: "",
  oauthbearerTokenFile: "",
  oauthbearerTokenUrl: "",
  oauthbearerClientId: "",
  oauthbearerClientSecretFile: "",
  oauthbearerScope: "",
});

/** The environment variable of each setting, for messages. */
export const SETTING: Readonly<Record<keyof SecuritySettings, string>> = {
  securityProtocol: "KAFKA_SECURITY_PROTOCOL",
  sslCaFile: "KAFKA_SSL_CA_FILE",
  sslCertFile: "KAFKA_SSL_CERT_FILE",
  sslKeyFile: "KAFKA_SSL_KEY_FILE",
  sslKeyPasswordFile: "KAFKA_SSL_KEY_PASSWORD_FILE",
  sslServername: "KAFKA_SSL_SERVERNAME",
  saslMechanism: "KAFKA_SASL_MECHANISM",
  saslUsername: "KAFKA_SASL_USERNAME",
  saslPasswordFile: "KAFKA_SASL_PASSWORD_FILE",
  saslPassword: "KAFKA_SASL_PASSWORD",
  oauthbearerTokenFile: "KAFKA_SASL_OAUTHBEARER_TOKEN_FILE",
  oauthbearerTokenUrl: "KAFKA_SASL_OAUTHBEARER_TOKEN_URL",
  oauthbearerClientId: "KAFKA_SASL_OAUTHBEARER_CLIENT_ID",
  oauthbearerClientSecretFile: "KAFKA_SASL_OAUTHBEARER_CLIENT_SECRET_FILE",
  oauthbearerScope: "KAFKA_SASL_OAUTHBEARER_SCOPE",
};

/** Just the security settings of `config` (defaults for those it lacks). */
export function securityOf(config: Partial<SecuritySettings>): SecuritySettings {
  const out: Record<string, unknown> = {};
  for (const key of Object.keys(PLAINTEXT) as (keyof SecuritySettings)[]) {
    out[key] = config[key] ?? PLAINTEXT[key];
  }
  return out as SecuritySettings;
}

/** True when the protocol wraps connections in TLS. */
export function usesTls(s: Pick<SecuritySettings, "securityProtocol">): boolean {
  return s.securityProtocol === "SSL" || s.securityProtocol === "SASL_SSL";
}

/** True when the protocol authenticates with SASL. */
export function usesSasl(s: Pick<SecuritySettings, "securityProtocol">): boolean {
  return s.securityProtocol.startsWith("SASL_");
}

const cannot = (why: string) => new ConfigError(`Cannot connect to Kafka: ${why}`);

/**
 * Check that the settings fit together (each one alone was checked by `resolveConfig`).
 * @throws {ConfigError} naming the settings and what to change.
 */
export function checkSecurity(s: SecuritySettings): void {
  const set = (key: keyof SecuritySettings) => s[key] !== "";
  const protocol = `${SETTING.securityProtocol}=${s.securityProtocol}`;
  if (!usesTls(s)) {
    const tlsOnly = ([
      "sslCaFile",
      "sslCertFile",
      "sslKeyFile",
      "sslKeyPasswordFile",
      "sslServername",
    ] as const).filter(set);
    if (tlsOnly.length > 0) {
      throw cannot(
        `${tlsOnly.map((k) => SETTING[k]).join(", ")} set, but ${protocol} does not use TLS; ` +
          `set ${SETTING.securityProtocol}=SSL or SASL_SSL, or unset them`,
      );
    }
  }
  if (set("sslCertFile") !== set("sslKeyFile")) {
    throw cannot(`${SETTING.sslCertFile} and ${SETTING.sslKeyFile} go together; set both or none`);
  }
  if (set("sslKeyPasswordFile") && !set("sslKeyFile")) {
    throw cannot(`${SETTING.sslKeyPasswordFile} is set without ${SETTING.sslKeyFile}`);
  }
  const oauthKeys = [
    "oauthbearerTokenFile",
    "oauthbearerTokenUrl",
    "oauthbearerClientId",
    "oauthbearerClientSecretFile",
    "oauthbearerScope",
  ] as const;
  const passwordKeys = ["saslUsername", "saslPasswordFile", "saslPassword"] as const;
  if (!usesSasl(s)) {
    const saslOnly = (["saslMechanism", ...passwordKeys, ...oauthKeys] as const).filter(set);
    if (saslOnly.length > 0) {
      throw cannot(
        `${saslOnly.map((k) => SETTING[k]).join(", ")} set, but ${protocol} does not use SASL; ` +
          `set ${SETTING.securityProtocol}=SASL_SSL or SASL_PLAINTEXT, or unset them`,
      );
    }
    return;
  }
  if (!set("saslMechanism")) {
    throw cannot(
      `${protocol} needs ${SETTING.saslMechanism} (plain, scram-sha-256, scram-sha-512 or oauthbearer)`,
    );
  }
  const mechanism = `${SETTING.saslMechanism}=${s.saslMechanism}`;
  if (s.saslMechanism === "oauthbearer") {
    const extra = passwordKeys.filter(set);
    if (extra.length > 0) {
      throw cannot(`${extra.map((k) => SETTING[k]).join(", ")} set, but ${mechanism} uses tokens`);
    }
    if (set("oauthbearerTokenFile") === set("oauthbearerTokenUrl")) {
      throw cannot(
        `${mechanism} needs exactly one of ${SETTING.oauthbearerTokenFile} and ` +
          SETTING.oauthbearerTokenUrl,
      );
    }
    if (set("oauthbearerTokenUrl")) {
      for (const key of ["oauthbearerClientId", "oauthbearerClientSecretFile"] as const) {
        if (!set(key)) throw cannot(`${SETTING.oauthbearerTokenUrl} needs ${SETTING[key]}`);
      }
    } else {
      const extraOidc = oauthKeys.filter((k) => k !== "oauthbearerTokenFile" && set(k));
      if (extraOidc.length > 0) {
        throw cannot(
          `${extraOidc.map((k) => SETTING[k]).join(", ")} set, but only ` +
            `${SETTING.oauthbearerTokenUrl} uses them`,
        );
      }
    }
    return;
  }
  const extra = oauthKeys.filter(set);
  if (extra.length > 0) {
    throw cannot(
      `${extra.map((k) => SETTING[k]).join(", ")} set, but ${mechanism} is not oauthbearer`,
    );
  }
  if (!set("saslUsername")) throw cannot(`${mechanism} needs ${SETTING.saslUsername}`);
  if (set("saslPasswordFile") === set("saslPassword")) {
    throw cannot(
      `${mechanism} needs exactly one of ${SETTING.saslPasswordFile} (preferred) and ` +
        SETTING.saslPassword,
    );
  }
}

/**
 * Read the file a setting names: `$CREDENTIALS_DIRECTORY/` expanded, one trailing newline
 * dropped. Errors name the setting and the path, never the content.
 *
 * @throws {KafkaSecurityError} when the file cannot be read or is empty.
 */
export function readSettingFile(
  path: string,
  setting: string,
  env: (name: string) => string | undefined = (name) => Deno.env.get(name),
): string {
  let file = path;
  if (path.startsWith("$CREDENTIALS_DIRECTORY/")) {
    const dir = env("CREDENTIALS_DIRECTORY");
    if (!dir) {
      throw new KafkaSecurityError(
        `${setting}=${path}, but CREDENTIALS_DIRECTORY is not set: add LoadCredential= for it ` +
          "to the unit, or give an absolute path",
      );
    }
    file = `${dir}/${path.slice("$CREDENTIALS_DIRECTORY/".length)}`;
  }
  let text: string;
  try {
    text = Deno.readTextFileSync(file);
  } catch (error) {
    const why = error instanceof Deno.errors.NotFound
      ? "no such file"
      : error instanceof Deno.errors.PermissionDenied
      ? "permission denied (the service user must be able to read it)"
      : (error as Error).name;
    throw new KafkaSecurityError(`${setting}: cannot read ${file}: ${why}`);
  }
  const value = text.replace(/\r?\n$/, "");
  if (value === "") throw new KafkaSecurityError(`${setting}: ${file} is empty`);
  return value;
}

/** The kafkajs options {@link kafkaAuth} builds. */
export interface KafkaAuth {
  /** kafkajs `ssl`: absent for PLAINTEXT and SASL_PLAINTEXT. */
  ssl?: ConnectionOptions | true;
  /** kafkajs `sasl`: absent without SASL. */
  sasl?: SASLOptions;
}

/** Options of {@link kafkaAuth}. */
export interface KafkaAuthOptions {
  /** Reads a setting's file. @default {@link readSettingFile} */
  readFile?: (path: string, setting: string) => string;
  /** HTTP client of the OIDC token endpoint. @default globalThis.fetch */
  fetch?: typeof fetch;
}

/**
 * The kafkajs `ssl` and `sasl` options for these settings. Files are read now (a missing one
 * fails at start-up, naming its setting); OAUTHBEARER tokens are fetched when kafkajs
 * authenticates a connection, refreshed before they expire.
 *
 * @throws {ConfigError} when the settings do not fit together.
 * @throws {KafkaSecurityError} when a file cannot be read.
 */
export function kafkaAuth(s: SecuritySettings, options: KafkaAuthOptions = {}): KafkaAuth {
  checkSecurity(s);
  const read = options.readFile ?? ((path, setting) => readSettingFile(path, setting));
  const out: KafkaAuth = {};
  if (usesTls(s)) {
    const ssl: ConnectionOptions = { rejectUnauthorized: true };
    if (s.sslCaFile) ssl.ca = read(s.sslCaFile, SETTING.sslCaFile);
    if (s.sslCertFile) ssl.cert = read(s.sslCertFile, SETTING.sslCertFile);
    if (s.sslKeyFile) ssl.key = read(s.sslKeyFile, SETTING.sslKeyFile);
    if (s.sslKeyPasswordFile) {
      ssl.passphrase = read(s.sslKeyPasswordFile, SETTING.sslKeyPasswordFile);
    }
    if (s.sslServername) ssl.servername = s.sslServername;
    out.ssl = ssl;
  }
  if (!usesSasl(s)) return out;
  if (s.saslMechanism === "oauthbearer") {
    const tokens = new OAuthBearerTokens({
      tokenFile: s.oauthbearerTokenFile,
      tokenUrl: s.oauthbearerTokenUrl,
      clientId: s.oauthbearerClientId,
      clientSecret: s.oauthbearerClientSecretFile
        ? read(s.oauthbearerClientSecretFile, SETTING.oauthbearerClientSecretFile)
        : "",
      scope: s.oauthbearerScope,
      readTokenFile: () => read(s.oauthbearerTokenFile, SETTING.oauthbearerTokenFile),
      fetch: options.fetch,
    });
    out.sasl = { mechanism: "oauthbearer", oauthBearerProvider: () => tokens.token() };
    return out;
  }
  const password = s.saslPasswordFile
    ? read(s.saslPasswordFile, SETTING.saslPasswordFile)
    : s.saslPassword;
  const mechanism = s.saslMechanism as "plain" | "scram-sha-256" | "scram-sha-512";
  out.sasl = { mechanism, username: s.saslUsername, password };
  return out;
}
