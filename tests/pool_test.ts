import { assert, assertEquals } from "./assert.ts";
import { Pool } from "../runner/pool.ts";

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
