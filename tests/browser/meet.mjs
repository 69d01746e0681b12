// Opens Parley's meeting page in headless Debian chromium with a fake camera and microphone.
// Usage: node meet.mjs URL   (URL of /meet.html with #token=...)
// Prints one JSON line when the page has joined and published ({"event": "ready", ...}), one
// when it has decoded video from the SFU ({"event": "decoded", ...}), then waits for its
// stdin to close and exits. Messages the page sends: type "chat TEXT" on stdin.
import { chromium } from "playwright-core";
import readline from "node:readline";

const url = process.argv[2];
const print = (event) => process.stdout.write(JSON.stringify(event) + "\n");
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: [
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    "--disable-background-networking",
    "--no-sandbox",
  ],
});
try {
  const page = await browser.newPage();
  page.on("console", (m) => process.stderr.write(`[page] ${m.text()}\n`));
  page.on("pageerror", (e) => process.stderr.write(`[page error] ${e}\n`));
  page.on("requestfailed", (r) => process.stderr.write(`[request failed] ${r.url()} ${r.failure()?.errorText}\n`));
  page.on("response", (r) => r.status() >= 400 && process.stderr.write(`[http ${r.status()}] ${r.url()}\n`));
  await page.goto(url);
  try {
    await page.waitForFunction(() => window.parleyReady === true, null, { timeout: 30000 });
  } catch (error) {
    const status = await page.evaluate(() => document.getElementById("status")?.textContent);
    throw new Error(`the page did not get ready (status: ${status}): ${error.message}`);
  }
  print({ event: "ready", published: await page.evaluate(() => [...window.parley.published.keys()]) });
  // Video frames decoded from the SFU (getStats of the subscriber connection), polled.
  const decodedFrames = () =>
    page.evaluate(async () => {
      const pc = window.parley.subscriber;
      let frames = 0;
      if (pc) (await pc.getStats()).forEach((s) => s.type === "inbound-rtp" && s.kind === "video" && (frames += s.framesDecoded || 0));
      return frames;
    });
  let framesDecoded = 0;
  for (const deadline = Date.now() + 30000; framesDecoded <= 10 && Date.now() < deadline; ) {
    await new Promise((resolve) => setTimeout(resolve, 250));
    framesDecoded = await decodedFrames();
  }
  print({ event: "decoded", framesDecoded });
  const input = readline.createInterface({ input: process.stdin });
  for await (const line of input) {
    if (line.startsWith("chat ")) await page.evaluate((text) => window.parley.sendChat(text), line.slice(5));
  }
} finally {
  await browser.close();
}
