/**
 * Who may do what on the console: reading is open to whoever reaches the listener (loopback by
 * default); actions need the console token (read from a file, like other secrets) and a CSRF
 * token of this runner's life, both in request headers, so that another site's form or link
 * cannot act.
 * @module
 */
import { ConfigError } from "../errors.ts";

/** Hosts that are loopback: a console bound there is reachable from this machine only. */
const LOOPBACK = /^(127\.\d{1,3}\.\d{1,3}\.\d{1,3}|::1|\[::1\]|localhost)$/;

/** True when `host` is a loopback address or `localhost`. */
export const isLoopback = (host: string): boolean => LOOPBACK.test(host);

/**
 * Read the console token from `file` (null: no token, read-only console), and refuse a
 * non-loopback bind without one.
 * @throws {ConfigError} naming the option and what to do.
 */
export async function loadConsoleToken(
  host: string,
  file: string | null,
): Promise<string | null> {
  let token: string | null = null;
  if (file !== null) {
    try {
      token = (await Deno.readTextFile(file)).trim();
    } catch (error) {
      throw new ConfigError(
        `Cannot start runner: CONSOLE_TOKEN_FILE ${file} cannot be read ` +
          `(${(error as Error).name}); write the token into it or unset the option`,
      );
    }
    if (token.length < 16) {
      throw new ConfigError(
        `Cannot start runner: the token in CONSOLE_TOKEN_FILE ${file} must be at least 16 ` +
          `characters, got ${token.length}`,
      );
    }
  }
  if (token === null && !isLoopback(host)) {
    throw new ConfigError(
      `Cannot start runner: METRICS_HOST ${host} is not a loopback address, so the console ` +
        "would be reachable from other machines: set CONSOLE_TOKEN_FILE to a file holding a " +
        "token, or bind 127.0.0.1",
    );
  }
  return token;
}

/** Options of {@link ConsoleAccess}. */
export interface ConsoleAccessOptions {
  /** The console token; null turns actions off. */
  token: string | null;
  /** The CSRF token pages receive. @default 128 random bits in hex */
  csrf?: string;
}

/** Checks an action request; the reason it is refused, with its HTTP status. */
export interface Refusal {
  status: number;
  message: string;
}

/** The console's access rules. */
export class ConsoleAccess {
  readonly #token: string | null;
  /** Sent to pages (GET /api/session); actions must send it back in `x-csrf-token`. */
  readonly csrf: string;

  constructor(options: ConsoleAccessOptions) {
    this.#token = options.token;
    this.csrf = options.csrf ??
      Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, "0"))
        .join("");
  }

  /** True when actions can be enabled by a token. */
  get actionsEnabled(): boolean {
    return this.#token !== null;
  }

  /** Null when `request` may act, else why not. */
  checkAction(request: Request): Refusal | null {
    if (request.method !== "POST") {
      return { status: 405, message: "actions are POST requests" };
    }
    if (this.#token === null) {
      return {
        status: 403,
        message: "actions are off: this runner has no console token " +
          "(set CONSOLE_TOKEN_FILE to a file holding one and restart)",
      };
    }
    if (!equal(request.headers.get("x-csrf-token") ?? "", this.csrf)) {
      return { status: 403, message: "refused: missing or stale CSRF token (reload the page)" };
    }
    if (!equal(request.headers.get("x-console-token") ?? "", this.#token)) {
      return { status: 401, message: "refused: the console token is missing or wrong" };
    }
    return null;
  }
}

/** Compare in time that does not depend on where the texts differ. */
function equal(a: string, b: string): boolean {
  const x = new TextEncoder().encode(a);
  const y = new TextEncoder().encode(b);
  let diff = x.length ^ y.length;
  for (let i = 0; i < Math.max(x.length, y.length); i++) diff |= (x[i] ?? 0) ^ (y[i] ?? 0);
  return diff === 0;
}
