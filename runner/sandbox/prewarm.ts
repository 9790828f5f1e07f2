/**
 * Prewarmed sandboxes (task isolation): per function, a few sandboxed processes started ahead
 * of time, Deno running with the function's exact permissions, environment and heap cap and
 * its handler already imported, each waiting for one task on stdin. A task of that function
 * takes one instead of starting a process, and so skips Deno's start-up; the process still
 * serves only that task and exits, so task isolation is unchanged.
 *
 * - Cap: each idle child holds a {@link Reservation} in the {@link ConcurrencyCap}, so live tasks plus
 *   idle children never pass `MAX_RUNNING`, and a task that finds the pool full evicts the
 *   longest-reserved idle child instead of waiting. Children are started after a take and
 *   when a slot frees, into free slots only. After an eviction (the pool is busy with real
 *   work, where children started would only be evicted in turn, wasting their start-up) no
 *   child is started until at most half the slots run tasks.
 * - Pace: at most half the cores' worth of children are starting (not yet imported their
 *   handler) at a time, so that filling many slots at once does not starve running tasks;
 *   a task takes a child that is ready when there is one.
 * - Freshness: when a task comes, its handler file is stat-ed (mtime, size, inode); children
 *   started from another version of the file, or for other grants or heap cap, are killed
 *   and the task starts cold.
 * - Failures: a child that exits while idle (its import failed, its top-level code exited or
 *   crashed) is never given a task, and its function is not prewarmed again until its file
 *   changes; its next task starts cold and reports the failure as usual. So is a child that
 *   has not imported its handler within `readyTimeoutMs` (its top-level code never finishes,
 *   or spins): it is killed, so that it neither burns CPU nor holds a place among the children
 *   starting, which would keep every other function from being prewarmed.
 *
 * What differs from a cold start: the handler's top-level code runs before its task comes (no
 * timeout applies to it then, and it runs even if the child is evicted before any task).
 * @module
 */
import type { ConcurrencyCap, Reservation } from "../dispatch/concurrency_cap.ts";
import { fileVersion } from "./permissions.ts";
import type { ProcessScope, ProcessSource, RunningChild, SandboxTask } from "./process_source.ts";
import type { IdleExit, PrewarmedProcess, Sandbox } from "./task_sandbox.ts";

/** Why the prewarmer killed an idle child. */
export type KillReason = "evicted" | "file changed" | "scope changed" | "closed";

/** What the prewarmer did, for logs. */
export type PrewarmEvent =
  | { kind: "started"; handler: string; pid: number }
  /** A child imported its handler: from now on it starts a task at once. */
  | { kind: "ready"; handler: string; pid: number }
  | { kind: "killed"; handler: string; pid: number; why: KillReason }
  /** An idle child exited on its own: the function is not prewarmed until its file changes. */
  | { kind: "died"; handler: string; pid: number; exit: IdleExit }
  /**
   * A child did not import its handler within `readyTimeoutMs` and was killed: the function is
   * not prewarmed until its file changes.
   */
  | { kind: "stuck"; handler: string; pid: number; readyTimeoutMs: number }
  /** No child could be started: the function is not prewarmed until its file changes. */
  | { kind: "failed"; handler: string; error: string };

/** A function prewarmed from {@link Prewarmer.start} on, with its own count. */
export interface PrewarmedFunction {
  /** Handler, file, heap cap and grants its children are started with. */
  scope: ProcessScope;
  /** Idle children kept (0: none, whatever `count` says). */
  count: number;
}

/** Options of a {@link Prewarmer}. */
export interface PrewarmerOptions {
  /** Starts the children, and runs tasks cold when no child is idle. */
  sandbox: Pick<Sandbox, "prewarm" | "spawn">;
  /** The cap: each idle child holds a reservation in it. */
  pool: ConcurrencyCap;
  /** Idle children kept per function from its first task on (PREWARM). @default 0 */
  count?: number;
  /** Functions with their own count (functions.json `prewarm`), started by `start()`. @default [] */
  functions?: readonly PrewarmedFunction[];
  /** Time a child may take to import its handler before it is killed. @default 10000 */
  readyTimeoutMs?: number;
  /** Told of starts, kills, idle exits and failures. @default none */
  onEvent?: (event: PrewarmEvent) => void;
}

interface Idle {
  process: PrewarmedProcess;
  reservation: Reservation;
  /** The handler file's version when the child was started. */
  version: string;
  /** Its handler is imported. */
  ready: boolean;
}

/** Children starting (handler not yet imported) at a time, over all functions. */
const MAX_STARTING = Math.max(1, Math.floor(navigator.hardwareConcurrency / 2));

interface Entry {
  scope: ProcessScope;
  key: string;
  count: number;
  idle: Idle[];
  /** The file version at which prewarming stopped (a child died idle, or none could start). */
  paused: string | null;
}

/**
 * Keeps prewarmed children per function and hands them to tasks; a {@link ProcessSource} for
 * the task-mode functions whose count is not 0 (see {@link Prewarmer.prewarms}).
 *
 * @example
 * ```ts
 * const prewarmer = new Prewarmer({ sandbox, pool, count: 2 });
 * const child = prewarmer.spawn(task); // cold the first time; then 2 children wait for the next
 * await child.done;
 * await prewarmer.close(); // kills the idle children
 * ```
 */
export class Prewarmer implements ProcessSource {
  readonly #sandbox: Pick<Sandbox, "prewarm" | "spawn">;
  readonly #pool: ConcurrencyCap;
  readonly #count: number;
  readonly #functions: readonly PrewarmedFunction[];
  readonly #counts: ReadonlyMap<string, number>;
  readonly #readyTimeoutMs: number;
  readonly #onEvent: (event: PrewarmEvent) => void;
  readonly #entries = new Map<string, Entry>();
  /** Children killed and not yet exited. */
  readonly #dying = new Set<Promise<IdleExit>>();
  readonly #offSlotFree: () => void;
  #fillTimer: ReturnType<typeof setTimeout> | undefined;
  /** Set by an eviction: start nothing until at most half the slots run tasks. */
  #pressed = false;
  #closed: Promise<void> | null = null;

  constructor(options: PrewarmerOptions) {
    const count = options.count ?? 0;
    const functions = options.functions ?? [];
    const check = (option: string, n: number) => {
      if (!Number.isSafeInteger(n) || n < 0) {
        throw new RangeError(
          `Cannot create prewarmer: "${option}" must be an integer >= 0, got ${n}`,
        );
      }
    };
    check("count", count);
    const readyTimeoutMs = options.readyTimeoutMs ?? 10_000;
    check("readyTimeoutMs", readyTimeoutMs);
    for (const f of functions) check(`functions[${f.scope.handler}].count`, f.count);
    this.#sandbox = options.sandbox;
    this.#pool = options.pool;
    this.#count = count;
    this.#functions = functions;
    this.#counts = new Map(functions.map((f) => [f.scope.handler, f.count]));
    this.#readyTimeoutMs = readyTimeoutMs;
    this.#onEvent = options.onEvent ?? (() => {});
    this.#offSlotFree = this.#pool.onSlotFree(() => this.#scheduleFill());
  }

  /** Idle prewarmed children now, over all functions. */
  get idle(): number {
    let n = 0;
    for (const entry of this.#entries.values()) n += entry.idle.length;
    return n;
  }

  /** True when `handler`'s tasks may find a prewarmed child (its count is not 0). */
  prewarms(handler: string): boolean {
    return this.#countFor(handler) > 0;
  }

  /** How many children `handler` keeps ready: its own count, else the global one. */
  #countFor(handler: string): number {
    return this.#counts.get(handler) ?? this.#count;
  }

  /** Start the children of the functions that have their own count, as slots allow. */
  start(): void {
    for (const { scope, count } of this.#functions) {
      if (count > 0) this.#refresh(this.#entry(scope, count), scope);
    }
    this.#scheduleFill();
  }

  /**
   * Run `task` in an idle child of its scope started from the current version of its file,
   * else in a new process; then keep the function's count of children ready. Throws
   * {@link SpawnError} only if no process can start; later failures come through `done`.
   */
  spawn(task: SandboxTask): RunningChild {
    const count = this.#countFor(task.handler);
    if (count === 0 || this.#closed) return this.#sandbox.spawn(task);
    const entry = this.#entry(task, count);
    this.#refresh(entry, task);
    let at = entry.idle.findIndex((idle) => idle.ready && idle.process.alive);
    if (at === -1) at = entry.idle.findIndex((idle) => idle.process.alive);
    if (at === -1) {
      this.#scheduleFill();
      return this.#sandbox.spawn(task);
    }
    const [taken] = entry.idle.splice(at, 1);
    try {
      return taken.process.attach(task);
    } catch (error) {
      this.#reap(taken.process); // not ours to run a task in after all: it must not linger
      throw error;
    } finally {
      taken.reservation.release(); // the task holds its own slot
      this.#scheduleFill();
    }
  }

  /** Kill every idle child and start no more; resolves when they have exited. Idempotent. */
  close(): Promise<void> {
    this.#closed ??= (async () => {
      clearTimeout(this.#fillTimer);
      this.#offSlotFree();
      for (const entry of this.#entries.values()) {
        for (const idle of [...entry.idle]) this.#kill(entry, idle, "closed");
      }
      await Promise.all([...this.#dying]);
    })();
    return this.#closed;
  }

  #entry(scope: ProcessScope, count: number): Entry {
    let entry = this.#entries.get(scope.handler);
    if (!entry) {
      entry = { scope, key: scopeKey(scope), count, idle: [], paused: null };
      this.#entries.set(scope.handler, entry);
    }
    return entry;
  }

  /** Kill the children `scope` may not use (other scope, other file version); resume if the file changed. */
  #refresh(entry: Entry, scope: ProcessScope): void {
    const same = scope.grants === entry.scope.grants && scope.file === entry.scope.file &&
      scope.memoryMb === entry.scope.memoryMb;
    if (!same && scopeKey(scope) !== entry.key) {
      for (const idle of [...entry.idle]) this.#kill(entry, idle, "scope changed");
      entry.key = scopeKey(scope);
      entry.paused = null;
    }
    entry.scope = scope;
    const { version } = fileVersion(scope.file);
    for (const idle of [...entry.idle]) {
      if (idle.version !== version) this.#kill(entry, idle, "file changed");
    }
    if (entry.paused !== null && entry.paused !== version) entry.paused = null;
  }

  #scheduleFill(): void {
    if (this.#closed || this.#fillTimer !== undefined) return;
    const short = (e: Entry) => e.paused === null && e.idle.length < e.count;
    if (![...this.#entries.values()].some(short)) return;
    // Deferred: the task that freed or took a slot gets going first, and so does the
    // dispatcher, which takes a freed slot for waiting work before a child may reserve it.
    this.#fillTimer = setTimeout(() => {
      this.#fillTimer = undefined;
      this.#fill();
    }, 0);
  }

  /**
   * Start children into free slots, at the pace allowed, one at a time for the function that
   * has the fewest idle children (so that no function waits behind another's large count).
   */
  #fill(): void {
    while (!this.#closed && this.#starting() < MAX_STARTING && !this.#pressedStill()) {
      let entry: Entry | undefined;
      for (const e of this.#entries.values()) {
        if (e.paused === null && e.idle.length < e.count) {
          if (!entry || e.idle.length < entry.idle.length) entry = e;
        }
      }
      if (!entry) return;
      if (!this.#startOne(entry) && entry.paused === null) return; // no free slot
    }
  }

  /** Start a child for `entry` in a free slot; false if none is free or the start failed. */
  #startOne(entry: Entry): boolean {
    let idle: Idle | undefined;
    const reservation = this.#pool.reserve(() => {
      this.#pressed = true;
      if (idle) this.#kill(entry, idle, "evicted");
    });
    if (!reservation) return false;
    const { version, error } = fileVersion(entry.scope.file);
    let process: PrewarmedProcess;
    try {
      if (error) throw error;
      process = this.#sandbox.prewarm(entry.scope, { importHandler: true });
    } catch (error) {
      reservation.release();
      entry.paused = version;
      this.#onEvent({
        kind: "failed",
        handler: entry.scope.handler,
        error: (error as Error).message,
      });
      return false;
    }
    const started: Idle = idle = { process, reservation, version, ready: false };
    entry.idle.push(started);
    this.#onEvent({ kind: "started", handler: entry.scope.handler, pid: process.pid });
    const readyTimer = setTimeout(() => this.#stuck(entry, started), this.#readyTimeoutMs);
    process.ready.then(() => {
      clearTimeout(readyTimer);
      started.ready = true;
      if (entry.idle.includes(started)) {
        this.#onEvent({ kind: "ready", handler: entry.scope.handler, pid: process.pid });
      }
      this.#scheduleFill(); // the next one may start
    });
    process.idleExit.then((exit) => {
      clearTimeout(readyTimer);
      this.#died(entry, started, exit);
    });
    return true;
  }

  /** A child still importing its handler after `readyTimeoutMs`: kill it, pause its function. */
  #stuck(entry: Entry, idle: Idle): void {
    const at = entry.idle.indexOf(idle);
    if (at === -1 || idle.ready) return; // taken by a task, or killed for another reason
    entry.idle.splice(at, 1);
    idle.reservation.release();
    entry.paused = idle.version;
    this.#reap(idle.process);
    const { handler } = entry.scope;
    const pid = idle.process.pid;
    this.#onEvent({ kind: "stuck", handler, pid, readyTimeoutMs: this.#readyTimeoutMs });
    this.#scheduleFill(); // its place among the children starting is free again
  }

  /** Idle children whose handler is not imported yet, over all functions. */
  #starting(): number {
    let n = 0;
    for (const entry of this.#entries.values()) {
      for (const idle of entry.idle) if (!idle.ready && idle.process.alive) n++;
    }
    return n;
  }

  /** True while an eviction's pressure lasts (see the module documentation). */
  #pressedStill(): boolean {
    this.#pressed &&= this.#pool.running > this.#pool.capacity / 2;
    return this.#pressed;
  }

  /** An idle child exited: if not by our hand, stop prewarming until the file changes. */
  #died(entry: Entry, idle: Idle, exit: IdleExit): void {
    const at = entry.idle.indexOf(idle);
    if (at === -1) return; // killed by us (or closed): already accounted for
    entry.idle.splice(at, 1);
    idle.reservation.release();
    entry.paused = idle.version;
    this.#onEvent({ kind: "died", handler: entry.scope.handler, pid: idle.process.pid, exit });
  }

  #kill(entry: Entry, idle: Idle, why: KillReason): void {
    const at = entry.idle.indexOf(idle);
    if (at !== -1) entry.idle.splice(at, 1);
    idle.reservation.release(); // nothing to give back when evicted: the pool took the slot
    this.#reap(idle.process);
    this.#onEvent({ kind: "killed", handler: entry.scope.handler, pid: idle.process.pid, why });
  }

  /** Kill a child without a task; `close()` waits for its exit. */
  #reap(process: PrewarmedProcess): void {
    process.kill();
    const exited = process.idleExit;
    this.#dying.add(exited);
    exited.finally(() => this.#dying.delete(exited));
  }
}

/** What decides which children a task may take, besides the file version. */
function scopeKey(scope: ProcessScope): string {
  return JSON.stringify([scope.file, scope.memoryMb, scope.grants ?? {}]);
}
