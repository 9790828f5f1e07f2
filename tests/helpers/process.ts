/**
 * Processes as the tests see them: whether a pid still runs, and waiting for a condition.
 * @module
 */

/** True while `pid` runs: /proc has it and it is no zombie (a parent may not have reaped it). */
export function alive(pid: number): boolean {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z";
  } catch {
    return false;
  }
}

/** Poll every 20 ms until `condition` holds, for at most `ms`; whether it does. */
export async function until(condition: () => boolean, ms = 2000): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (!condition() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  return condition();
}

/** Like {@link until}, but throws naming `what` when `ms` pass first. */
export async function waitUntil(
  what: string,
  condition: () => boolean,
  ms = 20_000,
): Promise<void> {
  if (!(await until(condition, ms))) throw new Error(`timed out waiting for ${what}`);
}

/** Poll /proc until `pid` is gone (at most ~2 s); whether it is. */
export function gone(pid: number): Promise<boolean> {
  return until(() => !alive(pid));
}
