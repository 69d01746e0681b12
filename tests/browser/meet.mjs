// Opens Parley's meeting page in headless Debian chromium with a fake camera and microphone.
// Usage: node meet.mjs URL   (URL of /meet.html with #token=...)
// Prints one JSON line when the page has joined and published ({"event": "ready", ...}), one
// when it has decoded video from the SFU ({"event": "decoded", "route": ...}), then waits for its
// stdin to close and exits. Commands on stdin: "chat TEXT" sends a chat message; "drop" closes
// the page's signal socket as a network failure would, waits for the room to reconnect and
// prints {"event": "resumed", ...} (whether the SFU resumed the session, its sid, the track
// sids before and after) once video decodes again on the new connection; "size W H" shows the
// remote videos at W x H (setTrackSettings: the simulcast layer that fits) and prints
// {"event": "size", frameWidth, frameHeight, freezeCount, ...} once the decoded video has that
// size; "outbound" prints what the page sends per simulcast layer. When stdin closes, the page
// is closed (as its tab would be), then the browser.
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
    // Extra flags from the test (a TLS relay whose certificate the test made: --ignore-certificate-errors).
    ...(process.env.CHROMIUM_EXTRA_ARGS ? process.env.CHROMIUM_EXTRA_ARGS.split(" ") : []),
  ],
});
const page = await browser.newPage();
try {
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
  const published = () => page.evaluate(() => window.parley.localTracks.map((t) => t.sid));
  print({ event: "ready", published: await published() });
  // Video frames decoded from the SFU (getStats of the subscriber connection), polled.
  const decodedFrames = () =>
    page.evaluate(async () => {
      const pc = window.parley.subscriberConnection;
      let frames = 0;
      if (pc) (await pc.getStats()).forEach((s) => s.type === "inbound-rtp" && s.kind === "video" && (frames += s.framesDecoded || 0));
      return frames;
    });
  const decoded = async () => {
    let framesDecoded = 0;
    for (const deadline = Date.now() + 30000; framesDecoded <= 10 && Date.now() < deadline; ) {
      await new Promise((resolve) => setTimeout(resolve, 250));
      framesDecoded = await decodedFrames();
    }
    return framesDecoded;
  };
  // The network path the subscriber connection took: its selected candidate pair's local end
  // ("relay" and its protocol to the TURN server, when the page may use relays only).
  const route = () =>
    page.evaluate(async () => {
      const pc = window.parley.subscriberConnection;
      if (!pc) return {};
      const stats = [...(await pc.getStats()).values()];
      const transport = stats.find((s) => s.type === "transport" && s.selectedCandidatePairId);
      const pair = stats.find((s) => s.id === transport?.selectedCandidatePairId);
      const local = stats.find((s) => s.id === pair?.localCandidateId);
      return { candidateType: local?.candidateType, relayProtocol: local?.relayProtocol };
    });
  print({ event: "decoded", framesDecoded: await decoded(), route: await route() });
  // The received video's size and freezes (getStats of the subscriber connection).
  const inbound = () =>
    page.evaluate(async () => {
      const pc = window.parley.subscriberConnection;
      const video = pc && [...(await pc.getStats()).values()].find((s) => s.type === "inbound-rtp" && s.kind === "video");
      if (!video) return {};
      const { frameWidth, frameHeight, framesDecoded, keyFramesDecoded, freezeCount, totalFreezesDuration, pliCount } = video;
      return { frameWidth, frameHeight, framesDecoded, keyFramesDecoded, freezeCount, totalFreezesDuration, pliCount };
    });
  const input = readline.createInterface({ input: process.stdin });
  for await (const line of input) {
    if (line === "outbound") {
      // What the page sends of its simulcast camera: bytes per layer (RID), and whether the
      // layer is on (dynacast pauses the ones no one receives).
      const layers = await page.evaluate(async () => {
        const layers = {};
        (await window.parley.publisherConnection.getStats()).forEach((s) => {
          if (s.type === "outbound-rtp" && s.kind === "video" && s.rid) layers[s.rid] = { bytesSent: s.bytesSent, active: s.active };
        });
        return layers;
      });
      print({ event: "outbound", layers });
    }
    if (line.startsWith("size ")) {
      // "size W H": shows every remote video at W x H (setTrackSettings), then reports once the
      // decoded video has that size (or after 30 s).
      const [width, height] = line.slice(5).split(" ").map(Number);
      await page.evaluate(({ width, height }) => {
        const sids = [...window.parley.participants.values()].flatMap((p) =>
          [...p.tracks.values()].filter((t) => t.kind === "video").map((t) => t.sid),
        );
        window.parley.setTrackSettings(sids, { width, height });
      }, { width, height });
      let stats = await inbound();
      for (const deadline = Date.now() + 30000; Date.now() < deadline; stats = await inbound()) {
        if (stats.frameWidth === width && stats.frameHeight === height) break;
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      print({ event: "size", ...stats });
    }
    if (line.startsWith("chat ")) await page.evaluate((text) => window.parley.sendData("chat", text), line.slice(5));
    if (line === "drop") {
      const before = await published();
      const back = await page.evaluate(async () => {
        const room = window.parley;
        const states = [];
        room.on("connectionStateChanged", ({ state }) => states.push(state));
        const reconnected = room.once("reconnected");
        const dropped = performance.now();
        room.dropSignalForTesting();
        const { attempts, resumed } = await reconnected;
        return { attempts, resumed, states, reconnectMs: Math.round(performance.now() - dropped) };
      });
      const sid = await page.evaluate(() => window.parley.localParticipant.sid);
      print({ event: "resumed", ...back, sid, before, published: await published(), framesDecoded: await decoded() });
    }
  }
} finally {
  // As a person closing the tab (which runs the page's pagehide), before the browser goes.
  await page.close();
  await browser.close();
}
