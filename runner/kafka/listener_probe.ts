/**
 * What a broker listener speaks, found with one raw connection and at most two tiny Kafka
 * requests (ApiVersions v0, SaslHandshake v1), both allowed before authentication. Used where
 * kafkajs only says "Closed connection" or "unable to verify the first certificate" after a
 * minute of retries: the runner's start-up check and `doctor`.
 * @module
 */
import * as net from "node:net";
import * as tls from "node:tls";
import { X509Certificate } from "node:crypto";

/** A certificate, as the messages name it. */
export interface CertificateInfo {
  subject: string;
  issuer: string;
  validFrom: Date;
  validTo: Date;
  /** Subject alternative names as the certificate lists them. */
  altNames: string;
}

/** What {@link probeListener} found. */
export interface ListenerReport {
  address: string;
  /**
   * `tls`: a TLS handshake completed. `plaintext`: a Kafka request over plain TCP got a Kafka
   * answer. `unreachable`: no TCP connection. `unknown`: connected, but neither of those.
   */
  speaks: "tls" | "plaintext" | "unreachable" | "unknown";
  /** Why, for `unreachable` and `unknown`. */
  reason?: string;
  /** tls: the broker's certificate. */
  certificate?: CertificateInfo;
  /** tls: the certificate chains to a CA in `ca` (or the system's). */
  trusted?: boolean;
  /** tls: the certificate is valid for the name we connect to. */
  nameMatches?: boolean;
  /** tls: the broker failed or closed the connection after the handshake (mTLS refusal). */
  refusedAfterHandshake?: string;
  /** SASL mechanisms the listener enables, when asked (`saslMechanism` option). */
  saslMechanisms?: string[];
}

/** Options of {@link probeListener}. */
export interface ProbeOptions {
  /** Try TLS first (else plain TCP first); the other is tried when the first one fails. */
  tls: boolean;
  /** PEM CA bundle; empty: the system's roots. */
  ca?: string;
  /** Client certificate and key (mTLS). */
  cert?: string;
  key?: string;
  passphrase?: string;
  /** Name to verify instead of the host. */
  servername?: string;
  /** Ask the listener which SASL mechanisms it enables (SaslHandshake with this one). */
  saslMechanism?: string;
  /** Time allowed for each step, in ms. @default 3000 */
  timeoutMs?: number;
}

/** Split `host:port` (also `[v6]:port`). */
export function splitAddress(address: string): { host: string; port: number } {
  const at = address.lastIndexOf(":");
  return {
    host: address.slice(0, at).replace(/^\[(.*)\]$/, "$1"),
    port: Number(address.slice(at + 1)),
  };
}

/** One Kafka request frame: size, api key, version, correlation id, client id, body. */
function frame(apiKey: number, version: number, body: Uint8Array = new Uint8Array()): Uint8Array {
  const clientId = new TextEncoder().encode("task-runner-probe");
  const size = 2 + 2 + 4 + 2 + clientId.length + body.length;
  const out = new Uint8Array(4 + size);
  const view = new DataView(out.buffer);
  view.setInt32(0, size);
  view.setInt16(4, apiKey);
  view.setInt16(6, version);
  view.setInt32(8, 7);
  view.setInt16(12, clientId.length);
  out.set(clientId, 14);
  out.set(body, 14 + clientId.length);
  return out;
}

function kafkaString(text: string): Uint8Array {
  const bytes = new TextEncoder().encode(text);
  const out = new Uint8Array(2 + bytes.length);
  new DataView(out.buffer).setInt16(0, bytes.length);
  out.set(bytes, 2);
  return out;
}

/** The mechanisms in a SaslHandshake v1 response body (after the correlation id). */
function enabledMechanisms(body: Uint8Array): string[] {
  const view = new DataView(body.buffer, body.byteOffset, body.byteLength);
  const count = view.getInt32(2);
  const out: string[] = [];
  let at = 6;
  for (let i = 0; i < count && at + 2 <= body.length; i++) {
    const length = view.getInt16(at);
    out.push(new TextDecoder().decode(body.subarray(at + 2, at + 2 + length)));
    at += 2 + length;
  }
  return out;
}

type Socket = net.Socket | tls.TLSSocket;

/** The error a socket failed with before anyone listened (an mTLS alert right after the handshake). */
const failures = new WeakMap<Socket, Error>();

/**
 * Send one request on `socket` and resolve with the response body (correlation id stripped),
 * or reject with why not ("closed", a socket error, "timeout").
 */
function exchange(socket: Socket, request: Uint8Array, timeoutMs: number): Promise<Uint8Array> {
  return new Promise((resolve, reject) => {
    let buffered = new Uint8Array();
    const done = (error: Error | null, body?: Uint8Array) => {
      clearTimeout(timer);
      socket.off("data", onData).off("error", onError).off("close", onClose);
      error ? reject(error) : resolve(body!);
    };
    const onData = (chunk: Uint8Array) => {
      buffered = new Uint8Array([...buffered, ...chunk]);
      if (buffered.length < 4) return;
      const size = new DataView(buffered.buffer).getInt32(0);
      // A TLS record (alert 0x15 or handshake 0x16, version 3.x) is no Kafka frame.
      if (buffered[0] >= 0x14 && buffered[0] <= 0x17 && buffered[1] === 3) {
        done(new Error("the listener answered with TLS"));
      } else if (size < 4 || size > 1 << 20) {
        done(new Error("the answer is not a Kafka response"));
      } else if (buffered.length >= 4 + size) {
        done(null, buffered.subarray(8, 4 + size));
      }
    };
    const onError = (error: Error) => done(error);
    const onClose = () => done(new Error("the broker closed the connection"));
    const timer = setTimeout(() => done(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
    const failed = failures.get(socket);
    if (failed || socket.destroyed) {
      return done(failed ?? new Error("the broker closed the connection"));
    }
    socket.on("data", onData).on("error", onError).on("close", onClose);
    socket.write(request);
  });
}

function certificateInfo(raw: Uint8Array | string): CertificateInfo {
  const x = new X509Certificate(raw);
  return {
    subject: x.subject.replace(/\n/g, ", "),
    issuer: x.issuer.replace(/\n/g, ", "),
    validFrom: new Date(x.validFrom),
    validTo: new Date(x.validTo),
    altNames: x.subjectAltName ?? "",
  };
}

/** The PEM certificates in a bundle. */
function pemCertificates(bundle: string): X509Certificate[] {
  const blocks = bundle.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g);
  return (blocks ?? []).map((pem) => new X509Certificate(pem));
}

/** True when `leaf` (or a certificate of the chain it came with) is signed by a CA of `roots`. */
function chainsTo(chain: X509Certificate[], roots: X509Certificate[]): boolean {
  return chain.some((c) => roots.some((r) => c.checkIssued(r) && c.verify(r.publicKey)));
}

/** The peer's chain, leaf first. */
function peerChain(socket: tls.TLSSocket): X509Certificate[] {
  const out: X509Certificate[] = [];
  let c = socket.getPeerCertificate(true) as tls.DetailedPeerCertificate | undefined;
  const seen = new Set<string>();
  while (c?.raw && !seen.has(c.fingerprint256)) {
    seen.add(c.fingerprint256);
    out.push(new X509Certificate(c.raw));
    c = c.issuerCertificate;
  }
  return out;
}

function openTcp(host: string, port: number, timeoutMs: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host, port });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no TCP connection within ${timeoutMs} ms`));
    }, timeoutMs);
    socket.once("connect", () => (clearTimeout(timer), resolve(socket)));
    socket.once("error", (e) => (clearTimeout(timer), reject(e)));
  });
}

/** A TLS connection and the broker's chain, taken at the handshake (the broker may close next). */
interface TlsConnection {
  socket: tls.TLSSocket;
  chain: X509Certificate[];
}

function openTls(
  host: string,
  port: number,
  options: ProbeOptions,
): Promise<TlsConnection> {
  const timeoutMs = options.timeoutMs ?? 3000;
  return new Promise((resolve, reject) => {
    const socket = tls.connect({
      host,
      port,
      // Verified below, by us, so that the report can say *why* it is not trusted.
      rejectUnauthorized: false,
      ...(options.servername || !net.isIP(host) ? { servername: options.servername || host } : {}),
      ...(options.ca ? { ca: options.ca } : {}),
      ...(options.cert ? { cert: options.cert, key: options.key } : {}),
      ...(options.passphrase ? { passphrase: options.passphrase } : {}),
    });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no TLS handshake within ${timeoutMs} ms`));
    }, timeoutMs);
    let connected = false;
    socket.once("secureConnect", () => {
      clearTimeout(timer);
      connected = true;
      resolve({ socket, chain: peerChain(socket) });
    });
    socket.on("error", (e) => {
      if (connected) {
        if (!failures.has(socket)) failures.set(socket, e);
        return;
      }
      clearTimeout(timer);
      socket.destroy();
      reject(e);
    });
  });
}

async function plaintext(
  address: string,
  options: ProbeOptions,
): Promise<ListenerReport> {
  const { host, port } = splitAddress(address);
  const timeoutMs = options.timeoutMs ?? 3000;
  let socket: net.Socket;
  try {
    socket = await openTcp(host, port, timeoutMs);
  } catch (error) {
    return { address, speaks: "unreachable", reason: (error as Error).message };
  }
  try {
    await exchange(socket, frame(18, 0), timeoutMs);
    const report: ListenerReport = { address, speaks: "plaintext" };
    if (options.saslMechanism) {
      const body = await exchange(
        socket,
        frame(17, 1, kafkaString(options.saslMechanism)),
        timeoutMs,
      )
        .catch(() => null);
      if (body) report.saslMechanisms = enabledMechanisms(body);
    }
    return report;
  } catch (error) {
    return { address, speaks: "unknown", reason: (error as Error).message };
  } finally {
    socket.destroy();
  }
}

async function overTls(address: string, options: ProbeOptions): Promise<ListenerReport> {
  const { host, port } = splitAddress(address);
  const timeoutMs = options.timeoutMs ?? 3000;
  let socket: tls.TLSSocket;
  let chain: X509Certificate[];
  try {
    ({ socket, chain } = await openTls(host, port, options));
  } catch (error) {
    const reason = (error as Error).message;
    return /ECONNREFUSED|EHOSTUNREACH|ENETUNREACH|ENOTFOUND|no TCP/.test(reason)
      ? { address, speaks: "unreachable", reason }
      : { address, speaks: "unknown", reason };
  }
  try {
    const leaf = chain[0];
    const roots = options.ca ? pemCertificates(options.ca) : pemCertificates(
      tls.rootCertificates.join("\n"),
    );
    const name = options.servername || host;
    const report: ListenerReport = {
      address,
      speaks: "tls",
      certificate: leaf ? certificateInfo(leaf.raw) : undefined,
      trusted: leaf ? chainsTo(chain, roots) : false,
      nameMatches: leaf
        ? (net.isIP(name) ? leaf.checkIP(name) : leaf.checkHost(name)) !== undefined
        : false,
    };
    try {
      await exchange(socket, frame(18, 0), timeoutMs);
      if (options.saslMechanism) {
        const request = frame(17, 1, kafkaString(options.saslMechanism));
        const body = await exchange(socket, request, timeoutMs).catch(() => null);
        if (body) report.saslMechanisms = enabledMechanisms(body);
      }
    } catch (error) {
      report.refusedAfterHandshake = (error as Error).message;
    }
    return report;
  } finally {
    socket.destroy();
  }
}

/**
 * Connect to `address` and find out what it speaks: TLS (with the certificate checked against
 * `ca`, the name and the clock) or PLAINTEXT. The protocol asked for is tried first, the other
 * one only when the first fails, so that a mismatch can be named.
 */
export async function probeListener(
  address: string,
  options: ProbeOptions,
): Promise<ListenerReport> {
  const first = options.tls ? await overTls(address, options) : await plaintext(address, options);
  if (first.speaks !== "unknown") return first;
  const other = options.tls ? await plaintext(address, options) : await overTls(address, options);
  return other.speaks === "unknown" || other.speaks === "unreachable" ? first : other;
}

/** Certificate facts for the client's own certificate (expired before it is even sent?). */
export function readCertificate(pem: string): CertificateInfo {
  return certificateInfo(pem);
}
