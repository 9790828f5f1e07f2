/** Run an admin command in this process and capture what it prints and its exit code. */
import { ADMIN_COMMANDS } from "../../cli/admin.ts";

/** What a command printed and returned. */
export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Run `ADMIN_COMMANDS[name]` with `args`; console output is captured, not shown. */
export async function runAdmin(name: string, args: string[]): Promise<CliResult> {
  const out: string[] = [];
  const err: string[] = [];
  const { log, error } = console;
  console.log = (...parts: unknown[]) => out.push(parts.join(" "));
  console.error = (...parts: unknown[]) => err.push(parts.join(" "));
  try {
    const code = await ADMIN_COMMANDS[name].run(args);
    return { code, stdout: out.join("\n"), stderr: err.join("\n") };
  } finally {
    console.log = log;
    console.error = error;
  }
}
