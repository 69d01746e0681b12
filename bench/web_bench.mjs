// The browser half of bench/web_bench.py: time to the first remote video frame in the web app
// and in the legacy meet.html, in headless Debian chromium (fake camera and microphone) driven
// by playwright-core (installed in tests/browser).
// Usage: node web_bench.mjs BASE_URL ROOM_SLUG PUBLISHER_TOKEN JOINS
// A meet.html page joins first with PUBLISHER_TOKEN and publishes its camera and microphone;
// then JOINS joins of each page, alternating (app, legacy, app, ...) so that drifts in the
// machine's load fall on both, each in a fresh browser context that leaves before the next. One
// warm-up join of each is not counted. Prints one JSON line per measured join:
// {"page": "app" | "legacy", "ms": ..., "width": ..., "others": ...} (others: the remote
// participants the page saw, which is 1, the publisher, when the previous join had left).
//
// The end of a join is the first frame of the publisher's video rendered in the page: a
// requestVideoFrameCallback registered on each remote <video> as it enters the DOM (its
// callback runs when a frame is handed to the compositor), read on the page's own clock.
// The start: for the app, the click on "Join now" on pre-join (the camera preview already
// runs there; the click then makes the REST join call, connects to the SFU and publishes);
// for meet.html, which has no pre-join and joins as it loads, the start of the navigation
// (performance.timeOrigin: the page load, its SDK bundle, getUserMedia and the connection).
import { chromium } from "../tests/browser/node_modules/playwright-core/index.mjs";

const [base, slug, publisherToken, joinsArg] = process.argv.slice(2);
const joins = Number(joinsArg);
const TIMEOUT = 30000;

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: [
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    "--autoplay-policy=no-user-gesture-required",
    "--disable-background-networking",
    "--no-sandbox",
  ],
});

/** Runs in every measured page before its own scripts: notes when the first frame of a remote
 * video is rendered (window.firstRemoteFrame, ms on the page's performance clock). */
function watchRemoteVideo() {
  window.firstRemoteFrame = null;
  const watched = new WeakSet();
  const isRemote = (video) => (location.pathname.endsWith("/meet.html") ? video.id !== "local" : video.closest("figure.tile:not([data-local])") !== null);
  const watch = () => {
    for (const video of document.querySelectorAll("video")) {
      if (watched.has(video) || !isRemote(video)) continue;
      watched.add(video);
      video.requestVideoFrameCallback((now, frame) => {
        window.firstRemoteFrame ??= { at: now, width: frame.width };
      });
    }
  };
  new MutationObserver(watch).observe(document, { childList: true, subtree: true });
}

async function newPage() {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, locale: "en-US", permissions: ["camera", "microphone"], baseURL: base });
  const page = await context.newPage();
  page.setDefaultTimeout(TIMEOUT);
  page.on("pageerror", (e) => process.stderr.write(`[page error] ${e}\n`));
  return page;
}

const firstFrame = (page) => page.waitForFunction(() => window.firstRemoteFrame).then((handle) => handle.jsonValue());

/** One join of the web app: pre-join with its preview running, then the click on "Join now". */
async function joinApp(n) {
  const page = await newPage();
  try {
    await page.addInitScript(watchRemoteVideo);
    await page.addInitScript(() => {
      // The click's own time, on the page's clock (capture phase: before the app handles it).
      window.addEventListener("click", (event) => event.target.closest?.("button[type=submit]") && (window.joinClickedAt ??= performance.now()), true);
    });
    await page.goto(`/r/${slug}`);
    await page.waitForFunction(() => document.querySelector("video[data-testid=preview]")?.currentTime > 0);
    await page.getByLabel("Your name").fill(`App ${n}`);
    await page.getByRole("button", { name: "Join now" }).click();
    const frame = await firstFrame(page);
    const { clicked, others } = await page.evaluate(() => ({ clicked: window.joinClickedAt, others: window.parleyRoom.participants.size }));
    await page.evaluate(() => window.parleyRoom.disconnect());
    return { page: "app", ms: frame.at - clicked, width: frame.width, others };
  } finally {
    await page.context().close();
  }
}

/** One join of meet.html: a token minted for it, then the page, which joins as it loads. */
async function joinLegacy(n) {
  const response = await fetch(`${base}/v1/rooms/${slug}:join`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ displayName: `Legacy ${n}` }) });
  if (!response.ok) throw new Error(`join for meet.html: HTTP ${response.status} ${await response.text()}`);
  const token = (await response.json()).grant.token;
  const page = await newPage();
  try {
    await page.addInitScript(watchRemoteVideo);
    await page.goto(`/meet.html#token=${token}`);
    // Navigation starts at 0 on the page's clock (performance.timeOrigin).
    const frame = await firstFrame(page);
    await page.waitForFunction(() => window.parleyReady === true);
    const others = await page.evaluate(() => window.parley.participants.size);
    await page.evaluate(() => window.parley.disconnect());
    return { page: "legacy", ms: frame.at, width: frame.width, others };
  } finally {
    await page.context().close();
  }
}

try {
  const publisher = await newPage();
  await publisher.goto(`/meet.html#token=${publisherToken}`);
  await publisher.waitForFunction(() => window.parleyReady === true);
  await joinApp(0);
  await joinLegacy(0);
  // Each join starts once the publisher sees the previous joiner gone: a leave that did not
  // reach the SFU before its page closed leaves the session waiting for a resume a while.
  const alone = async (previous) => {
    const since = Date.now();
    await publisher.waitForFunction(() => window.parley.participants.size === 0, null, { timeout: 120000 });
    if (Date.now() - since > 1000) process.stderr.write(`  (waited ${Date.now() - since} ms for the session of the previous join, ${previous}, to end)\n`);
  };
  for (let n = 1; n <= joins; n++) {
    await alone("meet.html");
    process.stdout.write(JSON.stringify(await joinApp(n)) + "\n");
    await alone("app");
    process.stdout.write(JSON.stringify(await joinLegacy(n)) + "\n");
  }
} finally {
  await browser.close();
}
