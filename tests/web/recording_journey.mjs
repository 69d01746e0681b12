// Recording from the web app's meeting, in headless Debian chromium (fake camera and microphone)
// driven by playwright-core (installed in tests/browser), against a `parley up` with its egress
// service. Usage: node recording_journey.mjs BASE_URL OUT_DIR
// A host (dev login) starts a meeting and a guest at phone width joins it; the host starts a
// recording from the control bar, both see it; the host stops it, both see it end; the host
// opens the room's recordings page (from "My rooms" on home), waits for the recording to be
// saved and downloads it. Prints one JSON line per step ({"step": name, ...}); screenshots of
// the recorded meeting and of the recordings page at desktop and phone widths go to OUT_DIR.
import { readFile } from "node:fs/promises";
import { chromium } from "../browser/node_modules/playwright-core/index.mjs";

const [base, out] = process.argv.slice(2);
const report = (step, values = {}) => process.stdout.write(JSON.stringify({ step, ...values }) + "\n");
const DESKTOP = { width: 1280, height: 800 };
const PHONE = { width: 390, height: 844 };
const TIMEOUT = 30000;
// The egress service starts a recorder (a Ray actor in a process of its own) that joins the
// meeting, and saves the file after the stop: slower than the rest on a small machine.
const RECORDER_TIMEOUT = 120000;

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream", "--autoplay-policy=no-user-gesture-required", "--disable-background-networking", "--no-sandbox"],
});

async function newPage(name, viewport) {
  const context = await browser.newContext({ viewport, locale: "en-US", permissions: ["camera", "microphone"], baseURL: base, acceptDownloads: true });
  const page = await context.newPage();
  page.setDefaultTimeout(TIMEOUT);
  page.on("pageerror", (e) => process.stderr.write(`[${name} page error] ${e}\n`));
  page.on("console", (m) => m.type() === "error" && process.stderr.write(`[${name} console] ${m.text()}\n`));
  return page;
}

const shot = (page, name) => page.screenshot({ path: `${out}/${name}.png` });
const previewPlaying = (page) => page.waitForFunction(() => document.querySelector("video[data-testid=preview]")?.currentTime > 0.3);
/** Waits until the page plays the video of every camera tile (the screenshots show pictures). */
const videosPlaying = (page) => page.waitForFunction(() => [...document.querySelectorAll('figure.tile[data-kind="camera"]')].every((tile) => tile.querySelector("video")?.currentTime > 0.3));
const badge = (page) => page.locator(".recording-badge", { hasText: "Recording" });

try {
  const host = await newPage("host", DESKTOP);
  await host.goto("/");
  await host.getByRole("link", { name: "Log in" }).first().click();
  await host.getByLabel("Log in as (dev login)").fill("ada");
  await host.getByRole("button", { name: "Log in" }).click();
  await host.getByRole("button", { name: "Start a meeting" }).click();
  await host.waitForURL(/\/r\/[a-z0-9-]+$/);
  const link = host.url();
  const slug = new URL(link).pathname.split("/").pop();
  await previewPlaying(host);
  await host.getByLabel("Your name").fill("Ada Host");
  await host.getByRole("button", { name: "Join now" }).click();
  await host.locator("figure.tile[data-local]").first().waitFor();

  const guest = await newPage("guest", PHONE);
  await guest.goto(link);
  await previewPlaying(guest);
  await guest.getByLabel("Your name").fill("Bob Guest");
  await guest.getByRole("button", { name: "Join now" }).click();
  await guest.locator("figure.tile[data-local]").first().waitFor();
  await host.waitForFunction(() => window.parleyRoom.participants.size === 1);
  await videosPlaying(host);
  await videosPlaying(guest);
  report("meeting", { slug });

  // Start: the recorder joins (hidden), and everyone's meeting shows that it is recorded.
  await host.getByRole("button", { name: "Start recording" }).click();
  for (const page of [host, guest]) {
    await badge(page).waitFor({ timeout: RECORDER_TIMEOUT });
    await page.getByText("This meeting is being recorded").first().waitFor();
  }
  const recordingState = await Promise.all([host, guest].map((page) => page.evaluate(() => ({ recording: window.parleyRoom.recording, others: window.parleyRoom.participants.size }))));
  await shot(host, "meeting-recording-desktop");
  await shot(guest, "meeting-recording-phone");
  report("recording", { host: recordingState[0], guest: recordingState[1] });

  // A few seconds of meeting in the file.
  await host.waitForTimeout(4000);
  await host.getByRole("button", { name: "Stop recording" }).click();
  for (const page of [host, guest]) {
    await badge(page).waitFor({ state: "detached", timeout: RECORDER_TIMEOUT });
    await page.getByText("Recording stopped").first().waitFor();
  }
  await host.getByRole("button", { name: "Start recording" }).waitFor();
  const stoppedState = await Promise.all([host, guest].map((page) => page.evaluate(() => window.parleyRoom.recording)));
  report("stopped", { host: stoppedState[0], guest: stoppedState[1] });

  // The recordings page, from the room in "My rooms" on home; the recording once saved.
  await host.evaluate(() => window.parleyRoom.disconnect());
  await guest.evaluate(() => window.parleyRoom.disconnect());
  await host.goto("/");
  await host.locator(`a[href="/r/${slug}/recordings"]`).click();
  await host.getByRole("heading", { name: `Recordings of ${slug}` }).waitFor();
  const row = host.locator("li.recording").first();
  for (const deadline = Date.now() + RECORDER_TIMEOUT; ; ) {
    await row.waitFor();
    if (await row.locator(".tag", { hasText: /^saved$|^notification_/ }).count()) break;
    if (Date.now() > deadline) throw new Error(`the recording was not saved: ${await row.textContent()}`);
    await host.waitForTimeout(1000);
    await host.reload(); // the page reads the list once
  }
  const listed = await host.locator("li.recording").count();
  const tags = await row.locator(".tag").allTextContents();
  await shot(host, "recordings-desktop");
  await host.setViewportSize(PHONE);
  await shot(host, "recordings-phone");
  await host.setViewportSize(DESKTOP);
  report("listed", { count: listed, tags });

  const [download] = await Promise.all([host.waitForEvent("download"), host.getByRole("button", { name: "Download" }).first().click()]);
  const bytes = await readFile(await download.path());
  // An MP4 file starts with its `ftyp` box: 4 bytes of size, then the type.
  report("downloaded", { filename: download.suggestedFilename(), bytes: bytes.length, box: bytes.subarray(4, 8).toString("latin1"), failure: await download.failure() });
  report("done");
} finally {
  await browser.close();
}
