/**
 * The doctor's checks of this machine: the functions folder, the functions config file, and the
 * tools (Deno; Java and Maven for the local broker). No handler code is executed.
 * @module
 */
import { join } from "node:path";
import { hasDefaultExport } from "../../runner/default_export.ts";
import type { Check, DoctorOptions } from "./doctor.ts";
import {
  type FunctionConfig,
  type FunctionConfigTable,
  loadFunctionConfig,
} from "../../runner/function_config.ts";
import { HANDLER_NAME_PATTERN } from "../../runner/handler_name.ts";

/** Check 5: the folder exists, each `*.ts` has a callable name and a default export. */
async function functionsChecks(dir: string): Promise<{ checks: Check[]; handlers: Set<string> }> {
  const handlers = new Set<string>();
  const files: string[] = [];
  try {
    for await (const entry of Deno.readDir(dir)) {
      if (entry.name.endsWith(".ts") && (entry.isFile || entry.isSymlink)) files.push(entry.name);
    }
  } catch (error) {
    const missing = error instanceof Deno.errors.NotFound;
    return {
      handlers,
      checks: [{
        name: "functions",
        status: "fail",
        message: missing
          ? `${dir} does not exist`
          : `${dir} cannot be read: ${(error as Error).message}`,
        fix: missing
          ? "create it and add handlers (`<name>.ts` with a default export), or set FUNCTIONS_DIR"
          : "make it a folder the runner's user can read, or set FUNCTIONS_DIR",
      }],
    };
  }
  files.sort();
  const checks: Check[] = [];
  for (const file of files) {
    const name = file.slice(0, -".ts".length);
    if (!HANDLER_NAME_PATTERN.test(name)) {
      const suggested = name.replace(/\W+/g, "_").slice(0, 100) || "handler";
      checks.push({
        name: "functions",
        status: "warn",
        message: `${file}: no task can call it, a handler name must match ${HANDLER_NAME_PATTERN}`,
        fix: `rename it, e.g. to ${suggested}.ts (and send that name in the task header)`,
      });
      continue;
    }
    let text: string;
    try {
      text = await Deno.readTextFile(join(dir, file));
    } catch (error) {
      checks.push({
        name: "functions",
        status: "fail",
        message: `${file} cannot be read: ${(error as Error).message}`,
        fix: "make it readable by the runner's user",
      });
      continue;
    }
    if (!hasDefaultExport(text)) {
      checks.push({
        name: "functions",
        status: "fail",
        message: `${file} has no default export (found by reading the file, not running it): ` +
          `every "${name}" task would fail`,
        fix: "export the handler as default: `export default function (task, ctx) { ... }`",
      });
      continue;
    }
    handlers.add(name);
  }
  const names = [...handlers];
  checks.unshift(
    names.length > 0
      ? {
        name: "functions",
        status: "ok",
        message: `${dir}: ${names.length} handler(s): ${names.join(", ")}`,
      }
      : {
        name: "functions",
        status: "warn",
        message: `${dir} has no usable handler`,
        fix: "add `<name>.ts` files with a default export",
      },
  );
  return { checks, handlers };
}

/** Folders a write grant on which amounts to owning the machine (or the runner). */
const SYSTEM_FOLDERS = new Set([
  "/",
  "/bin",
  "/boot",
  "/dev",
  "/etc",
  "/home",
  "/lib",
  "/lib64",
  "/opt",
  "/proc",
  "/root",
  "/sbin",
  "/sys",
  "/usr",
  "/var",
]);

/** Programs that run whatever they are told: allowRun of one is allowRun of everything. */
const SHELLS_AND_INTERPRETERS = new Set([
  "sh",
  "bash",
  "dash",
  "zsh",
  "ksh",
  "fish",
  "csh",
  "tcsh",
  "busybox",
  "env",
  "sudo",
  "su",
  "doas",
  "nohup",
  "xargs",
  "find",
  "awk",
  "gawk",
  "perl",
  "python",
  "python3",
  "ruby",
  "node",
  "deno",
  "bun",
  "php",
  "lua",
  "tclsh",
  "ssh",
]);

/** Why `grants` are effectively unrestricted, one sentence and fix each (none: narrow enough). */
function broadGrants(grants: Readonly<FunctionConfig>): Array<{ what: string; fix: string }> {
  const quoted = (list: readonly string[]) => list.map((v) => JSON.stringify(v)).join(", ");
  const found: Array<{ what: string; fix: string }> = [];
  const readsAll = (grants.allowRead ?? []).filter((p) => p === "/");
  if (readsAll.length > 0) {
    found.push({
      what: `may read every file (allowRead ${quoted(readsAll)})`,
      fix: "grant only the folders it needs",
    });
  }
  const writesSystem = (grants.allowWrite ?? []).filter((p) => SYSTEM_FOLDERS.has(p));
  if (writesSystem.length > 0) {
    found.push({
      what: `may write a system folder (allowWrite ${quoted(writesSystem)})`,
      fix: "grant a folder of its own, e.g. /var/lib/task-runner/<function>",
    });
  }
  const runsAnything = (grants.allowRun ?? []).filter((program) => {
    const base = program.slice(program.lastIndexOf("/") + 1);
    return SHELLS_AND_INTERPRETERS.has(base) ||
      SHELLS_AND_INTERPRETERS.has(base.replace(/[\d.]+$/, "")); // python3.12, perl5
  });
  if (runsAnything.length > 0) {
    found.push({
      what: `may run a shell or interpreter, hence any program (allowRun ${quoted(runsAnything)})`,
      fix: "grant the one program it needs, by absolute path",
    });
  }
  if ((grants.allowLoaderEnv ?? []).length > 0) {
    found.push({
      what: `sets variables that change how a process loads (allowLoaderEnv ${
        quoted(grants.allowLoaderEnv!)
      })`,
      fix: "drop them unless the function cannot work without them",
    });
  }
  return found;
}

/** Check 6: the functions config file is valid, and names only existing handlers. */
async function grantsChecks(path: string, handlers: Set<string>): Promise<Check[]> {
  let grants: FunctionConfigTable;
  try {
    grants = await loadFunctionConfig(path);
  } catch (error) {
    return [{
      name: "functions-config",
      status: "fail",
      message: (error as Error).message,
      fix:
        "fix the file (see runner/function_config.ts for the format); the runner refuses to start",
    }];
  }
  const exists = await Deno.stat(path).then(() => true, (e) => {
    if (e instanceof Deno.errors.NotFound) return false;
    throw e;
  });
  if (!exists) {
    return [{
      name: "functions-config",
      status: "info",
      message: `${path} is absent: every handler runs with no grants (no network, files, env)`,
    }];
  }
  const checks: Check[] = [{
    name: "functions-config",
    status: "ok",
    message: `${path}: valid, grants for ${grants.size} function(s)`,
  }];
  for (const [name, granted] of grants) {
    for (const { what, fix } of broadGrants(granted)) {
      checks.push({
        name: "functions-config",
        status: "warn",
        message: `${path}: "${name}" ${what}`,
        fix,
      });
    }
    if (!handlers.has(name)) {
      checks.push({
        name: "functions-config",
        status: "warn",
        message: `${path} grants "${name}", but there is no usable ${name}.ts`,
        fix: `add the handler or remove "${name}" from the file`,
      });
    }
  }
  return checks;
}

/** Output of a program, or why it could not run. */
async function runTool(program: string, args: string[]) {
  try {
    const { code, stdout, stderr } = await new Deno.Command(program, {
      args,
      stdout: "piped",
      stderr: "piped",
    }).output();
    const text = new TextDecoder().decode(stdout) + new TextDecoder().decode(stderr);
    return { ran: true as const, code, text };
  } catch (error) {
    return { ran: false as const, reason: (error as Error).message };
  }
}

/** Check 7: Deno, and Java 17+ and Maven when the local broker is used. */
async function toolChecks(localBroker: boolean): Promise<Check[]> {
  const { deno, v8, typescript } = Deno.version;
  const checks: Check[] = [{
    name: "deno",
    status: "ok",
    message: `Deno ${deno} (V8 ${v8}, TypeScript ${typescript})`,
  }];
  if (!localBroker) return checks;

  const java = await runTool("java", ["-version"]);
  const version = java.ran ? /version "([^"]+)"/.exec(java.text)?.[1] : undefined;
  const major = version === undefined ? NaN : Number(version.replace(/^1\./, "").split(/[.+-]/)[0]);
  checks.push(
    !java.ran
      ? {
        name: "java",
        status: "warn",
        message: `java not found (${java.reason}): the local broker cannot start`,
        fix: "install a JDK/JRE 17+, e.g. apt-get install -y openjdk-17-jre-headless",
      }
      : major >= 17
      ? { name: "java", status: "ok", message: `Java ${version} (the local broker needs 17+)` }
      : {
        name: "java",
        status: "warn",
        message: `Java ${version ?? "of unknown version"}: the local broker needs Java 17+`,
        fix: "install a JDK/JRE 17+ or point JAVA at one",
      },
  );
  const mvn = await findOnPath("mvn");
  checks.push(
    mvn === undefined
      ? {
        name: "maven",
        status: "warn",
        message: "mvn not found on PATH: the local broker's first start downloads its jars with it",
        fix: "install Maven (apt-get install -y maven), unless the jars are already fetched",
      }
      : { name: "maven", status: "ok", message: `mvn at ${mvn}` },
  );
  return checks;
}

/** The first executable `name` on PATH, without running it (Maven's JVM start is slow). */
async function findOnPath(name: string): Promise<string | undefined> {
  for (const dir of (Deno.env.get("PATH") ?? "").split(":").filter(Boolean)) {
    const path = join(dir, name);
    const info = await Deno.stat(path).catch(() => undefined); // not there: try the next dir
    if (info?.isFile && (info.mode ?? 0o111) & 0o111) return path;
  }
  return undefined;
}

/** Checks 5-7, in order. */
export async function localChecks(
  options: Pick<DoctorOptions, "functionsDir" | "functionsConfig" | "localBroker">,
): Promise<Check[]> {
  const functions = await functionsChecks(options.functionsDir);
  return [
    ...functions.checks,
    ...await grantsChecks(options.functionsConfig, functions.handlers),
    ...await toolChecks(options.localBroker ?? false),
  ];
}
