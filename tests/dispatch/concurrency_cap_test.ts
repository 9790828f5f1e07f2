import { assert, assertEquals } from "../helpers/assert.ts";
import { Pool } from "../../runner/dispatch/concurrency_cap.ts";

Deno.test("the pool never hands out more than its capacity and says when a slot frees", async () => {
  const pool = new Pool(2);
  assert(pool.tryAcquire());
  assert(pool.tryAcquire());
  assert(!pool.tryAcquire());
  let freed = 0;
  const off = pool.onSlotFree(() => freed++);
  pool.release();
  assertEquals(freed, 1);
  assertEquals(pool.free, 1);
  off();
  const idle = pool.idle();
  pool.release();
  await idle;
  assertEquals(pool.running, 0);
  assertEquals(pool.peak, 2);
});

Deno.test("reservations count toward the cap but never hold back a task: the oldest is evicted", () => {
  const pool = new Pool(2);
  const evicted: string[] = [];
  const a = pool.reserve(() => evicted.push("a"))!;
  const b = pool.reserve(() => evicted.push("b"))!;
  assertEquals(pool.reserve(() => evicted.push("c")), null, "no free slot left to reserve");
  assertEquals([pool.free, pool.reserved], [0, 2]);
  assert(pool.tryAcquire(), "a task takes the slot of an idle child");
  assertEquals(evicted, ["a"]);
  assertEquals([pool.running, pool.reserved], [1, 1]);
  let freed = 0;
  pool.onSlotFree(() => freed++);
  a.release(); // evicted already: nothing to give back
  assertEquals(freed, 0);
  b.release(); // taken by a task (or ended): its slot is free again
  b.release();
  assertEquals([freed, pool.free, pool.reserved], [1, 1, 0]);
  assert(pool.tryAcquire());
  assert(!pool.tryAcquire(), "every slot runs a task");
  assertEquals(evicted, ["a"]);
});

Deno.test("invariant: running + reserved <= capacity, and a task waits only when all slots run tasks", () => {
  let seed = 42;
  const random = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
  const pool = new Pool(5);
  const held: Array<{ release(): void }> = [];
  let evictions = 0;
  for (let step = 0; step < 20_000; step++) {
    const r = random();
    if (r < 0.3) {
      const before = pool.running;
      const got = pool.tryAcquire();
      assertEquals(got, before < pool.capacity, `step ${step}: tryAcquire with ${before} running`);
    } else if (r < 0.55 && pool.running > 0) {
      pool.release();
    } else if (r < 0.8) {
      const free = pool.free;
      const reservation = pool.reserve(() => {
        evictions++;
        held.splice(held.indexOf(reservation!), 1);
      });
      assertEquals(reservation !== null, free > 0);
      if (reservation) held.push(reservation);
    } else if (held.length > 0) {
      held.splice(Math.floor(random() * held.length), 1)[0].release();
    }
    assert(pool.running + pool.reserved <= pool.capacity, `step ${step}: over the cap`);
    assertEquals(pool.reserved, held.length);
  }
  assert(evictions > 100, `evictions exercised: ${evictions}`);
});
