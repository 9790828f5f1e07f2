/**
 * OAUTHBEARER tokens for kafkajs: from a file (kept fresh by another agent) or from an OIDC
 * token endpoint with the client-credentials grant, refreshed before they expire.
 *
 * kafkajs calls the provider whenever it authenticates a connection, and again before the
 * session lifetime the broker announced runs out (KIP-368 re-authentication, which kafkajs
 * 2.2 implements: `reauthenticationThreshold`, 10 s by default). So a token is fetched when
 * one is needed and the cached one has used 80 % of its lifetime, or will expire within 60 s.
 * @module
 */
import { KafkaSecurityError } from "../errors.ts";

/** Options of {@link OAuthBearerTokens}. */
export interface OAuthBearerTokensOptions {
  /** The token file, re-read on every call; empty when `tokenUrl` is used. */
  tokenFile: string;
  /** OIDC token endpoint; empty when `tokenFile` is used. */
  tokenUrl: string;
  /** Client id at the endpoint. */
  clientId: string;
  /** Client secret (already read from its file). */
  clientSecret: string;
  /** Scope to ask for; empty: none. */
  scope: string;
  /** Reads the token file (with its setting's error messages). */
  readTokenFile: () => string;
  /** HTTP client. @default globalThis.fetch */
  fetch?: typeof fetch;
  /** Clock in ms. @default Date.now */
  now?: () => number;
  /** Time allowed for the endpoint to answer, in ms. @default 10000 */
  timeoutMs?: number;
}

/** A token and when it stops being valid (ms since the epoch; Infinity: unknown). */
interface Held {
  value: string;
  refreshAt: number;
}

/** The expiry (`exp`, seconds) in a JWT's payload, if it has one. */
export function jwtExpiry(token: string): number | null {
  const payload = token.split(".")[1];
  if (!payload) return null;
  try {
    const json = JSON.parse(atob(payload.replace(/-/g, "+").replace(/_/g, "/")));
    return typeof json.exp === "number" ? json.exp * 1000 : null;
  } catch {
    return null; // not a JWT: an opaque token, valid as far as we know
  }
}

/** When to fetch again a token valid from `now` until `expiresAt`. */
function refreshTime(now: number, expiresAt: number): number {
  if (!Number.isFinite(expiresAt)) return Infinity;
  const lifetime = Math.max(0, expiresAt - now);
  return now + Math.min(lifetime * 0.8, Math.max(0, lifetime - 60_000));
}

/** Token source for kafkajs's `oauthBearerProvider`. */
export class OAuthBearerTokens {
  readonly #options: OAuthBearerTokensOptions;
  readonly #fetch: typeof fetch;
  readonly #now: () => number;
  #held: Held | null = null;
  #pending: Promise<Held> | null = null;
  /** Tokens fetched from the endpoint so far (the `/metrics`-free way to see refreshes). */
  fetched = 0;

  constructor(options: OAuthBearerTokensOptions) {
    if ((options.tokenFile === "") === (options.tokenUrl === "")) {
      throw new TypeError('OAuthBearerTokens: exactly one of "tokenFile" and "tokenUrl" is needed');
    }
    this.#options = options;
    this.#fetch = options.fetch ?? globalThis.fetch;
    this.#now = options.now ?? Date.now;
  }

  /** A valid token, as kafkajs wants it. */
  async token(): Promise<{ value: string }> {
    if (this.#options.tokenFile) {
      const value = this.#options.readTokenFile().trim();
      const exp = jwtExpiry(value);
      if (exp !== null && exp <= this.#now()) {
        throw new KafkaSecurityError(
          `KAFKA_SASL_OAUTHBEARER_TOKEN_FILE: the token in it expired at ${
            new Date(exp).toISOString()
          }; whatever writes that file has stopped refreshing it`,
        );
      }
      return { value };
    }
    if (this.#held && this.#now() < this.#held.refreshAt) return { value: this.#held.value };
    this.#pending ??= this.#request().finally(() => this.#pending = null);
    this.#held = await this.#pending;
    return { value: this.#held.value };
  }

  async #request(): Promise<Held> {
    const { tokenUrl, clientId, clientSecret, scope } = this.#options;
    const body = new URLSearchParams({ grant_type: "client_credentials" });
    if (scope) body.set("scope", scope);
    const basic = btoa(`${encodeURIComponent(clientId)}:${encodeURIComponent(clientSecret)}`);
    const where = `KAFKA_SASL_OAUTHBEARER_TOKEN_URL (${new URL(tokenUrl).origin})`;
    let response: Response;
    try {
      response = await this.#fetch(tokenUrl, {
        method: "POST",
        headers: {
          authorization: `Basic ${basic}`,
          "content-type": "application/x-www-form-urlencoded",
          accept: "application/json",
        },
        body,
        signal: AbortSignal.timeout(this.#options.timeoutMs ?? 10_000),
      });
    } catch (error) {
      throw new KafkaSecurityError(
        `${where}: the token endpoint did not answer: ${(error as Error).name}`,
      );
    }
    const started = this.#now();
    let json: Record<string, unknown> = {};
    try {
      json = await response.json();
    } catch {
      // handled below: no access_token
    }
    if (!response.ok || typeof json.access_token !== "string") {
      const code = typeof json.error === "string" ? ` (${json.error})` : "";
      const hint = response.status === 401 || json.error === "invalid_client"
        ? ": check KAFKA_SASL_OAUTHBEARER_CLIENT_ID and KAFKA_SASL_OAUTHBEARER_CLIENT_SECRET_FILE"
        : "";
      throw new KafkaSecurityError(
        `${where}: no token, HTTP ${response.status}${code}${hint}`,
      );
    }
    this.fetched++;
    const value = json.access_token;
    const expiresAt = typeof json.expires_in === "number"
      ? started + json.expires_in * 1000
      : jwtExpiry(value) ?? Infinity;
    return { value, refreshAt: refreshTime(started, expiresAt) };
  }
}
