import { assertEquals } from "./helpers/assert.ts";
import assertStrict from "node:assert/strict";
import { loadFunctionConfig, parseFunctionConfig } from "../runner/function_config.ts";
import { FunctionsConfigError } from "../runner/errors.ts";

Deno.test("valid grants are kept per function", () => {
  const table = parseFunctionConfig({
    functions: { hook: { allowNet: ["127.0.0.1:8080"], timeoutMs: 1000, env: { A: "b" } } },
  }, "f.json");
  assertEquals(table.get("hook"), {
    allowNet: ["127.0.0.1:8080"],
    timeoutMs: 1000,
    env: { A: "b" },
  });
  assertEquals(table.get("other"), undefined);
  assertEquals(parseFunctionConfig({ functions: { a: { prewarm: 2 } } }, "f.json").get("a"), {
    prewarm: 2,
  });
});

Deno.test("invalid grants are refused, naming the file, function and field", () => {
  const cases: Array<[unknown, RegExp]> = [
    [[], /f\.json: the top level must be an object/],
    [{ function: {} }, /key "function" must be absent/],
    [{ functions: { "bad-name": {} } }, /the name "bad-name" must be a match/],
    [{ functions: { a: { allowNet: "x" } } }, /functions\.a\.allowNet must be an array/],
    [
      { functions: { a: { allowRead: ["relative/path"] } } },
      /functions\.a\.allowRead must be a list of absolute paths/,
    ],
    [{ functions: { a: { allowAll: true } } }, /functions\.a\.allowAll must be one of/],
    [{ functions: { a: { timeoutMs: 0 } } }, /functions\.a\.timeoutMs must be an integer from 1/],
    [{ functions: { a: { allowNet: ["a,b"] } } }, /without commas/],
    [{ functions: { a: { prewarm: -1 } } }, /functions\.a\.prewarm must be an integer from 0/],
    [{ functions: { a: { prewarm: 1.5 } } }, /functions\.a\.prewarm must be an integer from 0/],
    [
      { functions: { a: { isolation: "function", prewarm: 2 } } },
      /functions\.a\.prewarm must be 0 or absent with isolation "function"/,
    ],
  ];
  for (const [content, message] of cases) {
    assertStrict.throws(
      () => parseFunctionConfig(content, "f.json"),
      (e: Error) => e instanceof FunctionsConfigError && message.test(e.message),
    );
  }
});

Deno.test("a missing file means no grants; a broken file is an error", async () => {
  assertEquals((await loadFunctionConfig("/nonexistent/functions.json")).size, 0);
  const path = await Deno.makeTempFile();
  await Deno.writeTextFile(path, "{oops");
  await assertStrict.rejects(loadFunctionConfig(path), /is not valid JSON/);
  await Deno.remove(path);
});

Deno.test("timeoutMs and retry backoffs are bounded by the longest timer, 2147483647 ms", () => {
  const max = 2 ** 31 - 1;
  const ok = parseFunctionConfig({
    functions: { a: { timeoutMs: max, retries: { attempts: 2, baseMs: max, maxMs: max } } },
  }, "f.json").get("a");
  assertEquals(ok, { timeoutMs: max, retries: { attempts: 2, baseMs: max, maxMs: max } });
  const cases: Array<[unknown, string]> = [
    [{ timeoutMs: max + 1 }, "functions.a.timeoutMs must be an integer from 1 to 2147483647"],
    [{ timeoutMs: Number.MAX_SAFE_INTEGER }, "functions.a.timeoutMs must be an integer from 1 to"],
    [
      { retries: { attempts: 2, baseMs: max + 1, maxMs: max + 1 } },
      "functions.a.retries.baseMs must be an integer from 0 to 2147483647",
    ],
    [
      { retries: { attempts: 2, maxMs: 2 ** 40 } },
      "functions.a.retries.maxMs must be an integer from 0 to 2147483647",
    ],
  ];
  for (const [entry, message] of cases) {
    assertStrict.throws(
      () => parseFunctionConfig({ functions: { a: entry } }, "f.json"),
      (e: Error) =>
        e instanceof FunctionsConfigError && e.message.includes(message) &&
        e.message.includes("the longest timer, about 24.8 days"),
      message,
    );
  }
});

Deno.test("paths are normalised; '.' and '..' segments are refused", () => {
  const ok = parseFunctionConfig({
    functions: { a: { allowRead: ["/srv//data/"], allowWrite: ["/srv/out/"] } },
  }, "f.json").get("a");
  assertEquals(ok, { allowRead: ["/srv/data"], allowWrite: ["/srv/out"] });
  for (const path of ["/srv/out/../../etc", "/srv/./out", "/.."]) {
    assertStrict.throws(
      () => parseFunctionConfig({ functions: { a: { allowWrite: [path] } } }, "f.json"),
      (e: Error) =>
        e instanceof FunctionsConfigError &&
        e.message.includes(
          'functions.a.allowWrite must be a list of absolute paths without "." or ".." segments',
        ) &&
        e.message.includes(JSON.stringify(path)),
      path,
    );
  }
});

Deno.test("env and allowEnv names that change how a process loads need allowLoaderEnv", () => {
  const cases: Array<[Record<string, unknown>, string]> = [
    [{ env: { LD_PRELOAD: "/tmp/x.so" } }, "functions.a.env"],
    [{ env: { DENO_DIR: "/root/.cache/deno" } }, "functions.a.env"],
    [{ allowEnv: ["NODE_OPTIONS"] }, "functions.a.allowEnv"],
    [{ allowEnv: ["ld_library_path"] }, "functions.a.allowEnv"],
  ];
  for (const [entry, where] of cases) {
    assertStrict.throws(
      () => parseFunctionConfig({ functions: { a: entry } }, "f.json"),
      (e: Error) =>
        e instanceof FunctionsConfigError &&
        e.message.includes(`${where} must be free of names that change how a process loads`) &&
        e.message.includes('list them in "allowLoaderEnv"'),
      JSON.stringify(entry),
    );
  }
  const opted = parseFunctionConfig({
    functions: { a: { env: { NODE_ENV: "production" }, allowLoaderEnv: ["NODE_ENV"] } },
  }, "f.json").get("a");
  assertEquals(opted, { env: { NODE_ENV: "production" }, allowLoaderEnv: ["NODE_ENV"] });
  assertStrict.throws(
    () => parseFunctionConfig({ functions: { a: { allowLoaderEnv: ["PATH"] } } }, "f.json"),
    /functions\.a\.allowLoaderEnv must be a list of LD_\*, DENO_\* or NODE_\* names/,
  );
});
