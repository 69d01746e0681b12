// The web app's journey in headless Debian chromium (fake camera, microphone and screen), driven
// by playwright-core (installed in tests/browser). Usage: node journey.mjs BASE_URL OUT_DIR
// Prints one JSON line per step ({"step": name, ...measurements}); the pytest file asserts them.
// Screenshots of each screen at desktop and phone widths go to OUT_DIR.
import { chromium } from "../browser/node_modules/playwright-core/index.mjs";

const [base, out] = process.argv.slice(2);
const report = (step, values = {}) => process.stdout.write(JSON.stringify({ step, ...values }) + "\n");
const DESKTOP = { width: 1280, height: 800 };
const PHONE = { width: 390, height: 844 };
const TIMEOUT = 30000;

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: [
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    "--auto-select-desktop-capture-source=Entire screen",
    "--autoplay-policy=no-user-gesture-required",
    "--disable-background-networking",
    "--no-sandbox",
  ],
});

async function newPage(name, viewport) {
  const context = await browser.newContext({ viewport, locale: "en-US", permissions: ["camera", "microphone", "clipboard-read", "clipboard-write"], baseURL: base });
  const page = await context.newPage();
  page.setDefaultTimeout(TIMEOUT);
  page.on("pageerror", (e) => process.stderr.write(`[${name} page error] ${e}\n`));
  page.on("console", (m) => m.type() === "error" && process.stderr.write(`[${name} console] ${m.text()}\n`));
  return page;
}

const shot = (page, name) => page.screenshot({ path: `${out}/${name}.png` });

const AXE = new URL("../../web/node_modules/axe-core/axe.min.js", import.meta.url).pathname;
/** axe-core's serious and critical violations on the page as it is now (WCAG 2 A / AA rules). */
async function axe(page, screen) {
  await page.addScriptTag({ path: AXE });
  const found = await page.evaluate(async () => {
    const result = await window.axe.run(document, { runOnly: ["wcag2a", "wcag2aa"], resultTypes: ["violations"] });
    return result.violations.filter((v) => v.impact === "serious" || v.impact === "critical").map((v) => ({ id: v.id, impact: v.impact, nodes: v.nodes.slice(0, 3).map((n) => n.target.join(" ")) }));
  });
  report("axe", { screen, violations: found });
}

/** Waits until the pre-join preview plays (a picture, not a black box, on the screenshot). */
const previewPlaying = (page) => page.waitForFunction(() => document.querySelector("video[data-testid=preview]")?.currentTime > 0.3);

async function devLogin(page, subject) {
  await page.getByRole("link", { name: "Log in" }).first().click();
  await page.getByLabel("Log in as (dev login)").fill(subject);
  await page.getByRole("button", { name: "Log in" }).click();
  await page.getByRole("button", { name: "Start a meeting" }).waitFor();
}

async function joinFromPrejoin(page, name) {
  if (name) await page.getByLabel("Your name").fill(name);
  await page.getByRole("button", { name: "Join now" }).click();
}

/** Waits until the page decodes video of `identity`'s tile of `kind`, and reports it. */
async function videoOf(page, identity, kind = "camera") {
  const selector = `figure.tile[data-identity="${identity}"][data-kind="${kind}"] video`;
  await page.locator(selector).first().waitFor();
  return page.evaluate(async (selector) => {
    const video = document.querySelector(selector);
    for (const deadline = Date.now() + 20000; Date.now() < deadline && (video.videoWidth === 0 || video.currentTime < 0.5); ) await new Promise((r) => setTimeout(r, 200));
    const canvas = document.createElement("canvas");
    canvas.width = 64;
    canvas.height = 36;
    const context = canvas.getContext("2d");
    context.drawImage(video, 0, 0, 64, 36);
    const pixels = context.getImageData(0, 0, 64, 36).data;
    let sum = 0;
    for (let i = 0; i < pixels.length; i += 4) sum += (pixels[i] + pixels[i + 1] + pixels[i + 2]) / 3;
    const room = window.parleyRoom;
    let framesDecoded = 0;
    const stats = await room.subscriberConnection.getStats();
    const track = video.srcObject.getVideoTracks()[0];
    stats.forEach((s) => s.type === "inbound-rtp" && s.kind === "video" && s.trackIdentifier === track.id && (framesDecoded += s.framesDecoded || 0));
    if (!framesDecoded) stats.forEach((s) => s.type === "inbound-rtp" && s.kind === "video" && (framesDecoded = Math.max(framesDecoded, s.framesDecoded || 0)));
    return { width: video.videoWidth, meanLuma: sum / (pixels.length / 4), framesDecoded };
  }, selector);
}

/** The audio energy received from the other participants (getStats totalAudioEnergy), after it grew. */
async function audioEnergy(page) {
  return page.evaluate(async () => {
    const energy = async () => {
      let total = 0;
      (await window.parleyRoom.subscriberConnection.getStats()).forEach((s) => s.type === "inbound-rtp" && s.kind === "audio" && (total += s.totalAudioEnergy || 0));
      return total;
    };
    for (const deadline = Date.now() + 20000; Date.now() < deadline; ) {
      const value = await energy();
      if (value > 0) return value;
      await new Promise((r) => setTimeout(r, 250));
    }
    return energy();
  });
}

/** Waits until the page decodes more frames of `identity`'s camera than when called (getStats of
 * the subscriber connection in use now: a resumed session has new connections), and reports. */
async function framesGrow(page, identity) {
  return page.evaluate(async (identity) => {
    const decoded = async () => {
      const video = document.querySelector(`figure.tile[data-identity="${identity}"][data-kind="camera"] video`);
      const track = video?.srcObject?.getVideoTracks()[0];
      let frames = 0;
      if (track) (await window.parleyRoom.subscriberConnection.getStats()).forEach((s) => s.type === "inbound-rtp" && s.kind === "video" && s.trackIdentifier === track.id && (frames += s.framesDecoded || 0));
      return frames;
    };
    const before = await decoded();
    let after = before;
    for (const deadline = Date.now() + 20000; Date.now() < deadline && after < before + 10; ) {
      await new Promise((r) => setTimeout(r, 200));
      after = await decoded();
    }
    return { before, after };
  }, identity);
}

async function setAccess(page, label) {
  await page.getByRole("button", { name: "Room settings" }).click();
  await page.locator("label.radio", { hasText: label }).click();
  await page.getByRole("button", { name: "Save" }).click();
  await page.getByText("Room settings saved").first().waitFor();
}

try {
  // Home, logged out then logged in (dev login), at both widths.
  const host = await newPage("host", DESKTOP);
  await host.goto("/");
  await host.getByRole("link", { name: "Log in" }).first().waitFor();
  await shot(host, "home-desktop-logged-out");
  await devLogin(host, "ada");
  await shot(host, "home-desktop");
  await axe(host, "home");
  const phoneHome = await newPage("phone-home", PHONE);
  await phoneHome.goto("/");
  await phoneHome.getByRole("link", { name: "Log in" }).first().waitFor();
  await shot(phoneHome, "home-phone");
  await phoneHome.context().close();
  report("home");

  // Start a meeting at once: pre-join, then the meeting.
  await host.getByRole("button", { name: "Start a meeting" }).click();
  await host.waitForURL(/\/r\/[a-z0-9-]+$/);
  const link = host.url();
  await previewPlaying(host);
  await shot(host, "prejoin-desktop");
  await axe(host, "prejoin");
  await joinFromPrejoin(host, "Ada Host");
  await host.locator("figure.tile[data-local]").first().waitFor();
  const hostIdentity = await host.evaluate(() => window.parleyRoom.localParticipant.identity);
  report("meeting", { link, hostIdentity });
  await setAccess(host, "Logged-in users (guests wait in the lobby)");
  report("trusted");

  // A guest (phone width) opens the link, passes pre-join, waits in the lobby, is admitted.
  const guest = await newPage("guest", PHONE);
  await guest.goto(link);
  await previewPlaying(guest);
  await guest.getByLabel("Your name").fill("Bob Guest");
  await shot(guest, "prejoin-phone");
  // An anonymous guest in a TRUSTED room waits in the lobby: pre-join says so.
  await guest.getByRole("button", { name: "Ask to join" }).click();
  await guest.getByRole("heading", { name: "Waiting to be let in" }).waitFor();
  await shot(guest, "lobby-phone");
  await axe(guest, "lobby");
  await host.getByText("Bob Guest wants to join").waitFor();
  await shot(host, "meeting-desktop-lobby-notice");
  await host.getByRole("button", { name: "Admit" }).first().click();
  await guest.locator("figure.tile[data-local]").first().waitFor();
  const guestIdentity = await guest.evaluate(() => window.parleyRoom.localParticipant.identity);
  report("admitted", { guestIdentity });

  // Both see and hear each other.
  report("video", { hostSeesGuest: await videoOf(host, guestIdentity), guestSeesHost: await videoOf(guest, hostIdentity) });
  report("audio", { hostHears: await audioEnergy(host), guestHears: await audioEnergy(guest) });
  await shot(host, "meeting-desktop");
  await shot(guest, "meeting-phone");

  // A network drop: the guest's signal socket closes. The app shows that it reconnects, then
  // carries on; the host sees no leave (the SFU resumed the session) and video flows both ways.
  await host.evaluate((guestIdentity) => {
    window.guestComings = [];
    for (const name of ["participantLeft", "participantJoined"]) window.parleyRoom.on(name, ({ participant }) => participant.identity === guestIdentity && window.guestComings.push(name));
  }, guestIdentity);
  const drop = await guest.evaluate(async () => {
    const room = window.parleyRoom;
    const meeting = document.querySelector(".meeting");
    // What the screen showed, seen as it changed (the reconnection may last a fraction of a second).
    const shown = { states: [], banner: null };
    new MutationObserver(() => {
      const state = meeting.dataset.connection;
      if (shown.states.at(-1) !== state) shown.states.push(state);
      shown.banner ??= document.querySelector(".meeting .banner[role=alert]")?.textContent ?? null;
    }).observe(meeting, { attributes: true, childList: true, subtree: true });
    const sidBefore = room.localParticipant.sid;
    const reconnected = room.once("reconnected");
    room.dropSignalForTesting();
    const { attempts, resumed } = await reconnected;
    return { attempts, resumed, sidBefore, sid: room.localParticipant.sid, ...shown };
  });
  await guest.locator(".meeting[data-connection=connected]").waitFor();
  await guest.locator(".meeting .banner").waitFor({ state: "detached" });
  report("drop", {
    ...drop,
    hostSeesGuestFrames: await framesGrow(host, guestIdentity),
    guestSeesHostFrames: await framesGrow(guest, hostIdentity),
    hostSawGuest: await host.evaluate(() => window.guestComings),
    hostHasGuest: await host.evaluate((guestIdentity) => window.parleyRoom.participants.has(guestIdentity), guestIdentity),
  });

  // Chat both ways.
  await guest.getByRole("button", { name: "Chat", exact: true }).click();
  await guest.getByLabel("Message everyone").fill("Hello from Bob");
  await guest.getByRole("button", { name: "Send", exact: true }).click();
  await host.getByRole("button", { name: "Chat", exact: true }).click();
  await host.locator(".chat-text", { hasText: "Hello from Bob" }).waitFor();
  await host.getByLabel("Message everyone").fill("Welcome, Bob");
  await host.getByRole("button", { name: "Send", exact: true }).click();
  await guest.locator(".chat-text", { hasText: "Welcome, Bob" }).waitFor();
  await shot(host, "chat-desktop");
  await axe(host, "meeting with chat");
  await shot(guest, "chat-phone");
  await guest.getByRole("button", { name: "Close" }).first().click();
  await host.getByRole("button", { name: "Close" }).first().click();
  report("chat");

  // Raise a hand; send a reaction.
  await guest.getByRole("button", { name: "Raise hand" }).click();
  await host.locator(`figure.tile[data-identity="${guestIdentity}"] [aria-label="Hand raised"]`).waitFor();
  await guest.getByRole("button", { name: "Lower hand" }).waitFor();
  report("hand");
  await host.getByRole("button", { name: "Send a reaction" }).click();
  await host.getByRole("button", { name: "👍" }).click();
  await guest.locator(".floating .emoji", { hasText: "👍" }).waitFor();
  report("reaction");

  // The guest shares the screen: the host gets a screen tile with video.
  await guest.getByRole("button", { name: "Share screen" }).click();
  report("screen", { hostSeesScreen: await videoOf(host, guestIdentity, "screen") });
  await shot(host, "meeting-desktop-screen-share");
  await guest.getByRole("button", { name: "Stop sharing" }).click();
  await host.locator(`figure.tile[data-identity="${guestIdentity}"][data-kind="screen"]`).waitFor({ state: "detached" });

  // Two more logged-in people (trusted room: no lobby for them): a 4-person meeting.
  const others = [];
  for (const subject of ["carol", "dave"]) {
    const page = await newPage(subject, DESKTOP);
    await page.goto("/");
    await devLogin(page, subject);
    await page.goto(link);
    await page.locator("video[data-testid=preview]").waitFor();
    await joinFromPrejoin(page, subject === "carol" ? "Carol" : "Dave");
    await page.locator("figure.tile[data-local]").first().waitFor();
    others.push(page);
  }
  await host.waitForFunction(() => window.parleyRoom.participants.size === 3);
  await host.waitForTimeout(2000); // let the new videos start before the picture
  await shot(host, "meeting-4-desktop");
  await shot(guest, "meeting-4-phone");
  // Cameras are sent in three layers and each tile says its size: the phone's small tiles get
  // the 320x180 layer, the desktop's bigger ones a bigger layer.
  const cameraWidths = (page, min, max) =>
    page.evaluate(
      async ({ min, max }) => {
        const widths = () => [...document.querySelectorAll('figure.tile[data-kind="camera"]:not([data-local]) video')].map((v) => v.videoWidth);
        const done = () => widths().length === 3 && widths().every((w) => w >= min && w <= max);
        for (const deadline = Date.now() + 15000; Date.now() < deadline && !done(); ) await new Promise((r) => setTimeout(r, 250));
        return widths();
      },
      { min, max },
    );
  report("four", { guestWidths: await cameraWidths(guest, 320, 320), hostWidths: await cameraWidths(host, 321, 1280) });
  for (const page of others) await page.context().close();

  // The host mutes the guest, then removes them.
  await host.getByRole("button", { name: "Participants" }).click();
  await shot(host, "participants-desktop");
  await host.getByRole("button", { name: "More: Bob Guest" }).click();
  await host.getByRole("menuitem", { name: "Mute" }).click();
  await guest.getByRole("button", { name: "Turn on microphone" }).waitFor();
  await guest.getByText("A moderator muted your microphone").waitFor();
  report("muted");
  await host.getByRole("button", { name: "More: Bob Guest" }).click();
  await host.getByRole("menuitem", { name: "Remove from meeting" }).click();
  await guest.getByRole("heading", { name: "A moderator removed you from the meeting" }).waitFor();
  await host.waitForFunction(() => window.parleyRoom.participants.size === 0);
  report("removed");
  await host.getByRole("button", { name: "Close" }).first().click();

  // A restricted room: a stranger waits and is denied.
  await setAccess(host, "Only members (everyone else waits)");
  const stranger = await newPage("stranger", DESKTOP);
  await stranger.goto(link);
  await stranger.getByLabel("Your name").fill("Mallory");
  await stranger.getByRole("button", { name: "Ask to join" }).click();
  await stranger.getByRole("heading", { name: "Waiting to be let in" }).waitFor();
  await shot(stranger, "lobby-desktop");
  await host.getByRole("button", { name: "Participants" }).click();
  await host.getByRole("button", { name: "Deny" }).click();
  await stranger.getByRole("heading", { name: "You were not let in to this meeting." }).waitFor();
  report("denied");
  report("done");
} finally {
  await browser.close();
}
