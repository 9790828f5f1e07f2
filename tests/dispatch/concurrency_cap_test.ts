import { assert, assertEquals } from "../helpers/assert.ts";
import { ConcurrencyCap, type Slot } from "../../runner/dispatch/concurrency_cap.ts";

Deno.test("the cap never hands out more than its capacity and says when a slot frees", async () => {
  const cap = new ConcurrencyCap(2);
  const a = cap.tryAcquire();
  const b = cap.tryAcquire();
  assert(a && b);
  assertEquals(cap.tryAcquire(), null);
  let freed = 0;
  const off = cap.onSlotFree(() => freed++);
  a.release();
  assertEquals(freed, 1);
  assertEquals(cap.free, 1);
  off();
  const idle = cap.idle();
  b.release();
  await idle;
  assertEquals(cap.running, 0);
});

Deno.test("a slot's release is idempotent: a second call frees nothing", () => {
  const cap = new ConcurrencyCap(2);
  const a = cap.tryAcquire()!;
  cap.tryAcquire();
  let freed = 0;
  cap.onSlotFree(() => freed++);
  a.release();
  a.release();
  assertEquals([freed, cap.running, cap.free], [1, 1, 1]);
});

Deno.test("reservations count toward the cap but never hold back a task: the oldest is evicted", () => {
  const cap = new ConcurrencyCap(2);
  const evicted: string[] = [];
  const a = cap.reserve(() => evicted.push("a"))!;
  const b = cap.reserve(() => evicted.push("b"))!;
  assertEquals(cap.reserve(() => evicted.push("c")), null, "no free slot left to reserve");
  assertEquals([cap.free, cap.reserved], [0, 2]);
  assert(cap.tryAcquire(), "a task takes the slot of an idle child");
  assertEquals(evicted, ["a"]);
  assertEquals([cap.running, cap.reserved], [1, 1]);
  let freed = 0;
  cap.onSlotFree(() => freed++);
  a.release(); // evicted already: nothing to give back
  assertEquals(freed, 0);
  b.release(); // taken by a task (or ended): its slot is free again
  b.release();
  assertEquals([freed, cap.free, cap.reserved], [1, 1, 0]);
  assert(cap.tryAcquire());
  assertEquals(cap.tryAcquire(), null, "every slot runs a task");
  assertEquals(evicted, ["a"]);
});

Deno.test("invariant: running + reserved <= capacity, and a task waits only when all slots run tasks", () => {
  let seed = 42;
  const random = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
  const cap = new ConcurrencyCap(5);
  const held: Array<{ release(): void }> = [];
  const slots: Slot[] = [];
  let evictions = 0;
  for (let step = 0; step < 20_000; step++) {
    const r = random();
    if (r < 0.3) {
      const before = cap.running;
      const slot = cap.tryAcquire();
      assertEquals(slot !== null, before < cap.capacity, `step ${step}: acquire with ${before}`);
      if (slot) slots.push(slot);
    } else if (r < 0.55 && slots.length > 0) {
      const slot = slots.splice(Math.floor(random() * slots.length), 1)[0];
      slot.release();
      if (random() < 0.2) slot.release(); // a second release is harmless
    } else if (r < 0.8) {
      const free = cap.free;
      const reservation = cap.reserve(() => {
        evictions++;
        held.splice(held.indexOf(reservation!), 1);
      });
      assertEquals(reservation !== null, free > 0);
      if (reservation) held.push(reservation);
    } else if (held.length > 0) {
      held.splice(Math.floor(random() * held.length), 1)[0].release();
    }
    assert(cap.running + cap.reserved <= cap.capacity, `step ${step}: over the cap`);
    assertEquals([cap.reserved, cap.running], [held.length, slots.length]);
  }
  assert(evictions > 100, `evictions exercised: ${evictions}`);
});
