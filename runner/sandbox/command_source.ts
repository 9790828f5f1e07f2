/**
 * Functions run by a program instead of a Deno handler (functions.json `command`): the
 * migration path from the PHP daemon's workers. Such a process is NOT in Deno's sandbox: it
 * runs with the runner's OS user rights (systemd's hardening of the unit still applies). What
 * it shares with a Deno handler: the task's timeout, the kill escalation (SIGTERM to its
 * process group, SIGKILL after the grace), its own process group and nice value, the cap (the
 * dispatcher's slot), the output capture and limits, and one outcome per task.
 *
 * The payload is written to its stdin, which is then closed; the task's fields are in its
 * environment (`TASK_TOPIC`, `TASK_PARTITION`, `TASK_OFFSET`, `TASK_KEY`, `TASK_HANDLER`,
 * `TASK_ATTEMPT`), and the environment is otherwise empty but for the function's `allowEnv`
 * and `env` grants. The program is looked up on the runner's PATH when the task starts: one
 * that is not there is a `failed` outcome naming it.
 * @module
 */
import { SpawnError } from "../errors.ts";
import type { FunctionConfig } from "../function_config.ts";
import { ChildOutput } from "./child_output.ts";
import { describeExit } from "./exit_words.ts";
import { KillEscalation, spawnInGroup, TaskStop } from "./process_group.ts";
import type { ChildResult, ProcessSource, RunningChild, SandboxTask } from "./process_source.ts";
import { type SpawnOptions, type SpawnSettings, spawnSettings } from "./spawn_settings.ts";

/**
 * Runs `command` functions, one process per task.
 *
 * @example
 * ```ts
 * const source = new CommandSource({ killGraceMs: 5000, hostEnv: Deno.env.toObject() });
 * const result = await source.spawn(task).done; // task.grants.command: ["php", "w.php"]
 * ```
 */
export class CommandSource implements ProcessSource {
  readonly #settings: SpawnSettings;

  constructor(options: SpawnOptions = {}) {
    this.#settings = spawnSettings(options, "command source");
  }

  /**
   * Start the task's program and hand it the payload. Throws {@link SpawnError} naming the
   * program when it is not found or cannot start; every later failure comes through `done`.
   */
  spawn(task: SandboxTask): RunningChild {
    const command = task.grants?.command;
    if (!command) {
      throw new SpawnError(`handler ${task.handler} has no "command" in functions.json`);
    }
    const argv = commandArgv(command, task);
    const program = findProgram(argv[0], this.#settings.hostEnv.PATH ?? "");
    if (program === null) {
      throw new SpawnError(
        `command program "${argv[0]}" of handler ${task.handler} was not found ` +
          `(looked in PATH=${this.#settings.hostEnv.PATH ?? ""}); install it or fix ` +
          `functions.${task.handler}.command`,
      );
    }
    const process = spawnInGroup(
      this.#settings,
      program,
      argv.slice(1),
      commandEnv(task, this.#settings.hostEnv),
      `command "${argv[0]}" of handler ${task.handler}`,
    );
    return run(process, this.#settings, task);
  }

  /** Nothing to end: every process this source started belongs to its task. */
  close(): Promise<void> {
    return Promise.resolve();
  }
}

/** `command` with its placeholders replaced by the task's fields. */
export function commandArgv(command: readonly string[], task: SandboxTask): string[] {
  const fields: Record<string, string> = {
    name: task.handler,
    topic: String(task.task.topic ?? ""),
    partition: String(task.task.partition ?? ""),
    offset: String(task.task.offset ?? ""),
    key: task.task.key == null ? "" : String(task.task.key),
  };
  return command.map((arg) => arg.replace(/\{(\w+)\}/g, (all, name) => fields[name] ?? all));
}

/** The whole environment of a command: the task's fields and the function's grants only. */
export function commandEnv(
  task: Pick<SandboxTask, "handler" | "task" | "grants">,
  hostEnv: Readonly<Record<string, string>>,
): Record<string, string> {
  const grants: Readonly<FunctionConfig> = task.grants ?? {};
  const env: Record<string, string> = {};
  for (const name of grants.allowEnv ?? []) {
    const value = hostEnv[name];
    if (value !== undefined) env[name] = value;
  }
  Object.assign(env, grants.env);
  const t = task.task;
  return {
    ...env,
    TASK_HANDLER: task.handler,
    TASK_TOPIC: String(t.topic ?? ""),
    TASK_PARTITION: String(t.partition ?? ""),
    TASK_OFFSET: String(t.offset ?? ""),
    TASK_KEY: t.key == null ? "" : String(t.key),
    TASK_ATTEMPT: String(t.attempt ?? 1),
  };
}

/** The absolute path of `program` (a path, or a name looked up on `path`), or null. */
function findProgram(program: string, path: string): string | null {
  const candidates = program.includes("/")
    ? [program]
    : path.split(":").filter((dir) => dir !== "").map((dir) => `${dir}/${program}`);
  for (const candidate of candidates) {
    try {
      const info = Deno.statSync(candidate);
      if (info.isFile && ((info.mode ?? 0o111) & 0o111) !== 0) return candidate;
    } catch {
      // not there: try the next folder
    }
  }
  return null;
}

/** Feed the payload, enforce the timeout, capture the output, and report the one outcome. */
function run(process: Deno.ChildProcess, settings: SpawnSettings, task: SandboxTask): RunningChild {
  let alive = true;
  const kill = new KillEscalation(process.pid, settings.killGraceMs, () => alive);
  const stopper = new TaskStop(kill, task.timeoutMs);
  const output = new ChildOutput(process, settings.output);
  // A nonce no program prints: a command has no result line, every stderr line is its own.
  output.attach(crypto.randomUUID(), task.onOutput ?? (() => {}));
  const writeInput = async () => {
    const writer = process.stdin.getWriter();
    try {
      await writer.write(task.payload);
      await writer.close();
    } catch {
      // The program exited (or closed stdin) before reading its payload: its exit says why.
    }
  };
  const done = Promise.all([writeInput(), output.ended, process.status]).then(
    ([, droppedBytes, status]): ChildResult => {
      alive = false;
      const stopReason = stopper.ended();
      kill.ended(true); // whatever it started holds the pipes; its group goes with it
      const signal = status.signal;
      const base = { code: status.code, signal, droppedBytes };
      const how = signal ? describeExit(status.code, signal) : `exit ${status.code}`;
      if (stopReason) {
        return {
          ...base,
          outcome: stopReason.outcome,
          reason: `${signal ? `killed by ${signal}` : how} ${stopReason.why}`,
        };
      }
      return { ...base, outcome: status.success ? "ok" : "failed", reason: how };
    },
  );
  return {
    pid: process.pid,
    done,
    stop: (why, force = false) => stopper.stop("failed", why, force),
  };
}
