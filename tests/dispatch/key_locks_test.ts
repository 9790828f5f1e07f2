import { assertEquals } from "../helpers/assert.ts";
import { KeyLocks } from "../../runner/dispatch/key_locks.ts";

Deno.test("one holder per key, waiters in order, drop and forget free the key", () => {
  const locks = new KeyLocks<string>();
  assertEquals(locks.acquireOrWait("a", "a1"), true);
  assertEquals(locks.acquireOrWait("a", "a2"), false);
  assertEquals(locks.acquireOrWait("a", "a3"), false);
  assertEquals(locks.acquireOrWait("b", "b1"), true);
  assertEquals(locks.release("a"), "a2");
  assertEquals(locks.busy("a"), true, "a2 holds it now");
  assertEquals(locks.drop((item) => item === "a3"), ["a3"]);
  assertEquals(locks.release("a"), undefined);
  assertEquals(locks.busy("a"), false);
  assertEquals(locks.forget("b"), []);
  assertEquals(locks.busy("b"), false);
});
