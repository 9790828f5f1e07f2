/**
 * Debian's Chromium, headless, for the console's browser test and bench: driven by
 * puppeteer-core (which downloads no browser), with the flags this closed network needs.
 * @module
 */
import puppeteer, { type Browser } from "puppeteer-core";

/** The browser binary: `$CHROMIUM`, else Debian's. */
export const CHROMIUM = Deno.env.get("CHROMIUM") ?? "/usr/bin/chromium";

/** A headless Chromium with an empty profile of its own; `close()` ends it and removes that. */
export async function launchChromium(): Promise<{ browser: Browser; close(): Promise<void> }> {
  const profile = await Deno.makeTempDir({ prefix: "task_runner_chromium_" });
  const browser = await puppeteer.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--no-first-run",
      `--user-data-dir=${profile}`,
    ],
  });
  return {
    browser,
    close: async () => {
      await browser.close();
      await Deno.remove(profile, { recursive: true });
    },
  };
}
