/**
 * `deno task dev`: the development loop. Starts the local broker (ops/local_broker.ts) unless
 * KAFKA_BROKERS is set, runs the runner (`main.ts run`) as a child process with pretty logs,
 * and restarts it when functions.json changes (handler files need no restart: each task reads
 * its file anew). Ctrl-C stops the runner (it drains) and then `dev`; the broker keeps running
 * (`deno task broker stop`).
 * @module
 */
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { resolveConfig } from "../runner/config.ts";
import { startLocalBroker } from "../ops/local_broker.ts";

const MAIN = fileURLToPath(new URL("../main.ts", import.meta.url));
/** The runner's permissions, as `deno task run` grants them. */
const RUN_FLAGS = [
  "run",
  "--allow-net",
  "--allow-env",
  "--allow-read",
  "--allow-write",
  "--allow-run",
  "--allow-sys",
];
/** Quiet time after a change before restarting: editors write a file in several steps. */
const SETTLE_MS = 300;

export const DEV_USAGE = `Usage: main.ts dev [runner options]

Starts the local broker (unless KAFKA_BROKERS is set) and the runner with pretty logs, and
restarts the runner when functions.json (FUNCTIONS_CONFIG) changes. Runner options (see
\`main.ts help\`) are passed on. Stop with Ctrl-C.`;

/** Run `dev` with `args` (passed on to `main.ts run`); resolves when stopped. */
export async function devCommand(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    strict: false,
    options: { help: { type: "boolean", short: "h" } },
  });
  if (values.help) {
    console.log(DEV_USAGE);
    return 0;
  }
  const env = Deno.env.toObject();
  const config = resolveConfig({}, env);
  const childEnv: Record<string, string> = { ...env, LOG_FORMAT: env.LOG_FORMAT ?? "pretty" };
  if (config.brokers === null) {
    const broker = await startLocalBroker({
      port: config.localBrokerPort,
      onLine: (line) => console.log(`dev | broker: ${line}`),
    });
    childEnv.KAFKA_BROKERS = broker;
    console.log(`dev | local broker on ${broker} (it keeps running; deno task broker stop)`);
  }
  const watched = resolve(config.functionsConfig);
  const dev = new DevLoop([...RUN_FLAGS, MAIN, "run", ...args], childEnv, watched);
  const stop = () => dev.stop();
  Deno.addSignalListener("SIGINT", stop);
  Deno.addSignalListener("SIGTERM", stop);
  try {
    return await dev.run();
  } finally {
    Deno.removeSignalListener("SIGINT", stop);
    Deno.removeSignalListener("SIGTERM", stop);
  }
}

/** The runner child, restarted on each change of the watched file. */
class DevLoop {
  readonly #args: string[];
  readonly #env: Record<string, string>;
  readonly #file: string;
  #child: Deno.ChildProcess | null = null;
  #watcher: Deno.FsWatcher | null = null;
  #stopping = false;
  /** Set while the runner is stopped for a restart. */
  #restarting = false;
  /** Resolved when the watched file changes while no runner runs (or on stop). */
  #changed = Promise.withResolvers<void>();

  constructor(args: string[], env: Record<string, string>, file: string) {
    this.#args = args;
    this.#env = env;
    this.#file = file;
  }

  /** Run the runner until {@link stop}, restarting it on changes; resolves with its last status. */
  async run(): Promise<number> {
    // The folder is watched, not the file: it may not exist yet, and editors replace files.
    this.#watcher = Deno.watchFs(dirname(this.#file), { recursive: false });
    const watching = this.#watch(this.#watcher);
    let status = 0;
    while (!this.#stopping) {
      this.#child = new Deno.Command(Deno.execPath(), {
        args: this.#args,
        env: this.#env,
        stdin: "null",
        // Its own process group, so that Ctrl-C reaches `dev` alone, which passes one SIGTERM
        // on (the runner drains); a second Ctrl-C passes a second (the runner kills its tasks).
        detached: true,
      }).spawn();
      console.log(`dev | runner started (pid ${this.#child.pid}); watching ${this.#file}`);
      const exited = await this.#child.status;
      status = exited.code;
      this.#child = null;
      if (this.#restarting) {
        this.#restarting = false;
        continue;
      }
      if (!this.#stopping) {
        console.log(`dev | runner exited ${exited.code}; waiting for ${this.#file} to change`);
        await this.#changed.promise;
      }
    }
    this.#watcher.close();
    await watching;
    return status;
  }

  /**
   * Stop the runner (SIGTERM: it drains) and then the loop; called again, pass a second SIGTERM
   * on (the runner then kills its running tasks at once).
   */
  stop(): void {
    if (this.#stopping) return this.#signal("SIGTERM");
    this.#stopping = true;
    console.log("dev | stopping the runner");
    this.#signal("SIGTERM");
    this.#changed.resolve();
  }

  async #watch(watcher: Deno.FsWatcher): Promise<void> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    for await (const event of watcher) {
      if (!event.paths.some((p) => resolve(p) === this.#file)) continue;
      clearTimeout(timer);
      timer = setTimeout(() => this.#restart(), SETTLE_MS);
    }
    clearTimeout(timer);
  }

  #restart(): void {
    if (this.#stopping) return;
    console.log(`dev | ${this.#file} changed: restarting the runner`);
    if (this.#child) {
      this.#restarting = true;
      this.#signal("SIGTERM");
    } else {
      const changed = this.#changed;
      this.#changed = Promise.withResolvers<void>();
      changed.resolve();
    }
  }

  #signal(signal: Deno.Signal): void {
    try {
      this.#child?.kill(signal);
    } catch {
      // already exited
    }
  }
}
