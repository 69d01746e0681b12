import { describe, expect, it } from "vitest";

import { InvalidArgument, Unavailable } from "../../src/errors.js";
import { backoffDelay, Reconnector, type Clock } from "../../src/reconnect.js";

/** A clock that only moves when the reconnector sleeps. */
function fakeClock(): Clock & { slept: number[] } {
  let now = 0;
  const slept: number[] = [];
  return {
    slept,
    now: () => now,
    sleep: async (ms) => {
      slept.push(ms);
      now += ms;
    },
  };
}

describe("backoffDelay", () => {
  it("tries at once, then doubles up to the cap", () => {
    const middle = () => 0.5; // no jitter
    const delays = [0, 1, 2, 3, 4, 5, 6, 7].map((n) => backoffDelay(n, {}, middle));
    expect(delays).toEqual([0, 250, 500, 1000, 2000, 4000, 5000, 5000]);
  });

  it("spreads delays by the jitter, never past the cap", () => {
    expect(backoffDelay(2, { jitter: 0.2 }, () => 0)).toBe(400);
    expect(backoffDelay(2, { jitter: 0.2 }, () => 1)).toBe(600);
    expect(backoffDelay(10, { jitter: 0.2 }, () => 1)).toBe(5000);
  });
});

describe("Reconnector", () => {
  it("retries failed attempts with growing delays until one succeeds", async () => {
    const clock = fakeClock();
    let calls = 0;
    const reconnector = new Reconnector({
      attempt: async () => {
        if (++calls < 4) throw new Unavailable("SFU away");
      },
      classify: () => "retry",
      clock,
      random: () => 0.5,
    });
    expect(await reconnector.reconnect()).toEqual({ ok: true, attempts: 4 });
    expect(clock.slept).toEqual([250, 500, 1000]);
  });

  it("stops at a fatal failure", async () => {
    const refused = new InvalidArgument("bad token");
    const reconnector = new Reconnector({
      attempt: async () => {
        throw refused;
      },
      classify: (error) => (error instanceof InvalidArgument ? "fatal" : "retry"),
      clock: fakeClock(),
    });
    expect(await reconnector.reconnect()).toEqual({ ok: false, attempts: 1, error: refused, reason: "fatal" });
  });

  it("gives up once the next attempt would start too late", async () => {
    const clock = fakeClock();
    const reconnector = new Reconnector({
      attempt: async () => {
        throw new Unavailable("SFU away");
      },
      classify: () => "retry",
      clock,
      random: () => 0.5,
      backoff: { giveUpAfterMs: 2000 },
    });
    const outcome = await reconnector.reconnect();
    expect(outcome).toMatchObject({ ok: false, reason: "gave_up", attempts: 4 });
    expect(clock.slept).toEqual([250, 500, 1000]); // the next (2000) would end past 2 s
  });

  it("runs one loop however often it is asked", async () => {
    let calls = 0;
    let release!: () => void;
    const reconnector = new Reconnector({
      attempt: () => {
        calls++;
        return new Promise<void>((resolve) => (release = resolve));
      },
      classify: () => "retry",
      clock: fakeClock(),
    });
    const first = reconnector.reconnect();
    const second = reconnector.reconnect();
    expect(reconnector.running).toBe(true);
    release();
    expect(await first).toEqual(await second);
    expect(calls).toBe(1);
    expect(reconnector.running).toBe(false);
  });

  it("ends cancelled when cancelled between attempts", async () => {
    const clock = fakeClock();
    const reconnector = new Reconnector({
      attempt: async () => {
        reconnector.cancel();
        throw new Unavailable("SFU away");
      },
      classify: () => "retry",
      clock,
    });
    expect(await reconnector.reconnect()).toMatchObject({ ok: false, reason: "cancelled", attempts: 1 });
  });
});
