/**
 * A function whose prewarmed child never becomes ready (issue 17 item 6): the child is killed
 * after the ready timeout, the function alone stops being prewarmed, and another function's
 * prewarm is not held up.
 */
import { assert, assertEquals } from "../helpers/assert.ts";
import { ConcurrencyCap } from "../../runner/dispatch/concurrency_cap.ts";
import { Prewarmer, type PrewarmEvent } from "../../runner/sandbox/prewarm.ts";
import { Sandbox } from "../../runner/sandbox/task_sandbox.ts";
import { alive, FIXTURES, until } from "../helpers/warm_harness.ts";

const scope = (handler: string) => ({ handler, file: `${FIXTURES}${handler}.ts`, memoryMb: 64 });

Deno.test("stuck top-level code: killed after the ready timeout; other functions are still prewarmed", async () => {
  const events: PrewarmEvent[] = [];
  const pool = new ConcurrencyCap(10);
  const prewarmer = new Prewarmer({
    sandbox: new Sandbox({ killGraceMs: 500 }),
    pool,
    readyTimeoutMs: 1500,
    // The stuck ones first, so that they are the ones starting when echo's turn comes.
    functions: [
      { scope: scope("never_ready"), count: 1 },
      { scope: scope("spins_at_load"), count: 1 },
      { scope: scope("echo"), count: 2 },
    ],
    onEvent: (event) => events.push(event),
  });
  const of = (kind: string, handler: string) =>
    events.filter((e) => e.kind === kind && e.handler === handler);
  try {
    prewarmer.start();
    const ready = await until(() => of("ready", "echo").length === 2, 15_000);
    assert(ready, `echo was never prewarmed: ${JSON.stringify(events)}`);
    assert(await until(() => of("stuck", "spins_at_load").length === 1, 5000), "spins: no stuck");
    for (const handler of ["never_ready", "spins_at_load"]) {
      const [stuck] = of("stuck", handler);
      assert(stuck?.kind === "stuck", `${handler} was not reported stuck`);
      assertEquals(stuck.readyTimeoutMs, 1500);
      assert(await until(() => !alive(stuck.pid), 3000), `${handler} pid ${stuck.pid} lives on`);
    }
    // Backed off: no new child for them (their files did not change); echo keeps its two.
    await new Promise((r) => setTimeout(r, 2000));
    assertEquals(of("started", "never_ready").length, 1);
    assertEquals(of("started", "spins_at_load").length, 1);
    assertEquals([prewarmer.idle, pool.reserved], [2, 2]);
  } finally {
    await prewarmer.close();
  }
});
