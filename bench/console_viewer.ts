/**
 * One headless Chromium showing a console page, in a process of its own, for
 * `bench/function_mode.ts --console`: the bench's own process only reads the runner's output,
 * so that puppeteer's traffic there cannot slow that reading (a runner whose stdout is read
 * late waits on its log writes). Prints `open` once the page has loaded; closes the browser and
 * exits when its stdin ends.
 *
 * `deno run -A bench/console_viewer.ts URL`
 * @module
 */
import { launchChromium } from "../tests/helpers/chromium.ts";

const url = Deno.args[0];
if (!url) throw new Error("usage: console_viewer.ts URL");
const { browser, close } = await launchChromium();
const page = await browser.newPage();
await page.goto(url);
console.log("open");
for await (const _ of Deno.stdin.readable) {
  // Nothing is sent; the end of stdin is the signal to close.
}
await close();
