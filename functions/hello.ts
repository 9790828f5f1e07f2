/** Greets someone: `deno task enqueue hello '{"to":"world"}'`. Needs no permissions. */
import type { Context, Task } from "../runner/handler_types.ts";

export default function hello(task: Task<{ to?: string }>, ctx: Context): void {
  const to = task.payload?.to ?? "world";
  console.log(
    `hello, ${to}! (${ctx.handler} ran task ${task.topic}/${task.partition}@${task.offset})`,
  );
}
