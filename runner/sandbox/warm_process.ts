/**
 * One warm sandbox process: a restricted `deno run` of `warm_loader.ts` that serves many tasks
 * of one function over the framed protocol described there. It parses the frames, keeps each
 * task's timeout and output budget, and turns every way a task can end into a
 * {@link ChildResult}. Where tasks go and when to recycle is `warm_sandbox.ts`'s job.
 * @module
 */
import { fileURLToPath as fromFileUrl, pathToFileURL as toFileUrl } from "node:url";
import { CLOSED_IMPORT_MAP } from "./child/introspection.ts";
import { EXIT, MAX_RESULT_BYTES, parseThrown } from "./child/protocol.ts";
import { describeExit, describeStatus } from "./exit_words.ts";
import { pumpLines, utf8Length } from "./output_lines.ts";
import { encodeHandshake, encodeTask, newNonce, parseFrame } from "./warm_protocol.ts";
import type { ChildResult, RunningChild, SandboxTask } from "./process_source.ts";
import { KillEscalation, spawnSandboxed } from "./process_group.ts";
import type { SpawnSettings } from "./spawn_settings.ts";

/** Why a warm process stopped taking tasks. */
export type RecycleReason =
  | "maxTasks"
  | "maxAge"
  | "heap"
  | "fileChanged"
  | "timeout"
  | "crash"
  | "stopped"
  | "idle";

/** A line a warm process printed outside of any running task (see `warm_loader.ts`). */
export interface SandboxOutput {
  /** The function the process serves. */
  handler: string;
  /** The warm process. */
  pid: number;
  /** `stdout`: direct writes; `stderr`: direct writes and the loader's fatal lines. */
  stream: "stdout" | "stderr";
  line: string;
  /** The line was cut at `maxLineBytes`. */
  truncated: boolean;
}

/** What a {@link WarmProcess} needs, resolved by `WarmSandboxes`. */
export interface WarmProcessSettings {
  spawn: SpawnSettings;
  concurrency: number;
  maxTasks: number;
  maxHeapBytes: number;
  idleTimeoutMs: number;
  /** Version of the handler file the process was started for. */
  version: string;
  onSandboxOutput: ((output: SandboxOutput) => void) | undefined;
  /** Called once when the process stops taking tasks, with why (not when closed). */
  onRetire: (process: WarmProcess, reason: RecycleReason) => void;
}

interface InFlight {
  id: number;
  task: SandboxTask;
  resolve: (result: ChildResult) => void;
  timer: ReturnType<typeof setTimeout>;
  passed: { stdout: number; stderr: number };
  dropped: number;
  /** Set when this task was stopped or timed out: that decides its outcome. */
  stop: { outcome: "failed" | "timeout"; why: string } | null;
}

const LOADER = fromFileUrl(new URL("./child/warm_loader.ts", import.meta.url));

/** A running warm sandbox process. Create it through `WarmSandboxes`. */
export class WarmProcess {
  readonly pid: number;
  readonly handler: string;
  readonly version: string;
  readonly startedAt = Date.now();
  /** Settles when the process has exited and its output has been read. Never rejects. */
  readonly exited: Promise<void>;
  #served = 0;
  #nextId = 0;
  readonly #settings: WarmProcessSettings;
  readonly #maxLineBytes: number;
  readonly #maxTotalBytes: number;
  readonly #allowRun: boolean;
  readonly #kill: KillEscalation;
  readonly #nonce: string;
  readonly #writer: WritableStreamDefaultWriter<Uint8Array>;
  /** Frames waiting for the write in flight (see `#write`). */
  readonly #pending: Uint8Array[] = [];
  #writing = false;
  #closeInput = false;
  readonly #inFlight = new Map<number, InFlight>();
  readonly #fatal: string[] = [];
  /** Bytes of stderr lines that were no frame (stdout's budget is kept by pumpLines). */
  #sandboxStderrBytes = 0;
  #retired: RecycleReason | "closed" | null = null;
  #gone = false;
  #inputEnded = false;
  #killCause: string | null = null;
  #idleTimer: ReturnType<typeof setTimeout> | undefined;
  /** SIGTERM after the kill grace, for a process whose input was closed but lingers. */
  #lingerTimer: ReturnType<typeof setTimeout> | undefined;

  /** Start the process for tasks like `task`. @throws {SpawnError} if it cannot start. */
  constructor(task: SandboxTask, settings: WarmProcessSettings) {
    this.#settings = settings;
    this.#maxLineBytes = settings.spawn.output.maxLineBytes;
    this.#maxTotalBytes = settings.spawn.output.maxTotalBytes;
    this.handler = task.handler;
    this.version = settings.version;
    this.#allowRun = (task.grants?.allowRun?.length ?? 0) > 0;
    const process = spawnSandboxed(settings.spawn, task, {
      loader: LOADER,
      runtimeArgs: [`--import-map=data:application/json,${CLOSED_IMPORT_MAP}`],
      what: `warm handler ${task.handler}`,
    });
    this.pid = process.pid;
    this.#kill = new KillEscalation(this.pid, settings.spawn.killGraceMs, () => !this.#gone);
    this.#nonce = newNonce();
    this.#writer = process.stdin.getWriter();
    this.#write(encodeHandshake({
      nonce: this.#nonce,
      handler: task.handler,
      url: toFileUrl(task.file).href,
      concurrency: settings.concurrency,
      maxLineBytes: this.#maxLineBytes,
    }));
    const status = process.status.then((s) => {
      this.#gone = true;
      this.#kill.ended(this.#allowRun);
      return s;
    });
    const limits = settings.spawn.output;
    this.exited = Promise.all([
      pumpLines(process.stdout, (l, t) => this.#sandboxLine("stdout", l, t), limits),
      pumpLines(process.stderr, (l, t) => this.#onStderr(l, t), {
        maxLineBytes: MAX_RESULT_BYTES + 128,
        maxTotalBytes: Infinity,
      }),
      status,
    ]).then(([, , s]) => this.#ended(s));
  }

  /** Tasks running now. */
  get load(): number {
    return this.#inFlight.size;
  }

  /** Send `task` to the process. Only call while it is not retired and below its concurrency. */
  run(task: SandboxTask): RunningChild {
    clearTimeout(this.#idleTimer);
    const id = ++this.#nextId;
    this.#served++;
    this.#write(encodeTask(id, task));
    const { promise, resolve } = Promise.withResolvers<ChildResult>();
    const entry: InFlight = {
      id,
      task,
      resolve,
      timer: setTimeout(() => this.#timedOut(entry), task.timeoutMs),
      passed: { stdout: 0, stderr: 0 },
      dropped: 0,
      stop: null,
    };
    this.#inFlight.set(id, entry);
    if (this.#served >= this.#settings.maxTasks) this.retire("maxTasks");
    return {
      pid: this.pid,
      done: promise,
      stop: (why, force = false) => this.#stopTask(entry, why, force),
    };
  }

  /** Take no more tasks; the process ends once the tasks it runs have ended. */
  retire(reason: RecycleReason): void {
    if (this.#retired !== null || this.#gone) return;
    this.#retired = reason;
    clearTimeout(this.#idleTimer);
    this.#settings.onRetire(this, reason);
    if (this.#inFlight.size === 0) this.#endInput();
  }

  /**
   * End the process now: close its stdin (the loader exits at once, failing what it runs),
   * then SIGTERM and SIGKILL if it lingers. Resolves when it has exited.
   */
  close(): Promise<void> {
    if (this.#retired === null) this.#retired = "closed";
    clearTimeout(this.#idleTimer);
    this.#endInput();
    return this.exited;
  }

  /**
   * Frames go out in order, one write at a time. A frame waits for the end of the current
   * microtask checkpoint, and for a write in flight: frames sent meanwhile leave together (a
   * batch of launches after one commit is one pipe write per process, not one per task; at light
   * load a frame still leaves at once).
   */
  #write(bytes: Uint8Array): void {
    this.#pending.push(bytes);
    if (this.#writing) return;
    this.#writing = true;
    queueMicrotask(() => this.#flush());
  }

  #flush(): void {
    const frames = this.#pending.splice(0);
    if (frames.length === 0) {
      this.#writing = false;
      if (this.#closeInput) this.#writer.close().catch(() => {});
      return;
    }
    let bytes = frames[0];
    if (frames.length > 1) {
      let length = 0;
      for (const frame of frames) length += frame.length;
      bytes = new Uint8Array(length);
      let at = 0;
      for (const frame of frames) {
        bytes.set(frame, at);
        at += frame.length;
      }
    }
    // A failed write means the process is gone; its exit status tells the tasks why.
    this.#writer.write(bytes).then(() => this.#flush(), () => this.#flush());
  }

  /** Close stdin once every frame written so far is out. */
  #closeWriter(): void {
    if (this.#writing) this.#closeInput = true;
    else this.#writer.close().catch(() => {});
  }

  /** Stop the process for `cause`, which the other tasks in it fail with. */
  #stop(cause: string): void {
    if (this.#killCause !== null) return;
    this.#killCause = cause;
    this.#kill.terminate();
  }

  #endInput(): void {
    if (this.#inputEnded) return;
    this.#inputEnded = true;
    this.#closeWriter();
    // The loader exits on end of input; if a stuck callback keeps it from reading, escalate.
    if (this.#killCause === null && !this.#gone) {
      const grace = this.#settings.spawn.killGraceMs;
      this.#lingerTimer = setTimeout(() => this.#kill.terminate(), grace);
    }
  }

  #timedOut(entry: InFlight): void {
    if (!this.#inFlight.has(entry.id) || entry.stop) return;
    entry.stop = { outcome: "timeout", why: `after timeout ${entry.task.timeoutMs} ms` };
    // A stuck handler cannot be cancelled inside the process: the whole process goes.
    this.retire("timeout");
    this.#stop(`another task's timeout after ${entry.task.timeoutMs} ms`);
  }

  #stopTask(entry: InFlight, why: string, force: boolean): void {
    if (!this.#inFlight.has(entry.id)) return;
    entry.stop ??= { outcome: "failed", why };
    this.retire("stopped");
    this.#stop(`stopping another task (${why})`);
    if (force) this.#kill.kill();
  }

  #settle(entry: InFlight, result: Omit<ChildResult, "droppedBytes">): void {
    clearTimeout(entry.timer);
    this.#inFlight.delete(entry.id);
    entry.resolve({ ...result, droppedBytes: entry.dropped });
    if (this.#inFlight.size > 0 || this.#gone) return;
    if (this.#retired !== null) {
      this.#endInput();
    } else {
      this.#idleTimer = setTimeout(() => this.retire("idle"), this.#settings.idleTimeoutMs);
    }
  }

  #onStderr(line: string, truncated: boolean): void {
    const parsed = parseFrame(line, this.#nonce);
    if (!parsed) return this.#sandboxLine("stderr", line, truncated);
    const { before, frame } = parsed;
    if (before) this.#sandboxLine("stderr", before, false);
    if (frame.kind === "o" || frame.kind === "e") {
      const stream = frame.kind === "o" ? "stdout" : "stderr";
      this.#taskLine(frame.id, stream, frame.text, frame.n, truncated);
    } else if (frame.kind === "r") {
      // Cut: over the result budget (the loader checks it, so only a forgery gets here).
      this.#result(frame.id, truncated ? EXIT.resultTooBig : frame.n, frame.text);
    } else if (frame.kind === "f") {
      this.#fatal.push(frame.text);
    } else {
      this.#sandboxLine("stderr", line.slice(before.length), truncated);
    }
  }

  #taskLine(
    id: number,
    stream: "stdout" | "stderr",
    text: string,
    cut: number,
    truncated: boolean,
  ): void {
    const entry = this.#inFlight.get(id);
    // Output of no running task: printed at import time, or by a callback that outlived its task.
    if (!entry) return this.#sandboxLine(stream, text, cut > 0 || truncated);
    const max = this.#maxLineBytes;
    const line = text.length > max ? text.slice(0, max) : text;
    const bytes = utf8Length(line) + 1;
    if (entry.passed[stream] + bytes <= this.#maxTotalBytes) {
      entry.passed[stream] += bytes;
      entry.dropped += cut;
      entry.task.onOutput?.(stream, line, cut > 0 || truncated || line !== text);
    } else {
      entry.dropped += bytes + cut;
    }
  }

  #sandboxLine(stream: "stdout" | "stderr", line: string, truncated: boolean): void {
    if (stream === "stderr") {
      this.#sandboxStderrBytes += utf8Length(line) + 1;
      if (this.#sandboxStderrBytes > this.#maxTotalBytes) return;
    }
    this.#settings.onSandboxOutput?.({
      handler: this.handler,
      pid: this.pid,
      stream,
      line,
      truncated,
    });
  }

  #result(id: number, status: number, text: string): void {
    const entry = this.#inFlight.get(id);
    // A stopped or timed-out task ends with the process, whatever it reports meanwhile.
    if (!entry || entry.stop) return;
    const space = text.indexOf(" ");
    const heapUsed = Number(space === -1 ? text : text.slice(0, space));
    if (heapUsed > this.#settings.maxHeapBytes) this.retire("heap");
    const base = { signal: null, code: status };
    if (status === EXIT.ok) {
      const result = space === -1 ? undefined : text.slice(space + 1);
      this.#settle(entry, {
        ...base,
        outcome: "ok",
        reason: `returned (warm pid ${this.pid})`,
        result,
      });
    } else {
      const thrown = status === EXIT.threw && space !== -1
        ? parseThrown(text, space + 1)
        : undefined;
      this.#settle(entry, {
        ...base,
        outcome: "failed",
        reason: describeStatus(status, thrown),
        ...(thrown ? { error: thrown } : {}),
      });
    }
  }

  #ended(status: Deno.CommandStatus): void {
    this.#gone = true;
    clearTimeout(this.#idleTimer);
    clearTimeout(this.#lingerTimer);
    this.#writer.close().catch(() => {});
    if (this.#retired === null) {
      this.#retired = "crash";
      this.#settings.onRetire(this, "crash");
    }
    const { code, signal } = status;
    const how = signal ? `killed by ${signal}` : describeExit(code, null);
    const n = this.#inFlight.size;
    const where = `warm sandbox pid ${this.pid}`;
    if (n === 0) {
      for (const line of this.#fatal) this.#sandboxLine("stderr", line, false);
    }
    for (const entry of [...this.#inFlight.values()]) {
      for (const line of this.#fatal) entry.task.onOutput?.("stderr", line, false);
      let outcome: ChildResult["outcome"] = "failed";
      let reason: string;
      if (entry.stop) {
        outcome = entry.stop.outcome;
        reason = `${how} ${entry.stop.why}`;
      } else if (this.#killCause !== null) {
        reason = `${how}: collateral of ${this.#killCause} (${where})`;
      } else if (this.#retired === "closed") {
        reason = `${how}: the warm sandboxes were closed while the task ran (${where})`;
      } else {
        reason = `${describeExit(code, signal, "warm")}; ${where} ended with ${n} task${
          n === 1 ? "" : "s"
        } in flight`;
      }
      this.#settle(entry, { outcome, reason, code, signal });
    }
  }
}
