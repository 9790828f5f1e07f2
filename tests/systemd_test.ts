/**
 * The systemd units and their installer: `systemd/install.sh --output` renders the units, and
 * systemd's own tools judge them (`systemd-analyze verify`, `systemd-analyze security`).
 * Needs systemd-analyze (systemd >= 252 for `security --offline=yes`); no running systemd.
 */
import { assert, assertEquals, assertMatch } from "./helpers/assert.ts";
import { fileURLToPath } from "node:url";
import { OPTIONS } from "../runner/config.ts";
import { envExample } from "../systemd/env_example.ts";

const REPO = fileURLToPath(new URL("..", import.meta.url)).replace(/\/$/, "");
const INSTALL_SH = `${REPO}/systemd/install.sh`;
const UNITS = ["task-runner.service", "kafka.service"] as const;
/** The most exposure `systemd-analyze security` may report for either unit. */
const MAX_EXPOSURE = 3.0;

interface Ran {
  code: number;
  stdout: string;
  stderr: string;
}

async function run(command: string, args: string[]): Promise<Ran> {
  const out = await new Deno.Command(command, { args, stdout: "piped", stderr: "piped" })
    .output();
  const text = new TextDecoder();
  return { code: out.code, stdout: text.decode(out.stdout), stderr: text.decode(out.stderr) };
}

/** systemd-analyze, or a failure saying what to install: this test must not pass silently. */
async function systemdAnalyze(args: string[]): Promise<Ran> {
  try {
    return await run("systemd-analyze", args);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) {
      throw new Error("install systemd: systemd-analyze is not on PATH (apt-get install systemd)");
    }
    throw error;
  }
}

/** install.sh --output into a fresh folder; the folder is removed after `use`. */
async function withRendered(
  extra: string[],
  use: (dir: string, installed: Ran) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "task-runner-systemd-" });
  try {
    const installed = await run("bash", [
      INSTALL_SH,
      "--output",
      dir,
      "--install-dir",
      REPO,
      "--deno",
      Deno.execPath(),
      ...extra,
    ]);
    assertEquals(installed.code, 0, `install.sh --output failed:\n${installed.stderr}`);
    await use(dir, installed);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** The values of `key` in `[section]` of a unit file, in order. */
function unitValues(text: string, section: string, key: string): string[] {
  const values: string[] = [];
  let current = "";
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#") || line.startsWith(";")) continue;
    const header = line.match(/^\[(.+)\]$/);
    if (header) {
      current = header[1];
      continue;
    }
    const eq = line.indexOf("=");
    if (current === section && eq > 0 && line.slice(0, eq).trim() === key) {
      values.push(line.slice(eq + 1).trim());
    }
  }
  return values;
}

function one(text: string, section: string, key: string): string {
  const values = unitValues(text, section, key);
  assertEquals(values.length, 1, `expected one ${key}= in [${section}], got ${values.length}`);
  return values[0];
}

const seconds = (value: string): number => {
  const m = value.match(/^(\d+)(s|min)?$/);
  assert(m, `not a duration in seconds or minutes: ${value}`);
  return Number(m[1]) * (m[2] === "min" ? 60 : 1);
};

Deno.test("install.sh --output renders both units with every placeholder replaced", async () => {
  await withRendered(["--with-kafka"], async (dir) => {
    for (const name of [...UNITS, "env.example", "kafka.env.example"]) {
      const text = await Deno.readTextFile(`${dir}/${name}`);
      assert(
        !/@[A-Z_]+@/.test(text),
        `${name} still has a placeholder: ${text.match(/@[A-Z_]+@/)}`,
      );
    }
    const runner = await Deno.readTextFile(`${dir}/task-runner.service`);
    const exec = one(runner, "Service", "ExecStart");
    assert(exec.startsWith(`${Deno.execPath()} run `), exec);
    assert(exec.endsWith(` ${REPO}/main.ts run`), exec);
    assertEquals(one(runner, "Service", "WorkingDirectory"), REPO);
    assertEquals(one(runner, "Service", "User"), "task-runner");
    assertEquals(one(runner, "Service", "EnvironmentFile"), "/etc/task-runner/env");
    assertEquals(unitValues(runner, "Unit", "Wants").includes("kafka.service"), true);
    assertEquals(unitValues(runner, "Unit", "After").includes("kafka.service"), true);

    const kafka = await Deno.readTextFile(`${dir}/kafka.service`);
    assertEquals(one(kafka, "Service", "ExecStart"), `/bin/bash ${REPO}/broker/kafka.sh run`);
    assertEquals(
      one(kafka, "Service", "ExecStartPre"),
      `/bin/bash ${REPO}/broker/kafka.sh prepare`,
    );
    assertEquals(one(kafka, "Service", "User"), "kafka");
    assertEquals(one(kafka, "Service", "SuccessExitStatus"), "143");
    assertMatch(one(kafka, "Service", "Environment"), new RegExp(`BROKER_LIB=${REPO}/.broker/lib`));
  });
  await withRendered([], async (dir) => {
    const runner = await Deno.readTextFile(`${dir}/task-runner.service`);
    assertEquals(unitValues(runner, "Unit", "Wants"), ["network-online.target"]);
    const kafkaRendered = await Deno.stat(`${dir}/kafka.service`).then(() => true, () => false);
    assertEquals(kafkaRendered, false, "kafka.service is rendered only with --with-kafka");
  });
});

Deno.test("the unit runs the runner with exactly the permissions and V8 flags of the `run` task", async () => {
  const config = JSON.parse(await Deno.readTextFile(`${REPO}/deno.json`));
  const allow = (command: string) => (command.match(/--(allow-|v8-flags=)\S+/g) ?? []).sort();
  await withRendered([], async (dir) => {
    const runner = await Deno.readTextFile(`${dir}/task-runner.service`);
    const granted = allow(one(runner, "Service", "ExecStart"));
    assert(granted.length > 0, "no --allow-* flags in ExecStart");
    assertEquals(granted, allow(config.tasks.run));
  });
});

Deno.test("stopping leaves the runner time to drain and kill, then SIGKILLs the rest", async () => {
  const defaultMs = (env: string) => Number(OPTIONS.find((o) => o.env === env)?.default);
  const needed = (defaultMs("DRAIN_TIMEOUT_MS") + defaultMs("KILL_GRACE_MS")) / 1000;
  assert(needed > 0, "DRAIN_TIMEOUT_MS / KILL_GRACE_MS defaults not found in runner/config.ts");
  await withRendered([], async (dir) => {
    const runner = await Deno.readTextFile(`${dir}/task-runner.service`);
    const stopSec = seconds(one(runner, "Service", "TimeoutStopSec"));
    assert(
      stopSec >= needed + 10,
      `TimeoutStopSec=${stopSec}s must exceed DRAIN_TIMEOUT_MS + KILL_GRACE_MS (${needed}s) by 10s`,
    );
    assertEquals(one(runner, "Service", "KillMode"), "mixed");
    assertEquals(one(runner, "Service", "Restart"), "on-failure");
    // V8's JIT needs writable+executable memory: this setting would abort every deno process.
    assertEquals(unitValues(runner, "Service", "MemoryDenyWriteExecute"), []);
    // Deno's detached spawn (the fallback without setsid) calls setgroups(), denied by
    // ~@privileged: it must get EPERM back.
    assertEquals(one(runner, "Service", "SystemCallErrorNumber"), "EPERM");
  });
});

Deno.test("env.example sets KAFKA_BROKERS and lists every other option at its default", async () => {
  await withRendered([], async (dir) => {
    const text = await Deno.readTextFile(`${dir}/env.example`);
    assertEquals(text, envExample({ installDir: REPO }).trimEnd() + "\n");
    for (const o of OPTIONS) {
      const line = o.env === "KAFKA_BROKERS" ? `${o.env}=127.0.0.1:9092` : `#${o.env}=${o.default}`;
      assert(text.split("\n").includes(line), `env.example lacks the line ${line}`);
    }
  });
});

Deno.test("systemd-analyze verify accepts the rendered units without a warning", async () => {
  await withRendered(["--with-kafka"], async (dir) => {
    const files = UNITS.map((name) => `${dir}/${name}`);
    const verified = await systemdAnalyze(["verify", ...files]);
    const output = (verified.stdout + verified.stderr).split("\n").filter((l) => l.trim());
    // Lines about other units of this machine (outside our control) are not ours to judge.
    const otherUnit =
      /^(\S*\/)?([\w@.:\\-]+\.(service|socket|target|mount|timer|path|slice|scope|swap|automount|device)):/;
    const ours = output.filter((line) => {
      const unit = line.match(otherUnit)?.[2];
      return unit === undefined || UNITS.includes(unit as typeof UNITS[number]) ||
        line.includes(dir);
    });
    assertEquals(ours, [], `systemd-analyze verify complained:\n${output.join("\n")}`);
    assertEquals(verified.code, 0, `systemd-analyze verify exited ${verified.code}`);
  });
});

Deno.test(`systemd-analyze security --offline=yes rates both units at most ${MAX_EXPOSURE}`, async () => {
  await withRendered(["--with-kafka"], async (dir) => {
    for (const name of UNITS) {
      const rated = await systemdAnalyze(["security", "--offline=yes", `${dir}/${name}`]);
      const output = rated.stdout + rated.stderr;
      assert(
        !/unrecognized option|unknown option|invalid option/i.test(output),
        `this systemd-analyze has no "security --offline=yes" (systemd >= 252 needed):\n${output}`,
      );
      const level = output.match(/Overall exposure level for \S+: (\d+(?:\.\d+)?)/);
      assert(level, `no "Overall exposure level" line for ${name}:\n${output}`);
      const exposure = Number(level[1]);
      assert(
        exposure <= MAX_EXPOSURE,
        `${name}: exposure ${exposure} > ${MAX_EXPOSURE}\n${output}`,
      );
      assertEquals(rated.code, 0, `systemd-analyze security exited ${rated.code}:\n${output}`);
    }
  });
});

Deno.test("with secrets as LoadCredential= (a drop-in) the unit verifies and stays at most 1.5", async () => {
  await withRendered([], async (dir) => {
    const unit = `${dir}/task-runner.service`;
    const text = await Deno.readTextFile(unit);
    const credentials = `${dir}/credentials`;
    await Deno.mkdir(credentials);
    await Deno.writeTextFile(`${credentials}/kafka-sasl-password`, "x");
    await Deno.writeTextFile(
      unit,
      text.replace(
        /^\[Service\]$/m,
        `[Service]\nLoadCredential=kafka-sasl-password:${credentials}/kafka-sasl-password`,
      ),
    );
    const rated = await systemdAnalyze(["security", "--offline=yes", unit]);
    const level = (rated.stdout + rated.stderr).match(
      /Overall exposure level for \S+: (\d+(?:\.\d+)?)/,
    );
    assert(level, rated.stdout + rated.stderr);
    assert(Number(level[1]) <= 1.5, `exposure ${level[1]} > 1.5`);
    const verified = await systemdAnalyze(["verify", "--man=no", unit]);
    assert(!/LoadCredential/.test(verified.stdout + verified.stderr), verified.stderr);
  });
  // The env example tells how, next to each secret file option.
  const example = envExample();
  for (
    const name of ["kafka-sasl-password", "kafka-ssl-key-password", "kafka-oauth-client-secret"]
  ) {
    assertMatch(example, new RegExp(`LoadCredential=${name}:.*\\$CREDENTIALS_DIRECTORY/${name}`));
  }
});

Deno.test("install.sh --dry-run shows the full install and changes nothing", async () => {
  const dir = await Deno.makeTempDir({ prefix: "task-runner-dry-" });
  try {
    const dry = await run("bash", [
      INSTALL_SH,
      "--dry-run",
      "--with-kafka",
      "--install-dir",
      `${dir}/opt/task-runner`,
      "--env-file",
      `${dir}/etc/env`,
      "--deno",
      Deno.execPath(),
    ]);
    assertEquals(dry.code, 0, `install.sh --dry-run failed:\n${dry.stderr}`);
    for (
      const step of [
        `+ write ${dir}/etc/env (mode 0600):`,
        "+ write /etc/systemd/system/task-runner.service (mode 0644):",
        "+ write /etc/systemd/system/kafka.service (mode 0644):",
        "+ systemctl daemon-reload",
        "install.sh: dry run: nothing was changed",
      ]
    ) {
      assert(dry.stdout.includes(step), `--dry-run output lacks "${step}":\n${dry.stdout}`);
    }
    assertMatch(dry.stdout, /\+ env DENO_DIR=\/var\/lib\/task-runner\/deno .* install --frozen/);
    const left = [];
    for await (const entry of Deno.readDir(dir)) left.push(entry.name);
    assertEquals(left, [], "--dry-run created files");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("install.sh refuses values that would break or weaken the units", async () => {
  const cases: Array<[string[], RegExp]> = [
    [["--install-dir", "relative/dir"], /--install-dir must be an absolute path/],
    [["--install-dir", "/opt/with space"], /--install-dir must be an absolute path/],
    [["--env-file", "/etc/100%/env"], /--env-file must be an absolute path/],
    [["--user", "Bad User"], /--user must be a system user name/],
    [["--user", "root", "--dry-run"], /must not run as root/],
    [["--bogus"], /unknown argument '--bogus'/],
  ];
  for (const [args, message] of cases) {
    const refused = await run("bash", [INSTALL_SH, "--deno", Deno.execPath(), ...args]);
    assert(refused.code !== 0, `install.sh ${args.join(" ")} was accepted`);
    assertMatch(refused.stderr, message);
  }
});
