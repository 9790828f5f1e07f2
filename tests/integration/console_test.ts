/**
 * The console in a real browser (Debian's chromium, headless, driven by puppeteer-core; no
 * browser is downloaded): a runner on the test broker runs tasks that end ok, failed with a
 * message, by timeout and rejected, and each page shows what a person should see. Payloads and
 * a handler name that carry markup stay inert text; replay is refused without the token and
 * works with it; screenshots go to docs/screenshots/.
 */
import type { Page } from "puppeteer-core";
import { launchChromium } from "../helpers/chromium.ts";
import { assert, assertEquals, assertMatch } from "../helpers/assert.ts";
import { functionsConfig, kcatProduce, ROOT, RunnerProcess, unique } from "../helpers/harness.ts";

/** The page's DOM, as far as the functions run in the browser use it (no DOM lib here). */
interface Shown {
  innerText: string;
  disabled?: boolean;
  click(): void;
  querySelector(selector: string): Shown | null;
}
declare const document: {
  querySelector(selector: string): Shown | null;
  querySelectorAll(selector: string): Iterable<Shown>;
  dispatchEvent(event: Event): boolean;
};

/**
 * Click, in one step inside the page (rows are re-rendered as outcomes arrive), the element
 * `inner` of the first row of `table` whose text contains `text`.
 */
async function clickRow(page: Page, table: string, text: string, inner = "td") {
  await page.waitForFunction(
    (table, text, inner) => {
      for (const row of document.querySelectorAll(`${table} tbody tr`)) {
        if (row.innerText.includes(text)) {
          row.querySelector(inner)?.click();
          return true;
        }
      }
      return false;
    },
    { timeout: 30_000, polling: 100 },
    table,
    text,
    inner,
  );
}

const XSS = "<img src=x onerror=alert(1)>";
const TOKEN = "console-token-for-the-browser-test";

function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  return port;
}

/** The visible text of the element matched by `selector`. */
const textOf = (page: Page, selector: string) =>
  page.$eval(selector, (e) => (e as unknown as Shown).innerText);

/** Wait until the text of `selector` matches `pattern` (or, with `absent`, stops matching). */
async function waitForText(page: Page, selector: string, pattern: RegExp, absent = false) {
  await page.waitForFunction(
    (sel, source, flags, absent) => {
      const text = document.querySelector(sel)?.innerText ?? "";
      return new RegExp(source, flags).test(text) !== absent;
    },
    { timeout: 30_000, polling: 100 },
    selector,
    pattern.source,
    pattern.flags,
    absent,
  );
}

Deno.test("the console shows running tasks, outcomes and dead letters, and replays with a token", async () => {
  const topic = unique("console");
  const port = freePort();
  const base = `http://127.0.0.1:${port}`;
  const tokenFile = await Deno.makeTempFile();
  await Deno.writeTextFile(tokenFile, TOKEN + "\n");
  await using functions = await functionsConfig({ hangs: { timeoutMs: 1500 } });
  await using runner = RunnerProcess.onTopic(topic, {
    METRICS_PORT: String(port),
    DLQ_TOPIC: `${topic}.dlq`,
    CONSOLE_TOKEN_FILE: tokenFile,
    FUNCTIONS_CONFIG: functions.path,
    LOG_LEVEL: "info",
  });
  await runner.ready();
  const { browser, close } = await launchChromium();
  const dialogs: string[] = [];
  try {
    const page = await browser.newPage();
    await page.setViewport({ width: 1280, height: 900 });
    page.on("dialog", async (dialog) => {
      dialogs.push(`${dialog.type()}: ${dialog.message()}`);
      if (dialog.type() === "confirm") await dialog.accept();
      else await dialog.dismiss();
    });
    const pageErrors: string[] = [];
    page.on("pageerror", (error) => pageErrors.push(String(error)));

    // Running: a task appears while it runs and disappears when it ends.
    await page.goto(`${base}/#running`);
    await waitForText(page, "#live", /live/);
    await kcatProduce(topic, JSON.stringify({ ms: 3000 }), { headers: { php_worker: "sleeps" } });
    await waitForText(page, "#running-table tbody", /sleeps/);
    assertMatch(await textOf(page, "#running-table tbody"), new RegExp(`${topic}/\\d@0`));
    await waitForText(page, "#running-table tbody", /sleeps/, true);

    // Outcomes of every kind, with markup in a payload and in a handler name.
    await kcatProduce(topic, JSON.stringify({ note: XSS }), { headers: { php_worker: "echo" } });
    await kcatProduce(topic, "{}", { headers: { php_worker: "declines" } });
    await kcatProduce(topic, "{}", { headers: { php_worker: "hangs" } });
    await kcatProduce(topic, JSON.stringify({ note: XSS }), { headers: { php_worker: XSS } });
    await runner.waitForOutcomes(5);

    // Recent: the failure's message is shown; a task's detail has its output, as text.
    await page.goto(`${base}/#recent`);
    await waitForText(page, "#recent-table tbody", /CardDeclined: card declined/);
    const recent = await textOf(page, "#recent-table tbody");
    assertMatch(recent, /timeout[\s\S]*killed by SIGTERM after timeout 1500 ms/);
    assertMatch(recent, /rejected/);
    assert(recent.includes(XSS), "the handler name with markup is shown as text");
    await page.select("#filter-outcome", "failed");
    await waitForText(page, "#recent-table tbody", /sleeps|echo|hangs/, true);
    assertMatch(await textOf(page, "#recent-table tbody"), /declines/);
    await clickRow(page, "#recent-table", "declines");
    await waitForText(page, "#detail", /card declined: insufficient funds/);
    const detail = await textOf(page, "#detail");
    assertMatch(
      detail,
      /Error\s+CardDeclined: card declined: insufficient funds\s+at .*declines\.ts/,
    );
    assert(!/\[object|null/.test(detail), detail);
    await page.select("#filter-outcome", "ok");
    await waitForText(page, "#recent-table tbody", /echo/);
    await clickRow(page, "#recent-table", "echo");
    await waitForText(page, "#detail", /stdout: /);
    assert((await textOf(page, "#detail")).includes(XSS), "the output line is shown as text");
    await page.select("#filter-outcome", "");
    await waitForText(page, "#recent-table tbody", /declines/);
    await clickRow(page, "#recent-table", "declines");
    await waitForText(page, "#detail", /card declined/);
    await page.screenshot({ path: `${ROOT}docs/screenshots/console_recent.png` });

    // Dead letters: the failure, the timeout and the rejection, with markup inert.
    await page.goto(`${base}/#dead-letters`);
    await waitForText(page, "#dlq-table tbody", /declines/);
    await waitForText(page, "#dlq-table tbody", /hangs/);
    const dlq = await textOf(page, "#dlq-table tbody");
    assertMatch(dlq, /exit 1: handler threw CardDeclined: card declined: insufficient funds/);
    assert(dlq.includes(XSS), "the rejected message's handler and payload are shown as text");
    await clickRow(page, "#dlq-table", "declines", "td:nth-child(2)");
    await waitForText(page, "#dlq-detail", /x-task-runner-stack: at /);
    await clickRow(page, "#dlq-table", "declines", "input");

    // Without the token: refused, with a message. With it: a dry run, then the replay.
    await page.click("#dry-run");
    await waitForText(page, "#replay-result", /refused: the console token is missing or wrong/);
    assert(await page.$eval("#confirm", (b) => (b as unknown as Shown).disabled));
    await page.type("#token", TOKEN);
    await page.click("#dry-run");
    await waitForText(page, "#replay-result", /would replay \d@\d+ \(declines\)/);
    assertEquals(runner.outcomes().filter((o) => o.handler === "declines").length, 1);
    await page.screenshot({ path: `${ROOT}docs/screenshots/console_dead_letters.png` });
    await page.click("#confirm");
    await waitForText(
      page,
      "#replay-result",
      new RegExp(`replayed \\d@\\d+ \\(declines\\) to ${topic}/`),
    );
    await runner.waitFor(
      "the replayed task to run again",
      () => runner.outcomes().filter((o) => o.handler === "declines").length === 2 || undefined,
    );

    // Overview and Functions answer too.
    await page.goto(`${base}/#functions`);
    await waitForText(page, "#functions-table tbody", /declines[\s\S]*failed/);
    assertMatch(await textOf(page, "#functions-table tbody"), /no_default\s+no/);
    await page.goto(`${base}/#overview`);
    await waitForText(page, "#lag tbody", /\d/);
    await waitForText(page, "#by-function tbody", /declines\s+0\s+2/);
    await page.screenshot({ path: `${ROOT}docs/screenshots/console_overview.png` });

    // A hidden tab closes its stream; shown again, it reads what runs now (a task started while
    // it was hidden) and follows live again.
    await page.goto(`${base}/#running`);
    await waitForText(page, "#live", /^live$/);
    const setHidden = (hidden: boolean) =>
      page.evaluate((hidden) => {
        Object.defineProperty(document, "hidden", { value: hidden, configurable: true });
        document.dispatchEvent(new Event("visibilitychange"));
      }, hidden);
    await setHidden(true);
    await waitForText(page, "#live", /paused while hidden/);
    assertEquals(await page.evaluate("state.events"), null, "no stream while hidden");
    await kcatProduce(topic, JSON.stringify({ ms: 3000 }), { headers: { php_worker: "sleeps" } });
    const runningNow = async () => await (await fetch(`${base}/api/running`)).text();
    for (let i = 0; i < 100 && !(await runningNow()).includes("sleeps"); i++) {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    assertMatch(await runningNow(), /sleeps/, "the task started while the tab was hidden");
    assertEquals(await textOf(page, "#running-table tbody"), "", "the hidden page was not told");
    await setHidden(false);
    await waitForText(page, "#live", /^live$/);
    await waitForText(page, "#running-table tbody", /sleeps/);
    await waitForText(page, "#running-table tbody", /sleeps/, true);

    // Nothing the runner sent became markup, and no script ran from it.
    assertEquals(await page.$$eval("main img", (imgs) => imgs.length), 0);
    assertEquals(dialogs.filter((d) => !d.startsWith("confirm")), []);
    assertEquals(dialogs.length, 1, "the replay asked for confirmation once");
    assertEquals(pageErrors, []);

    // A page of another name rebound to 127.0.0.1 (DNS rebinding) reads nothing.
    // (fetch() would not send another Host: a raw request.)
    const connection = await Deno.connect({ hostname: "127.0.0.1", port });
    await connection.write(
      new TextEncoder().encode(
        `GET /api/recent HTTP/1.1\r\nHost: evil.example:${port}\r\nConnection: close\r\n\r\n`,
      ),
    );
    const answer = await new Response(connection.readable).text();
    assertMatch(answer, /^HTTP\/1\.1 421 /);

    // An action without the CSRF token is refused, whatever the console token.
    const forged = await fetch(`${base}/api/replay`, {
      method: "POST",
      headers: { "x-console-token": TOKEN, "content-type": "application/json" },
      body: JSON.stringify({ partition: 0, offset: 0, dryRun: false }),
    });
    assertEquals(forged.status, 403);
    assertMatch((await forged.json()).error, /CSRF/);
  } finally {
    await close();
    await Deno.remove(tokenFile);
  }
});

Deno.test("a console bound to a non-loopback address without a token is a start-up error", async () => {
  await using runner = RunnerProcess.onTopic(unique("console_bind"), {
    METRICS_PORT: String(freePort()),
    METRICS_HOST: "0.0.0.0",
  });
  let timer: ReturnType<typeof setTimeout> | undefined;
  const status = await Promise.race([
    runner.exited,
    new Promise<null>((resolve) => timer = setTimeout(() => resolve(null), 30_000)),
  ]);
  clearTimeout(timer);
  assert(status !== null, "the runner should refuse to start, but it is still running");
  assertEquals(status.success, false);
  assertMatch(runner.raw.join("\n"), /METRICS_HOST 0\.0\.0\.0 is not a loopback address/);
});
