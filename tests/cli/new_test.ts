/**
 * `main.ts new` as a real subprocess: the files it writes (a handler that passes deno check,
 * fmt and lint, and a test outside functions/ that passes), `--schema` (schema file, its
 * functions.json entry, a generated test of the rejection), and the names and files it refuses.
 */
import { fileURLToPath } from "node:url";
import { assert, assertEquals, assertMatch } from "../helpers/assert.ts";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const MAIN = `${ROOT}main.ts`;

async function deno(args: string[], env: Record<string, string>) {
  const out = await new Deno.Command(Deno.execPath(), { args, env, cwd: ROOT }).output();
  const text = new TextDecoder();
  return { code: out.code, stdout: text.decode(out.stdout), stderr: text.decode(out.stderr) };
}

async function workspace() {
  const dir = await Deno.makeTempDir({ prefix: "new_test_" });
  const env = { FUNCTIONS_DIR: `${dir}/functions`, FUNCTIONS_CONFIG: `${dir}/functions.json` };
  const scaffold = (...args: string[]) =>
    deno(["run", "-A", MAIN, "new", ...args, "--tests-dir", `${dir}/tests`], env);
  return { dir, env, scaffold };
}

Deno.test("new writes a handler and a passing test for it outside functions/", async () => {
  const { dir, env, scaffold } = await workspace();
  const r = await scaffold("greet_user");
  assertEquals(r.code, 0, r.stderr);
  const handler = await Deno.readTextFile(`${dir}/functions/greet_user.ts`);
  assertMatch(handler, /export default function greetUser\(task: Task<Payload>, ctx: Context\)/);
  assertMatch(handler, /can read itself and nothing else/);
  assertMatch(handler, /"allowNet": \["api\.example\.com:443"\]/);
  assertEquals([...Deno.readDirSync(`${dir}/functions`)].map((e) => e.name), ["greet_user.ts"]);
  const tested = await deno(["test", "-A", `${dir}/tests/greet_user_test.ts`], env);
  assertEquals(tested.code, 0, tested.stdout + tested.stderr);
  assertMatch(tested.stdout, /1 passed \| 0 failed/);
  // As the project checks functions/ (its deno.json: line width 100, its imports).
  for (const tool of [["fmt", "--check"], ["lint"], ["check"]]) {
    const r = await deno([
      ...tool,
      "--config",
      `${ROOT}deno.json`,
      `${dir}/functions/greet_user.ts`,
    ], env);
    assertEquals(r.code, 0, `deno ${tool.join(" ")}: ${r.stdout}${r.stderr}`);
  }
  await Deno.remove(dir, { recursive: true });
});

Deno.test("new --schema writes the schema, registers it, and tests the rejection", async () => {
  const { dir, env, scaffold } = await workspace();
  await Deno.writeTextFile(env.FUNCTIONS_CONFIG, '{"functions": {"other": {"timeoutMs": 5}}}');
  const r = await scaffold("mailer", "--schema");
  assertEquals(r.code, 0, r.stderr);
  const config = JSON.parse(await Deno.readTextFile(env.FUNCTIONS_CONFIG));
  assertEquals(config, {
    functions: { other: { timeoutMs: 5 }, mailer: { schema: "schemas/mailer.json" } },
  });
  const schema = JSON.parse(await Deno.readTextFile(`${dir}/schemas/mailer.json`));
  assertEquals(schema.required, ["to"]);
  const tested = await deno(["test", "-A", `${dir}/tests/mailer_test.ts`], env);
  assertEquals(tested.code, 0, tested.stdout + tested.stderr);
  assertMatch(tested.stdout, /2 passed \| 0 failed/);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("new refuses invalid names, test-like names and existing files", async () => {
  const { dir, scaffold } = await workspace();
  const cases: Array<[string, RegExp]> = [
    ["bad-name", /"bad-name" is not a handler name/],
    ["../escape", /is not a handler name/],
    ["report_test", /would make functions\/report_test\.ts look like a test file/],
  ];
  for (const [name, pattern] of cases) {
    const r = await scaffold(name);
    assertEquals(r.code, 2, name);
    assertMatch(r.stderr, pattern);
  }
  assertEquals((await scaffold("twice")).code, 0);
  const before = await Deno.readTextFile(`${dir}/functions/twice.ts`);
  await Deno.writeTextFile(`${dir}/functions/twice.ts`, before + "// edited\n");
  const again = await scaffold("twice");
  assertEquals(again.code, 2);
  assertMatch(again.stderr, /twice\.ts already exists/);
  assert((await Deno.readTextFile(`${dir}/functions/twice.ts`)).endsWith("// edited\n"));
  await Deno.remove(dir, { recursive: true });
});
