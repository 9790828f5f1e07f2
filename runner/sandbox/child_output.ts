/**
 * The output of a sandboxed child, read from the moment it starts.
 *
 * Lines printed before the child has its task (a prewarmed handler's top-level code) are kept
 * and passed on to the task once it is attached, in order, as a cold child's would be; the
 * pipes are drained meanwhile, so an idle child never blocks on them. The loader's own lines
 * are picked out of stderr: the ready line of a prewarmed child (its handler is imported) and
 * the result line (prefixed with the task's nonce and a space) and the thrown-error line
 * (prefixed with the nonce and `!`). The result has its own budget
 * (`MAX_RESULT_BYTES`): the handler's stderr lines are counted against the output limit here,
 * so that spending that limit cannot push the result out, nor the result use it up.
 * @module
 */
import { MAX_RESULT_BYTES, parseThrown, type ThrownError } from "./child/protocol.ts";
import { type PumpLimits, pumpLines, utf8Length } from "./output_lines.ts";

/** A nonce (`crypto.randomUUID()`) and the space after it. */
const NONCE_PREFIX_BYTES = 37;

/** Where a task's output lines go. */
export type OnOutput = (stream: "stdout" | "stderr", line: string, truncated: boolean) => void;

/** A task-mode child's output: its lines, its ready line and its result line. */
export class ChildOutput {
  /** Resolves with the bytes dropped over the budgets once both streams have ended. */
  readonly ended: Promise<number>;
  /** Resolves when the child printed its ready line (never for a child without a token). */
  readonly ready: Promise<void>;
  readonly #readyToken: string | null;
  readonly #maxLine: number;
  readonly #maxTotal: number;
  /** Bytes of the handler's stderr lines passed on, and dropped over the budget. */
  readonly #stderrBytes = { passed: 0, dropped: 0 };
  readonly #kept: Array<Parameters<OnOutput>> = [];
  #markReady: () => void;
  #isReady = false;
  #onOutput: OnOutput | null = null;
  #nonce: string | null = null;
  #result: string | undefined;
  #resultCut = false;
  #thrown: ThrownError | undefined;

  /**
   * Start reading `child`'s stdout and stderr. `readyToken`: the line a prewarmed child prints
   * once its handler is imported. @default null
   */
  constructor(
    child: Pick<Deno.ChildProcess, "stdout" | "stderr">,
    limits: PumpLimits = {},
    readyToken: string | null = null,
  ) {
    this.#readyToken = readyToken;
    this.#maxLine = limits.maxLineBytes ?? 8192;
    this.#maxTotal = limits.maxTotalBytes ?? 1_048_576;
    const { promise, resolve } = Promise.withResolvers<void>();
    this.ready = promise;
    this.#markReady = resolve;
    this.ended = Promise.all([
      pumpLines(child.stdout, (line, cut) => this.#line("stdout", line, cut), limits),
      // Every stderr line comes through, up to a result line's length; #stderr budgets them.
      pumpLines(child.stderr, (line, cut) => this.#stderr(line, cut), {
        maxLineBytes: Math.max(this.#maxLine, MAX_RESULT_BYTES + NONCE_PREFIX_BYTES),
        maxTotalBytes: Infinity,
      }),
    ]).then(([out, err]) => out.droppedBytes + err.droppedBytes + this.#stderrBytes.dropped);
  }

  /** The stderr lines printed before a task was attached (e.g. why the handler failed to load). */
  get keptStderr(): string[] {
    return this.#kept.filter(([stream]) => stream === "stderr").map(([, line]) => line);
  }

  /** The handler's JSON return value, once its result line has been read. */
  get result(): string | undefined {
    return this.#result;
  }

  /** What the handler threw, once the loader's line saying so has been read. */
  get thrown(): ThrownError | undefined {
    return this.#thrown;
  }

  /** True when the result line was longer than `MAX_RESULT_BYTES` (and so was dropped). */
  get resultCut(): boolean {
    return this.#resultCut;
  }

  /** From now on pass the lines to the task (the kept ones first); `nonce` marks its result. */
  attach(nonce: string, onOutput: OnOutput): void {
    this.#nonce = nonce;
    this.#onOutput = onOutput;
    for (const kept of this.#kept.splice(0)) onOutput(...kept);
  }

  #stderr(line: string, truncated: boolean): void {
    if (this.#nonce !== null && line.startsWith(this.#nonce)) {
      if (line[this.#nonce.length] === "!") {
        this.#thrown = parseThrown(line, this.#nonce.length + 1);
      } else if (truncated) this.#resultCut = true;
      else this.#result = line.slice(this.#nonce.length + 1);
    } else if (!this.#isReady && line === this.#readyToken) {
      this.#isReady = true;
      this.#markReady();
    } else if (line !== "") {
      const kept = line.length > this.#maxLine ? line.slice(0, this.#maxLine) : line;
      const bytes = utf8Length(kept) + 1;
      const budget = this.#stderrBytes;
      if (budget.passed + bytes > this.#maxTotal) {
        budget.dropped += utf8Length(line) + 1;
        return;
      }
      budget.passed += bytes;
      if (kept !== line) budget.dropped += utf8Length(line) + 1 - bytes;
      this.#line("stderr", kept, truncated || kept !== line);
    }
  }

  #line(stream: "stdout" | "stderr", line: string, truncated: boolean): void {
    if (this.#onOutput) this.#onOutput(stream, line, truncated);
    else this.#kept.push([stream, line, truncated]);
  }
}
