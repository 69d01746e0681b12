/**
 * When to try again after the signal socket or the media connection dropped: exponential
 * backoff with jitter, a first try at once (most drops are a blip), and a time after which the
 * room gives up. `Reconnector` runs the attempts one loop at a time, whatever asks for it.
 */

export interface BackoffOptions {
  /** The delay before the second attempt (the first runs at once). Default 250 ms. */
  initialDelayMs?: number;
  /** The longest delay between attempts. Default 5 s. */
  maxDelayMs?: number;
  /** Each delay is this many times the previous one. Default 2. */
  multiplier?: number;
  /** Each delay varies by up to this fraction either way, so clients do not retry in step. Default 0.2. */
  jitter?: number;
  /** No new attempt starts this long after the connection dropped. Default 60 s. */
  giveUpAfterMs?: number;
}

/** The delay before attempt `attempt` (0-based): 0 for the first, then growing to the cap. */
export function backoffDelay(attempt: number, options: BackoffOptions = {}, random: () => number = Math.random): number {
  if (attempt <= 0) return 0;
  const { initialDelayMs = 250, maxDelayMs = 5000, multiplier = 2, jitter = 0.2 } = options;
  const base = Math.min(maxDelayMs, initialDelayMs * multiplier ** (attempt - 1));
  const spread = base * jitter * (2 * random() - 1);
  return Math.max(0, Math.round(Math.min(maxDelayMs, base + spread)));
}

/** What an attempt's failure means: try again, or stop (the token was refused...). */
export type FailureKind = "retry" | "fatal";

/** The clock the reconnector sleeps on (a test passes a fake one). */
export interface Clock {
  now(): number;
  sleep(ms: number, signal: AbortSignal): Promise<void>;
}

export const realClock: Clock = {
  now: () => Date.now(),
  sleep: (ms, signal) =>
    new Promise((resolve) => {
      const timer = setTimeout(resolve, ms);
      signal.addEventListener("abort", () => (clearTimeout(timer), resolve()), { once: true });
    }),
};

/** How a reconnection ended. */
export type ReconnectOutcome =
  | { ok: true; attempts: number }
  | { ok: false; attempts: number; error: unknown; reason: "fatal" | "gave_up" | "cancelled" };

export interface ReconnectorOptions {
  /** One attempt: resolves when the session is back. */
  attempt: (attempt: number) => Promise<void>;
  /** Whether an attempt's error is worth another try. */
  classify: (error: unknown) => FailureKind;
  backoff?: BackoffOptions;
  clock?: Clock;
  random?: () => number;
  /** Told before each attempt, with the delay it waits first. */
  onAttempt?: (attempt: number, delayMs: number) => void;
}

/**
 * Runs reconnection attempts until one succeeds, one fails for good, time runs out, or it is
 * cancelled. Asking again while a loop runs joins that loop.
 */
export class Reconnector {
  #running: Promise<ReconnectOutcome> | undefined;
  #abort: AbortController | undefined;
  readonly #options: ReconnectorOptions;

  constructor(options: ReconnectorOptions) {
    this.#options = options;
  }

  get running(): boolean {
    return this.#running !== undefined;
  }

  reconnect(): Promise<ReconnectOutcome> {
    if (!this.#running) {
      this.#abort = new AbortController();
      this.#running = this.#loop(this.#abort.signal).finally(() => {
        this.#running = undefined;
      });
    }
    return this.#running;
  }

  /** Stops the loop after its current attempt; it ends `cancelled`. */
  cancel(): void {
    this.#abort?.abort();
  }

  async #loop(signal: AbortSignal): Promise<ReconnectOutcome> {
    const { attempt, classify, backoff = {}, clock = realClock, random = Math.random, onAttempt } = this.#options;
    const giveUpAfter = backoff.giveUpAfterMs ?? 60_000;
    const started = clock.now();
    let lastError: unknown;
    for (let n = 0; ; n++) {
      const delay = backoffDelay(n, backoff, random);
      if (n > 0 && clock.now() + delay - started > giveUpAfter) {
        return { ok: false, attempts: n, error: lastError, reason: "gave_up" };
      }
      onAttempt?.(n, delay);
      if (delay > 0) await clock.sleep(delay, signal);
      if (signal.aborted) return { ok: false, attempts: n, error: lastError, reason: "cancelled" };
      try {
        await attempt(n);
        if (signal.aborted) return { ok: false, attempts: n + 1, error: lastError, reason: "cancelled" };
        return { ok: true, attempts: n + 1 };
      } catch (error) {
        lastError = error;
        if (signal.aborted) return { ok: false, attempts: n + 1, error, reason: "cancelled" };
        if (classify(error) === "fatal") return { ok: false, attempts: n + 1, error, reason: "fatal" };
      }
    }
  }
}
