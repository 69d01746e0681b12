/**
 * The REST client: openapi-fetch over the types openapi-typescript generated from the
 * gateway's OpenAPI document (`gen/openapi.ts`), so every route of every contract is typed and
 * none is written by hand.
 *
 *   const api = createClient({ baseUrl: "https://meet.example.org", token });
 *   const { data } = await api.POST("/v1/rooms/{room}:join", {
 *     params: { path: { room: "abc-defg-hij" } },
 *     body: { displayName: "Guest" },
 *   });
 *
 * A failed call throws the `ParleyError` subclass of its gRPC code (see `errors.ts`), so `data`
 * is always set when a call returns (except for empty answers).
 */
import createFetchClient, { type Client, type Middleware } from "openapi-fetch";

import { errorFromResponseBody, errorFromStatus, ParleyError, Unavailable, type StatusJson } from "./errors.js";
import type { components, paths } from "./gen/openapi.js";

export type { components, operations, paths } from "./gen/openapi.js";

/** A schema of the API by name, for example `Schema<"Room">`. */
export type Schema<Name extends keyof components["schemas"]> = components["schemas"][Name];

/** The session cookie's CSRF companion: cookie-authenticated writes echo it in a header. */
export const CSRF_COOKIE = "parley_csrf";
export const CSRF_HEADER = "x-csrf-token";

export interface ClientOptions {
  /** Where the gateway is, for example `https://meet.example.org`; "" for the page's own origin. */
  baseUrl?: string;
  /**
   * A bearer credential (an OIDC access token, a dev-login token or an API key
   * `pk_<id>.<secret>`), or a function returning the current one. Without it, a browser calls
   * with the gateway's session cookie (after `/auth/login`), and writes send the CSRF header.
   */
  token?: string | (() => string | undefined | Promise<string | undefined>);
  /** The fetch to use (tests, Node without a global fetch). */
  fetch?: (input: Request) => Promise<Response>;
  /** Extra headers on every call. */
  headers?: Record<string, string>;
}

export type ParleyClient = Client<paths>;

const SAFE_METHODS = new Set(["GET", "HEAD", "OPTIONS"]);

/** The value of a cookie in this document, when there is a document. */
function readCookie(name: string): string | undefined {
  if (typeof document === "undefined") return undefined;
  for (const part of document.cookie.split(";")) {
    const [key, ...rest] = part.trim().split("=");
    if (key === name) return decodeURIComponent(rest.join("="));
  }
  return undefined;
}

/** Adds credentials to requests and turns failed responses into typed errors. */
export function authMiddleware(options: Pick<ClientOptions, "token">): Middleware {
  return {
    async onRequest({ request }) {
      const token = typeof options.token === "function" ? await options.token() : options.token;
      if (token) {
        request.headers.set("authorization", `Bearer ${token}`);
      } else if (!SAFE_METHODS.has(request.method)) {
        const csrf = readCookie(CSRF_COOKIE);
        if (csrf) request.headers.set(CSRF_HEADER, csrf);
      }
      return request;
    },
    async onResponse({ response }) {
      if (!response.ok) throw errorFromResponseBody(response.status, await response.text());
      return undefined;
    },
    onError({ error }) {
      if (error instanceof ParleyError) return error;
      const text = error instanceof Error ? error.message : String(error);
      return new Unavailable(`the gateway cannot be reached: ${text}`, { code: 14 });
    },
  };
}

/** A typed client of every REST route of the gateway. */
export function createClient(options: ClientOptions = {}): ParleyClient {
  const client = createFetchClient<paths>({
    baseUrl: options.baseUrl ?? "",
    // Same-origin pages send the session cookie; other origins only with a bearer token.
    credentials: "same-origin",
    ...(options.fetch ? { fetch: options.fetch } : {}),
    ...(options.headers ? { headers: options.headers } : {}),
  });
  client.use(authMiddleware(options));
  return client;
}

/** One line of a server-streaming route's newline-delimited JSON (`{"result": ...}` or `{"error": Status}`). */
interface StreamLine<T> {
  result?: T;
  error?: StatusJson;
}

/**
 * The messages of a server-streaming route (its answer is newline-delimited JSON), for example
 * following a lobby entry:
 *
 *   const { data } = await api.GET("/v1/rooms/{room}/lobbyEntries/{lobby_entry}:watch", {
 *     params: { path: {...} }, parseAs: "stream" });
 *   for await (const entry of streamMessages<Schema<"LobbyEntry">>(data!)) ...
 *
 * An `{"error": ...}` line throws its typed error.
 */
export async function* streamMessages<T>(body: ReadableStream<Uint8Array>): AsyncGenerator<T> {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffered = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      buffered += decoder.decode(value ?? new Uint8Array(), { stream: !done });
      let newline: number;
      while ((newline = buffered.indexOf("\n")) >= 0) {
        const line = buffered.slice(0, newline).trim();
        buffered = buffered.slice(newline + 1);
        if (!line) continue;
        const parsed = JSON.parse(line) as StreamLine<T>;
        if (parsed.error) throw errorFromStatus(parsed.error);
        if (parsed.result !== undefined) yield parsed.result;
      }
      if (done) break;
    }
  } finally {
    reader.releaseLock();
  }
}
