/**
 * The commands for handler authors, by name, for `main.ts` to dispatch to: `new` (scaffold),
 * `invoke` (run one locally in its sandbox) and `dev` (broker, runner, restarts).
 * @module
 */
import { devCommand } from "./dev.ts";
import { invokeCommand } from "./invoke.ts";
import { newCommand } from "./new.ts";

/** A handler-author command: one line for the usage text, and its entry point. */
export interface HandlerCommand {
  summary: string;
  /** Run with the arguments after the command name; resolves with the exit status. */
  run(args: string[]): Promise<number>;
}

/** `new`, `invoke` and `dev`. */
export const HANDLER_COMMANDS: Record<string, HandlerCommand> = {
  new: {
    summary: "new <name> [--schema]: write functions/<name>.ts and its test",
    run: newCommand,
  },
  invoke: {
    summary: "invoke <name> [json]: run a handler locally in its sandbox",
    run: invokeCommand,
  },
  dev: {
    summary: "dev: local broker + runner (pretty logs), restarted on functions.json changes",
    run: devCommand,
  },
};
