/**
 * One headless Chromium, in a process of its own, for `bench/function_mode.ts --console`: the
 * bench's own process only reads the runner's output, so that puppeteer's traffic there cannot
 * slow that reading (a runner whose stdout is read late waits on its log writes).
 *
 * The browser is launched first, on about:blank, and prints `ready`; each line on stdin is a URL
 * to open, answered with `open` once the page has loaded. The end of stdin closes the browser.
 * So the bench can launch the browser before the run and open the console once it is up, and
 * neither Chromium's launch nor a page load falls within the measured part of a run.
 *
 * `deno run -A bench/console_viewer.ts`
 * @module
 */
import { launchChromium } from "../tests/helpers/chromium.ts";

const { browser, close } = await launchChromium();
const page = await browser.newPage();
console.log("ready");
let pending = "";
for await (const text of Deno.stdin.readable.pipeThrough(new TextDecoderStream())) {
  const lines = (pending + text).split("\n");
  pending = lines.pop()!;
  for (const url of lines) {
    await page.goto(url);
    console.log("open");
  }
}
await close();
