// The login journey through a real OpenID Connect provider (tests/oidc_provider): a user logs
// in on the provider's form, starts a meeting, and a guest who opens the link meets them.
// Usage: node oidc_journey.mjs BASE_URL USER PASSWORD OUT_DIR; one JSON line per step.
import { chromium } from "../browser/node_modules/playwright-core/index.mjs";

const [base, user, password, out] = process.argv.slice(2);
const report = (step, values = {}) => process.stdout.write(JSON.stringify({ step, ...values }) + "\n");
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream", "--autoplay-policy=no-user-gesture-required", "--no-sandbox"],
});

async function newPage(name) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, locale: "en-US", baseURL: base });
  const page = await context.newPage();
  page.setDefaultTimeout(30000);
  page.on("pageerror", (e) => process.stderr.write(`[${name} page error] ${e}\n`));
  return page;
}

const previewPlaying = (page) => page.waitForFunction(() => document.querySelector("video[data-testid=preview]")?.currentTime > 0.3);

const framesOf = async (page, identity) => {
  await page.locator(`figure.tile[data-identity="${identity}"][data-kind="camera"] video`).waitFor();
  return page.evaluate(async (identity) => {
    const video = document.querySelector(`figure.tile[data-identity="${identity}"][data-kind="camera"] video`);
    for (const deadline = Date.now() + 20000; Date.now() < deadline && (!video || video.currentTime < 0.5); ) await new Promise((r) => setTimeout(r, 200));
    let frames = 0;
    (await window.parleyRoom.subscriberConnection.getStats()).forEach((s) => s.type === "inbound-rtp" && s.kind === "video" && (frames += s.framesDecoded || 0));
    return frames;
  }, identity);
};

try {
  const host = await newPage("host");
  await host.goto("/");
  await host.getByRole("link", { name: "Log in" }).first().click();
  await host.locator("input[name=login]").fill(user);
  await host.locator("input[name=password]").fill(password);
  await host.locator("input[name=password]").press("Enter");
  await host.getByRole("button", { name: "Start a meeting" }).waitFor();
  report("logged-in", { name: await host.locator(".who").textContent() });
  await host.getByRole("button", { name: "Start a meeting" }).click();
  await host.waitForURL(/\/r\/[a-z0-9-]+$/);
  await previewPlaying(host);
  await host.getByRole("button", { name: "Join now" }).click();
  await host.locator("figure.tile[data-local]").first().waitFor();
  const link = host.url();
  const hostIdentity = await host.evaluate(() => window.parleyRoom.localParticipant.identity);

  const guest = await newPage("guest");
  await guest.goto(link);
  await previewPlaying(guest);
  await guest.getByLabel("Your name").fill("Guest");
  await guest.getByRole("button", { name: "Join now" }).click();
  await guest.locator("figure.tile[data-local]").first().waitFor();
  const guestIdentity = await guest.evaluate(() => window.parleyRoom.localParticipant.identity);
  report("met", { hostIdentity, hostDecodes: await framesOf(host, guestIdentity), guestDecodes: await framesOf(guest, hostIdentity) });
  await host.screenshot({ path: `${out}/oidc-meeting-desktop.png` });
  report("done");
} finally {
  await browser.close();
}
