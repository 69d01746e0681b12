/**
 * One signal session over the gateway's `/v1/signal` WebSocket: `parley.sfu.v1.ConnectRequest`
 * and `ConnectResponse` in the protobuf JSON mapping, one message per text frame (the
 * messages and their mapping are generated from the contracts).
 */
import { create, createRegistry, fromJsonString, toJson, toJsonString, type MessageInitShape } from "@bufbuild/protobuf";

import { errorFromStatus, ParleyError, Unavailable, type StatusJson } from "./errors.js";
import { file_google_rpc_error_details } from "./gen/google/rpc/error_details_pb.js";
import { StatusSchema, type Status } from "./gen/google/rpc/status_pb.js";
import {
  ConnectRequestSchema,
  ConnectResponseSchema,
  type ConnectResponse,
  type JoinResponse,
} from "./gen/parley/sfu/v1/signal_service_pb.js";

/** The details a `google.rpc.Status` may carry, so that their JSON (`Any`) can be read. */
const REGISTRY = createRegistry(file_google_rpc_error_details);

export type ConnectRequestMessage = MessageInitShape<typeof ConnectRequestSchema>["message"];
export type Response = ConnectResponse["message"];
export type ResponseCase = NonNullable<Response["case"]>;

/** One frame from the SFU: a `ConnectResponse` in the JSON mapping (fields a newer SFU adds
 * are ignored). */
export function parseResponse(text: string): Response {
  return fromJsonString(ConnectResponseSchema, text, { registry: REGISTRY, ignoreUnknownFields: true }).message;
}

/** The typed error of a status the SFU (or the bridge) answered. */
export function errorOfStatus(status: Status | undefined): ParleyError {
  if (!status) return new ParleyError("the SFU refused the request");
  return errorFromStatus(toJson(StatusSchema, status, { registry: REGISTRY }) as StatusJson);
}

/** The signal socket closed (or could not open): what was waiting on it fails with this. */
export class SignalClosed extends Unavailable {
  constructor(
    message: string,
    /** The WebSocket close code (the bridge closes with 4000 + the gRPC code of a refusal). */
    readonly closeCode: number,
  ) {
    super(message, { code: 14 });
  }
}

/** The `ws(s)://.../v1/signal` URL for a gateway address (`https://host`), a signal URL, or
 * this page's own gateway when none is given. */
export function signalUrl(url?: string): string {
  if (!url) {
    if (typeof location === "undefined") throw new ParleyError("no gateway address given (and no page to take it from)");
    url = location.origin;
  }
  const parsed = new URL(url);
  if (parsed.protocol === "http:") parsed.protocol = "ws:";
  else if (parsed.protocol === "https:") parsed.protocol = "wss:";
  if (!parsed.pathname.endsWith("/v1/signal")) parsed.pathname = parsed.pathname.replace(/\/$/, "") + "/v1/signal";
  return parsed.toString();
}

interface Waiter {
  match: (response: Response) => boolean;
  requestId: bigint | undefined;
  resolve: (response: Response) => void;
  reject: (error: Error) => void;
}

/** What a socket reports to its owner. */
export interface SignalHandlers {
  /** Every message from the SFU, after the waiters saw it. */
  message(response: Response): void;
  /** The socket closed without `close()` being called. */
  closed(error: SignalClosed): void;
}

/** The WebSocket constructor to use (a test may pass its own). */
export type WebSocketFactory = (url: string) => WebSocket;

export class SignalSocket {
  #ws: WebSocket;
  #nextId = 1n;
  #waiters: Waiter[] = [];
  #pinger: ReturnType<typeof setInterval> | undefined;
  #handlers: SignalHandlers | undefined;
  #closed: SignalClosed | undefined;

  private constructor(ws: WebSocket) {
    this.#ws = ws;
    ws.onmessage = (event) => this.#receive(String(event.data));
    ws.onclose = (event) => this.#onClose(event.code, event.reason);
  }

  /** Opens the socket, joins with `token` and returns it with the SFU's `joined` answer. */
  static async join(
    url: string,
    token: string,
    options: {
      manualSubscribe: boolean;
      timeoutMs: number;
      webSocket?: WebSocketFactory;
      /** Takes up a session whose socket dropped instead of joining anew. */
      resume?: { participantSid: string; resumeToken: string };
    },
  ): Promise<{ socket: SignalSocket; joined: JoinResponse }> {
    const ws = options.webSocket ? options.webSocket(url) : new WebSocket(url);
    const socket = new SignalSocket(ws);
    const timer = setTimeout(() => socket.#onClose(4004, "no answer to join in time"), options.timeoutMs);
    try {
      await new Promise<void>((resolve, reject) => {
        ws.onopen = () => resolve();
        ws.onerror = () => reject(new SignalClosed(`cannot reach ${url}`, 1006));
        socket.#waiters.push({ match: () => false, requestId: undefined, resolve: () => {}, reject });
      });
      socket.#waiters = [];
      // A refused join is an `error` without a request id (the bridge's, as the SFU ended the
      // stream), then a close: take the error, which says why.
      const answer = await socket.request(
        {
          case: "join",
          value: { token, manualSubscribe: options.manualSubscribe, ...(options.resume ? { resume: options.resume } : {}) },
        },
        (r) => r.case === "joined" || (r.case === "error" && r.value.requestId === 0n),
      );
      if (answer.case === "error") throw errorOfStatus(answer.value.status);
      if (answer.case !== "joined") throw new ParleyError("the SFU did not answer join");
      return { socket, joined: answer.value };
    } catch (error) {
      socket.close();
      throw error;
    } finally {
      clearTimeout(timer);
    }
  }

  /** Starts routing messages and closes to `handlers`, and pings every `intervalMs` (the SFU
   * ends sessions it hears nothing from for three intervals). */
  start(handlers: SignalHandlers, intervalMs: number): void {
    this.#handlers = handlers;
    this.#pinger = setInterval(() => {
      if (this.#ws.readyState === 1) this.send({ case: "ping", value: { timestamp: BigInt(Date.now()) } });
    }, intervalMs);
  }

  get isOpen(): boolean {
    return this.#closed === undefined && this.#ws.readyState === 1;
  }

  /** Sends a request; returns its id. */
  send(message: ConnectRequestMessage): bigint {
    if (this.#closed) throw this.#closed;
    const requestId = this.#nextId++;
    this.#ws.send(toJsonString(ConnectRequestSchema, create(ConnectRequestSchema, { requestId, message })));
    return requestId;
  }

  /** Waits for the first message that `match` accepts (or for the socket to close); `signal`
   * drops the wait (its promise then never settles). */
  waitFor(match: (response: Response) => boolean, requestId?: bigint, signal?: AbortSignal): Promise<Response> {
    if (this.#closed) return Promise.reject(this.#closed);
    return new Promise((resolve, reject) => {
      const waiter = { match, requestId, resolve, reject };
      this.#waiters.push(waiter);
      signal?.addEventListener("abort", () => {
        const at = this.#waiters.indexOf(waiter);
        if (at >= 0) this.#waiters.splice(at, 1);
      });
    });
  }

  /** Sends a request and waits for the answer `match` accepts; an `error` naming the request
   * rejects with its typed error. */
  request(message: ConnectRequestMessage, match: (response: Response) => boolean): Promise<Response> {
    const requestId = this.#nextId; // the id send() gives it: wait first, so no answer is missed
    const answered = this.waitFor(match, requestId);
    this.send(message);
    return answered;
  }

  /** Leaves (when `leave`) and closes; what waits fails. Idempotent. */
  close(leave = false): void {
    if (this.#closed) return;
    if (leave && this.#ws.readyState === 1) this.send({ case: "leave", value: {} });
    this.#handlers = undefined; // a close asked for is not reported
    this.#onClose(1000, "closed by the client");
    this.#ws.close(1000);
  }

  #receive(text: string): void {
    let response: Response;
    try {
      response = parseResponse(text);
    } catch (error) {
      console.warn("parley: unreadable signal message", error);
      return;
    }
    const failure = response.case === "error" ? response.value : undefined;
    for (const waiter of [...this.#waiters]) {
      const failed = failure !== undefined && waiter.requestId !== undefined && failure.requestId === waiter.requestId;
      if (failed || waiter.match(response)) {
        this.#waiters.splice(this.#waiters.indexOf(waiter), 1);
        if (failed) waiter.reject(errorOfStatus(failure.status));
        else waiter.resolve(response);
      }
    }
    this.#handlers?.message(response);
  }

  #onClose(code: number, reason: string): void {
    if (this.#closed) return;
    clearInterval(this.#pinger);
    this.#closed = new SignalClosed(`the signal connection closed (${code}${reason ? `: ${reason}` : ""})`, code);
    for (const waiter of this.#waiters) waiter.reject(this.#closed);
    this.#waiters = [];
    const handlers = this.#handlers;
    this.#handlers = undefined;
    if (this.#ws.readyState < 2) this.#ws.close();
    handlers?.closed(this.#closed);
  }

  /** For tests: closes the WebSocket as a network failure would be seen (the owner reconnects). */
  dropForTesting(): void {
    this.#ws.close(4999, "dropped by a test");
  }
}
