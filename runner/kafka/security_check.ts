/**
 * Security findings: what a {@link probeListener} report means for these settings (wrong
 * protocol, untrusted or expired certificate, name mismatch, refused client certificate,
 * SASL mechanism not enabled), and kafkajs's SASL errors named by the setting to change.
 * The runner refuses to start on a `fail` finding; `doctor` prints them all.
 * @module
 */
import { KafkaSecurityError } from "../errors.ts";
import {
  type CertificateInfo,
  type ListenerReport,
  probeListener,
  readCertificate,
} from "./listener_probe.ts";
import { readSettingFile, type SecuritySettings, SETTING, usesSasl, usesTls } from "./security.ts";

/** One finding. */
export interface Finding {
  /** `tls`, `sasl` or `protocol`. */
  name: "tls" | "sasl" | "protocol";
  status: "ok" | "warn" | "fail";
  message: string;
  fix?: string;
}

/** A certificate expiring within this many days is a warning. */
export const EXPIRY_WARNING_DAYS = 14;

const day = (d: Date) => d.toISOString().slice(0, 10);
const named = (c: CertificateInfo) =>
  `"${c.subject}" (issuer "${c.issuer}", valid ${day(c.validFrom)} to ${day(c.validTo)})`;

/** What the report means under these settings, as findings (the files already read). */
export function interpretProbe(
  report: ListenerReport,
  s: SecuritySettings,
  files: { ca?: string; cert?: string },
  now: Date = new Date(),
): Finding[] {
  const at = report.address;
  const protocol = `${SETTING.securityProtocol}=${s.securityProtocol}`;
  if (report.speaks === "unreachable" || report.speaks === "unknown") return [];
  if (usesTls(s) && report.speaks === "plaintext") {
    return [{
      name: "protocol",
      status: "fail",
      message: `${at} is a plaintext listener (it answered a Kafka request without TLS), ` +
        `but ${protocol} expects TLS`,
      fix: `set ${SETTING.securityProtocol}=${
        usesSasl(s) ? "SASL_PLAINTEXT" : "PLAINTEXT"
      }, or point KAFKA_BROKERS at the brokers' TLS listener`,
    }];
  }
  if (!usesTls(s) && report.speaks === "tls") {
    return [{
      name: "protocol",
      status: "fail",
      message: `${at} is a TLS listener (certificate ${
        report.certificate ? `"${report.certificate.subject}"` : "unknown"
      }), but ${protocol} does not use TLS`,
      fix: `set ${SETTING.securityProtocol}=${usesSasl(s) ? "SASL_SSL" : "SSL"} ` +
        `(and ${SETTING.sslCaFile} if its CA is private)`,
    }];
  }
  const out: Finding[] = [];
  if (report.speaks === "tls" && report.certificate) {
    out.push(...certificateFindings(report, s, files, now));
  }
  if (report.refusedAfterHandshake && out.every((f) => f.status !== "fail")) {
    out.push(clientCertificateFinding(report, s, files, now));
  }
  if (usesSasl(s) && report.saslMechanisms && out.every((f) => f.status !== "fail")) {
    const wanted = s.saslMechanism.toUpperCase();
    out.push(
      report.saslMechanisms.includes(wanted)
        ? { name: "sasl", status: "ok", message: `${at} enables SASL ${wanted}` }
        : {
          name: "sasl",
          status: "fail",
          message: `${at} does not enable SASL ${wanted} (${SETTING.saslMechanism}); it enables ${
            report.saslMechanisms.join(", ") || "none"
          }`,
          fix: `set ${SETTING.saslMechanism} to one of ${
            report.saslMechanisms.map((m) => m.toLowerCase()).join(", ")
          }, or enable ${wanted} on the broker (sasl.enabled.mechanisms)`,
        },
    );
  }
  return out;
}

function certificateFindings(
  report: ListenerReport,
  s: SecuritySettings,
  files: { ca?: string },
  now: Date,
): Finding[] {
  const c = report.certificate!;
  const at = report.address;
  if (c.validTo.getTime() <= now.getTime()) {
    return [{
      name: "tls",
      status: "fail",
      message: `${at}: the broker's certificate ${named(c)} expired on ${c.validTo.toISOString()}`,
      fix:
        "renew the broker's certificate (ssl.keystore.location on the broker); nothing to change here",
    }];
  }
  if (c.validFrom.getTime() > now.getTime()) {
    return [{
      name: "tls",
      status: "fail",
      message: `${at}: the broker's certificate ${named(c)} is not valid before ` +
        c.validFrom.toISOString(),
      fix: "check the clocks of this machine and of the broker",
    }];
  }
  if (!report.trusted) {
    return [{
      name: "tls",
      status: "fail",
      message: `${at}: the broker's certificate ${named(c)} is not signed by a CA in ${
        files.ca ? `${SETTING.sslCaFile} (${s.sslCaFile})` : `the system's trust store`
      }`,
      fix: `set ${SETTING.sslCaFile} to the PEM bundle of the CA that signed "${c.issuer}"`,
    }];
  }
  if (!report.nameMatches) {
    const name = s.sslServername || report.address.replace(/:\d+$/, "");
    return [{
      name: "tls",
      status: "fail",
      message: `${at}: the broker's certificate ${named(c)} is not valid for "${name}" ` +
        `(it names ${c.altNames || "no alternative names"})`,
      fix:
        `connect with a name the certificate holds (KAFKA_BROKERS), or set ${SETTING.sslServername}` +
        " to one of them",
    }];
  }
  const daysLeft = (c.validTo.getTime() - now.getTime()) / 86_400_000;
  if (daysLeft <= EXPIRY_WARNING_DAYS) {
    return [{
      name: "tls",
      status: "warn",
      message: `${at}: the broker's certificate ${named(c)} expires in ${
        Math.floor(daysLeft)
      } days`,
      fix: "renew the broker's certificate before it expires",
    }];
  }
  return [{ name: "tls", status: "ok", message: `${at}: TLS to ${named(c)}, trusted` }];
}

function clientCertificateFinding(
  report: ListenerReport,
  s: SecuritySettings,
  files: { cert?: string },
  now: Date,
): Finding {
  const at = report.address;
  const why = report.refusedAfterHandshake;
  if (!files.cert) {
    return {
      name: "tls",
      status: "fail",
      message: `${at} refused the connection after the TLS handshake (${why}): ` +
        "it requires a client certificate and none is set",
      fix: `set ${SETTING.sslCertFile} and ${SETTING.sslKeyFile} (mTLS)`,
    };
  }
  const mine = readCertificate(files.cert);
  if (mine.validTo.getTime() <= now.getTime()) {
    return {
      name: "tls",
      status: "fail",
      message:
        `${at} refused the client certificate in ${SETTING.sslCertFile} (${s.sslCertFile}): ` +
        `${named(mine)} expired on ${mine.validTo.toISOString()}`,
      fix:
        `renew the client certificate and update ${SETTING.sslCertFile} and ${SETTING.sslKeyFile}`,
    };
  }
  return {
    name: "tls",
    status: "fail",
    message: `${at} refused the client certificate in ${SETTING.sslCertFile} (${s.sslCertFile}), ` +
      `${named(mine)} (${why})`,
    fix: "use a client certificate signed by a CA in the broker's ssl.truststore",
  };
}

/**
 * Probe the bootstrap brokers and return the findings of the first one that answers
 * (all brokers of a cluster share a listener set-up).
 */
export async function securityFindings(
  brokers: string[],
  s: SecuritySettings,
  options: { timeoutMs?: number; now?: Date } = {},
): Promise<Finding[]> {
  const files = {
    ca: s.sslCaFile ? readSettingFile(s.sslCaFile, SETTING.sslCaFile) : undefined,
    cert: s.sslCertFile ? readSettingFile(s.sslCertFile, SETTING.sslCertFile) : undefined,
  };
  for (const address of brokers) {
    const report = await probeListener(address, {
      tls: usesTls(s),
      ca: files.ca,
      cert: files.cert,
      key: s.sslKeyFile ? readSettingFile(s.sslKeyFile, SETTING.sslKeyFile) : undefined,
      passphrase: s.sslKeyPasswordFile
        ? readSettingFile(s.sslKeyPasswordFile, SETTING.sslKeyPasswordFile)
        : undefined,
      servername: s.sslServername || undefined,
      saslMechanism: usesSasl(s) ? s.saslMechanism.toUpperCase() : undefined,
      timeoutMs: options.timeoutMs,
    });
    if (report.speaks === "unreachable") continue;
    return interpretProbe(report, s, files, options.now);
  }
  return [];
}

/**
 * The runner's start-up check: refuse at once, naming the setting, when the brokers cannot
 * accept these security settings (kafkajs would retry for a minute, then report "Closed
 * connection"). Unreachable brokers are left to the client's own retries.
 *
 * @throws {KafkaSecurityError} with the first failing finding and its fix.
 */
export async function checkBrokerSecurity(
  brokers: string[],
  s: SecuritySettings,
  options: { timeoutMs?: number } = {},
): Promise<void> {
  const fail = (await securityFindings(brokers, s, options)).find((f) => f.status === "fail");
  if (fail) throw new KafkaSecurityError(`${fail.message}: ${fail.fix}`);
}

/**
 * kafkajs's authentication errors as a finding naming the setting to change; null for other
 * errors. Kafka says which it is: an unsupported mechanism (UNSUPPORTED_SASL_MECHANISM) or
 * wrong credentials (SASL_AUTHENTICATION_FAILED).
 */
export function saslFinding(error: unknown, s: SecuritySettings): Finding | null {
  const e = error as { name?: string; message?: string; type?: string };
  const text = `${e.message ?? ""}`;
  const mechanism = s.saslMechanism.toUpperCase();
  if (
    e.type === "UNSUPPORTED_SASL_MECHANISM" ||
    /does not support the requested SASL|mechanism is not supported/.test(text)
  ) {
    return {
      name: "sasl",
      status: "fail",
      message:
        `the brokers do not enable SASL ${mechanism} (${SETTING.saslMechanism}=${s.saslMechanism})`,
      fix: "run `main.ts doctor` to see the mechanisms they enable",
    };
  }
  if (e.name === "KafkaJSSASLAuthenticationError" || e.type === "SASL_AUTHENTICATION_FAILED") {
    const secret = s.saslMechanism === "oauthbearer"
      ? `the token (${
        s.oauthbearerTokenFile ? SETTING.oauthbearerTokenFile : SETTING.oauthbearerTokenUrl
      })`
      : `${SETTING.saslUsername}=${s.saslUsername} and ${
        s.saslPasswordFile ? SETTING.saslPasswordFile : SETTING.saslPassword
      }`;
    return {
      name: "sasl",
      status: "fail",
      message:
        `the brokers rejected SASL ${mechanism} authentication (wrong credentials; Kafka said: ${
          text.replace(/^.*?failed: /, "")
        })`,
      fix: `check ${secret}`,
    };
  }
  return null;
}

/** kafkajs's authentication errors as a {@link KafkaSecurityError}; other errors unchanged. */
export function explainKafkaError(error: unknown, s: SecuritySettings): unknown {
  const finding = saslFinding(error, s);
  return finding ? new KafkaSecurityError(`${finding.message}: ${finding.fix}`) : error;
}
