/**
 * `doctor`'s TLS, SASL and protocol checks: one raw connection to the bootstrap brokers with
 * the runner's own settings, so that what kafkajs reports as "Closed connection" or "unable
 * to verify the first certificate" is named (untrusted CA, name mismatch, expired or expiring
 * certificate with its subject and dates, refused client certificate, SASL mechanism not
 * enabled, PLAINTEXT against TLS and the reverse).
 * @module
 */
import type { SecuritySettings } from "../../runner/kafka/security.ts";
import { securityFindings } from "../../runner/kafka/security_check.ts";
import type { Check } from "./doctor.ts";

/** Names of the checks this module adds; a `fail` among them skips the cluster checks. */
export const SECURITY_CHECKS = ["tls", "sasl", "protocol", "security"];

/** The security checks for `reachable` (bootstrap addresses that accept TCP connections). */
export async function securityChecks(
  reachable: string[],
  options: { security: SecuritySettings; timeoutMs: number },
): Promise<Check[]> {
  if (reachable.length === 0) return [];
  try {
    return await securityFindings(reachable, options.security, { timeoutMs: options.timeoutMs });
  } catch (error) {
    // A settings error (ConfigError) or an unreadable file (KafkaSecurityError): both name it.
    return [{
      name: "security",
      status: "fail",
      message: (error as Error).message,
      fix: "fix the setting named above",
    }];
  }
}
