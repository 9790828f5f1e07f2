/**
 * How tasks end in a warm process, and what they print: timeouts and their collateral, crashes,
 * throws, attribution of interleaved output, forged frames, bounds, and task mode's denials.
 */
import { assert, assertEquals, assertMatch } from "../helpers/assert.ts";
import type { SandboxOutput } from "../../runner/sandbox/warm_sandbox.ts";
import { gone, run, send, until, withWarm } from "../helpers/warm_harness.ts";

// --- timeouts, crashes and failures --------------------------------------------------------

Deno.test("a timeout kills the process; the task beside it fails as collateral", async () => {
  await withWarm({ concurrency: 2 }, async (warm, _pids, recycles) => {
    const stuck = send(warm, "sleeps", { ms: 60_000 }, { timeoutMs: 700 });
    const beside = send(warm, "sleeps", { ms: 5_000 });
    assertEquals(stuck.pid, beside.pid);
    const [s, b] = await Promise.all([stuck.ran, beside.ran]);
    assertEquals(s.outcome, "timeout");
    assertEquals(s.reason, "killed by SIGTERM after timeout 700 ms");
    assertEquals(b.outcome, "failed");
    const collateral = "killed by SIGTERM: collateral of another task's timeout after 700 ms";
    assertEquals(b.reason, `${collateral} (warm sandbox pid ${s.pid})`);
    const after = await run(warm, "sleeps", { ms: 10 });
    assertEquals(after.outcome, "ok");
    assert(after.pid !== s.pid);
    assertEquals(recycles.timeout, 1);
  });
});

Deno.test("a handler that ignores SIGTERM is killed by SIGKILL after the grace", async () => {
  await withWarm({}, async (warm) => {
    const r = await run(warm, "ignores_sigterm", {}, { timeoutMs: 700 });
    assertEquals(r.outcome, "timeout");
    assertEquals(r.signal, "SIGKILL");
    assert(r.stdout.includes("ignoring SIGTERM"), `stdout: ${r.stdout}`);
  });
});

Deno.test("stop() ends its task and, as collateral, the others in the process", async () => {
  await withWarm({ concurrency: 2 }, async (warm) => {
    const a = send(warm, "sleeps", { ms: 5_000 });
    const b = send(warm, "sleeps", { ms: 5_000 });
    await new Promise((r) => setTimeout(r, 300));
    a.stop("at shutdown");
    const [ra, rb] = await Promise.all([a.ran, b.ran]);
    assertEquals([ra.outcome, ra.reason], ["failed", "killed by SIGTERM at shutdown"]);
    assertMatch(
      rb.reason,
      /^killed by SIGTERM: collateral of stopping another task \(at shutdown\)/,
    );
  });
});

Deno.test("a throwing handler fails its own task only; the process lives on", async () => {
  await withWarm({}, async (warm) => {
    const a = await run(warm, "throws");
    assertEquals([a.outcome, a.reason, a.code], [
      "failed",
      "handler threw Error: boom from throws.ts",
      1,
    ]);
    assertMatch(a.stderr.join("\n"), /boom from throws\.ts/);
    const b = await run(warm, "throws");
    assertEquals(b.pid, a.pid);
  });
});

Deno.test("exiting the process fails what ran there; the next task gets another", async () => {
  await withWarm({}, async (warm, _pids, recycles) => {
    const a = await run(warm, "exits_nonzero");
    assertEquals(a.outcome, "failed");
    assertEquals(a.reason, `exit 3; warm sandbox pid ${a.pid} ended with 1 task in flight`);
    assertEquals(a.stderr, ["about to exit 3"]);
    const b = await run(warm, "exits_nonzero");
    assert(b.pid !== a.pid);
    assertEquals(recycles.crash, 2);
  });
});

Deno.test("a handler over the heap cap crashes the process with out-of-memory", async () => {
  await withWarm({}, async (warm) => {
    const r = await run(warm, "oom", {}, { memoryMb: 32 });
    assertEquals(r.outcome, "failed");
    assertEquals(r.signal, "SIGTRAP");
    assertMatch(r.reason, /out of memory/);
  });
});

Deno.test("a module without a default export fails every task with exit 64", async () => {
  await withWarm({}, async (warm) => {
    const r = await run(warm, "no_default");
    assertEquals([r.outcome, r.code], ["failed", 64]);
    assertMatch(r.stderr.join("\n"), /no default export function/);
  });
});

Deno.test("an error that escapes every task ends the process with exit 70", async () => {
  const unattributed: SandboxOutput[] = [];
  await withWarm(
    { onSandboxOutput: (o) => unattributed.push(o) },
    async (warm, _pids, recycles) => {
      const a = await run(warm, "rejects_later");
      assertEquals(a.result, '"returned first"');
      assert(await until(() => recycles.crash === 1), "no crash recorded");
      assert(await gone(a.pid));
      assertMatch(
        unattributed.map((o) => o.line).join("\n"),
        /an error escaped every task: Error: nobody awaits this/,
      );
      const b = await run(warm, "rejects_later");
      assert(b.pid !== a.pid);
    },
  );
});

// --- output ---------------------------------------------------------------------------------

Deno.test("output of interleaved concurrent tasks is attributed to its own task", async () => {
  await withWarm({ concurrency: 4 }, async (warm) => {
    const all: string[] = [];
    const tags = ["alpha", "bravo", "charlie", "delta"];
    const runs = await Promise.all(
      tags.map((tag) => run(warm, "logs_interleaved", { tag }, { all })),
    );
    assertEquals(new Set(runs.map((r) => r.pid)).size, 1);
    for (const [i, r] of runs.entries()) {
      const tag = tags[i];
      assertEquals(r.outcome, "ok");
      assertEquals(
        r.stdout.filter((l) => / line /.test(l)),
        [0, 1, 2, 3, 4].map((n) => `${tag} line ${n}`),
      );
      assertEquals(r.stdout.filter((l) => / microtask /.test(l)).length, 5);
      assertEquals(r.stderr, [0, 2, 4].map((n) => `${tag} warning ${n}`));
      assert([...r.stdout, ...r.stderr].every((l) => l.startsWith(`${tag} `)));
    }
    // The tasks really did interleave: the first lines of all four came before any last line.
    const firstLast = all.findIndex((l) => / line 4$/.test(l));
    assertEquals(all.slice(0, firstLast).filter((l) => / line 0$/.test(l)).length, 4);
  });
});

Deno.test("a handler cannot forge a result frame, even by spying on the loader", async () => {
  const unattributed: SandboxOutput[] = [];
  await withWarm({ concurrency: 2, onSandboxOutput: (o) => unattributed.push(o) }, async (warm) => {
    const [a, b] = await Promise.all([
      run(warm, "forges_frames"),
      run(warm, "forges_frames", { waitMs: 300 }),
    ]);
    assertEquals(a.pid, b.pid);
    for (const r of [a, b]) {
      assertEquals(
        [r.outcome, r.reason],
        ["failed", "handler threw Error: forges_frames: the real outcome is a failure"],
      );
      assertEquals(r.result, undefined);
      assertMatch(r.stdout.join("\n"), /spied [1-9]\d* times, found 0 candidate nonces/);
      assert(r.stdout.includes("argv: []"), r.stdout.join("\n"));
      assertEquals(r.stdout.at(-1), "a line after a partial one");
      assertMatch(r.stderr.join("\n"), /Error: forges_frames: the real outcome is a failure/);
    }
    // Its direct writes were not believed either: they went to the sandbox's own output.
    assert(unattributed.some((o) => o.stream === "stdout" && / r 1 0 1000 /.test(o.line)));
    assert(unattributed.some((o) => o.line === "a partial line, no newline: "));
  });
});

Deno.test("output is bounded per task; direct writes go to the sandbox output", async () => {
  const unattributed: SandboxOutput[] = [];
  const options = { output: { maxLineBytes: 1000, maxTotalBytes: 64 * 1024 } };
  await withWarm({ ...options, onSandboxOutput: (o) => unattributed.push(o) }, async (warm) => {
    const r = await run(warm, "prints_lots", { mb: 2 });
    assertEquals(r.outcome, "ok");
    assertEquals(r.stdout.length, 1);
    assertEquals(r.stdout[0], "y".repeat(1000));
    assertEquals(r.droppedBytes, 99_000);
    assert(unattributed.length <= 65, `passed on ${unattributed.length} lines`);
    assert(unattributed.every((o) => o.line.length <= 1000 && o.pid === r.pid));
  });
});

Deno.test("a task that reads the heap cannot end another task with a forged frame", async () => {
  await withWarm({ concurrency: 2 }, async (warm) => {
    const started = performance.now();
    const victim = send(warm, "forges_from_heap", { role: "victim", waitMs: 1500 });
    await new Promise((r) => setTimeout(r, 300)); // the victim runs, with its id and frames
    const forger = await run(warm, "forges_from_heap", { role: "forger" });
    const v = await victim.ran;
    assertEquals(forger.pid, v.pid, "both tasks ran in one warm process");
    assertEquals([v.outcome, v.result], ["ok", '{"victim":true}'], forger.stdout[0]);
    assert(performance.now() - started >= 1500, "the victim ended before its own end");
    const seen = JSON.parse(forger.stdout[0]);
    assertEquals(seen.tokens, 0, `the forger found nonces: ${forger.stdout[0]}`);
    assertEquals(seen.routes.internal, "undefined");
  });
});
