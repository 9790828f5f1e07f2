/** The console's access rules: the token file, the bind check, and what an action needs. */
import { assertEquals, assertMatch } from "../helpers/assert.ts";
import { ConsoleAccess, loadConsoleToken } from "../../runner/console/console_access.ts";
import { ConfigError } from "../../runner/errors.ts";

const TOKEN = "a-console-token-of-some-length";

/** Assert that `run` rejects with a ConfigError whose message includes `text`. */
async function assertRejects(run: () => Promise<unknown>, _type: unknown, text: string) {
  try {
    await run();
  } catch (error) {
    assertEquals(error instanceof ConfigError, true, String(error));
    assertMatch((error as Error).message, new RegExp(text));
    return;
  }
  throw new Error(`expected a ConfigError naming "${text}"`);
}

function post(headers: Record<string, string>): Request {
  return new Request("http://127.0.0.1/api/replay", { method: "POST", headers, body: "{}" });
}

Deno.test("an action needs POST, the CSRF token and the console token", () => {
  const access = new ConsoleAccess({ token: TOKEN, csrf: "c" });
  const ok = { "x-csrf-token": "c", "x-console-token": TOKEN };
  assertEquals(access.checkAction(post(ok)), null);
  assertEquals(access.checkAction(new Request("http://127.0.0.1/api/replay"))?.status, 405);
  assertEquals(access.checkAction(post({ "x-console-token": TOKEN }))?.status, 403);
  const wrong = access.checkAction(post({ "x-csrf-token": "c", "x-console-token": "nope" }));
  assertEquals(wrong?.status, 401);
  assertMatch(wrong!.message, /console token is missing or wrong/);
});

Deno.test("without a token, actions are off and say how to turn them on", () => {
  const refusal = new ConsoleAccess({ token: null }).checkAction(post({}));
  assertEquals(refusal?.status, 403);
  assertMatch(refusal!.message, /CONSOLE_TOKEN_FILE/);
});

Deno.test("the token comes from its file; a non-loopback bind needs one", async () => {
  const file = await Deno.makeTempFile();
  try {
    await Deno.writeTextFile(file, `${TOKEN}\n`);
    assertEquals(await loadConsoleToken("0.0.0.0", file), TOKEN);
    assertEquals(await loadConsoleToken("127.0.0.1", null), null);
    await assertRejects(() => loadConsoleToken("0.0.0.0", null), ConfigError, "not a loopback");
    await Deno.writeTextFile(file, "short");
    await assertRejects(() => loadConsoleToken("127.0.0.1", file), ConfigError, "at least 16");
    await assertRejects(
      () => loadConsoleToken("127.0.0.1", `${file}.missing`),
      ConfigError,
      "cannot be read",
    );
  } finally {
    await Deno.remove(file);
  }
});
