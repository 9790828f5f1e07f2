/**
 * Posts the task's `body` to a webhook URL and fails the task on a non-2xx answer.
 * It needs network access, which only an operator can grant, e.g. in functions.json:
 * `{"functions": {"notify_webhook": {"allowNet": ["127.0.0.1:8080"], "timeoutMs": 10000}}}`.
 *
 * `deno task enqueue notify_webhook '{"url":"http://127.0.0.1:8080/hook","body":{"event":"x"}}'`
 */
import type { Context, Task } from "../runner/handler_types.ts";

export default async function notifyWebhook(
  task: Task<{ url: string; body: unknown }>,
  ctx: Context,
): Promise<void> {
  const { url, body } = task.payload;
  const response = await fetch(url, {
    method: "POST",
    headers: { "content-type": "application/json", "x-task-offset": task.offset },
    body: JSON.stringify(body ?? null),
    signal: AbortSignal.timeout(Math.max(1, ctx.deadline.getTime() - Date.now() - 100)),
  });
  const text = await response.text();
  if (!response.ok) {
    throw new Error(`webhook ${url} answered ${response.status}: ${text.slice(0, 200)}`);
  }
  console.log(`webhook ${url} answered ${response.status}`);
}
