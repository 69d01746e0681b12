/**
 * The browser room client: joins a meeting through the gateway's `/v1/signal` WebSocket, with
 * the shape of the Python SDK's `parley.room.Room`.
 *
 *   const room = await Room.connect("https://meet.example.org", grant.token);
 *   room.on("trackSubscribed", ({ publication, track }) => show(publication.sid, track));
 *   await room.publishCamera();
 *   await room.publishMicrophone();
 *
 * Media uses two peer connections, as the SFU expects: the publisher connection (offered
 * here, one transceiver per own track) and the subscriber connection (offered by the SFU).
 *
 * Reconnection: when the signal socket closes unexpectedly, or the media connection fails,
 * the room resumes its session with backoff (`reconnecting`, then `reconnected`): the SFU
 * keeps a dropped session for a grace period, so the others see no leave and no join, and
 * the room's tracks keep their sids. It publishes its own tracks again on new peer
 * connections (same MediaStreamTracks, same sids), restores its mute states, metadata and
 * manual subscriptions, and receives the others' tracks again (`trackSubscribed` with new
 * MediaStreamTracks for the same publications). When the SFU no longer has the session (the
 * grace period passed, the session was ended), it joins anew: new sids, and the others see
 * it leave and join again.
 */
import { Emitter } from "./emitter.js";
import { InvalidArgument, NotFound, ParleyError, PermissionDenied, Unauthenticated, Unavailable } from "./errors.js";
import { DataKind, LeaveReason, TrackKind, VideoQuality } from "./gen/parley/sfu/v1/resources_pb.js";
import { SignalTarget, type JoinResponse, type SessionDescription } from "./gen/parley/sfu/v1/signal_service_pb.js";
import { Reconnector, type BackoffOptions, type FailureKind } from "./reconnect.js";
import { errorOfStatus, SignalClosed, SignalSocket, signalUrl, type Response, type WebSocketFactory } from "./signal.js";
import {
  disconnectReason,
  LocalTrackPublication,
  RoomState,
  TRACK_SOURCES,
  type ConnectionState,
  type DisconnectReason,
  type Participant,
  type RemoteParticipant,
  type RoomEventMap,
  type RoomInfo,
  type TrackSourceName,
} from "./state.js";

export interface RoomOptions {
  /** Receive every track as it is published (default), or only those `subscribe()` names. */
  autoSubscribe?: boolean;
  /** Reconnect after a drop (default true). */
  reconnect?: boolean;
  /** How reconnection attempts are spaced, and when they stop. */
  backoff?: BackoffOptions;
  /** A fresh join token, for reconnections after the token expired or the room moved to
   * another node (an app calls `RoomService.JoinRoom` again). Without it the first token is
   * reused. */
  refreshToken?: () => Promise<string>;
  /** How long to wait for the SFU's answer to join. Default 20 s. */
  joinTimeoutMs?: number;
  /** How long the media connection may stay `disconnected` before the room reconnects
   * (`failed` reconnects at once). Default 5 s. */
  iceDisconnectedTimeoutMs?: number;
  /** `"relay"`: send media only through the TURN relays the SFU hands out (a network that
   * allows nothing else, or a test of the relays). Default `"all"`. */
  iceTransportPolicy?: RTCIceTransportPolicy;
  /** The WebSocket to use (tests). */
  webSocket?: WebSocketFactory;
}

/** Options of a track to publish. */
export interface PublishOptions {
  source: TrackSourceName;
  name?: string;
  muted?: boolean;
  /** Video: send three layers (full, half and quarter size), of which the SFU forwards each
   * subscriber the one that fits the size it shows the video at (`setTrackSettings`). */
  simulcast?: boolean;
}

/** How this client shows a video track it receives (`setTrackSettings`). */
export interface TrackSettings {
  /** The size shown, in device pixels; 0 × 0 (the default): no preference, the best layer. */
  width?: number;
  height?: number;
  /** The best quality to receive, whatever the size (`"low"` on a weak network). */
  maxQuality?: "low" | "medium" | "high";
}

/** The layers of a simulcast video: quarter, half and full size (LiveKit's bitrates for
 * 180p, 360p and 720p). */
const SIMULCAST_ENCODINGS: RTCRtpEncodingParameters[] = [
  { rid: "q", scaleResolutionDownBy: 4, maxBitrate: 160_000 },
  { rid: "h", scaleResolutionDownBy: 2, maxBitrate: 450_000 },
  { rid: "f", maxBitrate: 1_700_000 },
];
const QUALITIES = { low: VideoQuality.LOW, medium: VideoQuality.MEDIUM, high: VideoQuality.HIGH } as const;

/** One signal session and its two peer connections; a reconnection makes a new one. */
interface Session {
  socket: SignalSocket;
  iceServers: RTCIceServer[];
  publisher: RTCPeerConnection | undefined;
  subscriber: RTCPeerConnection | undefined;
  /** Subscriber connection: which track sid each mid carries now. */
  mids: Map<string, string>;
  /** Tracks whose media arrived before their publication was known. */
  pending: Map<string, MediaStreamTrack>;
  transceivers: Map<LocalTrackPublication, RTCRtpTransceiver>;
  /** Publisher negotiations, one at a time. */
  publishing: Promise<unknown>;
  /** Subscriber offers, one at a time. */
  answering: Promise<unknown>;
  iceTimer: ReturnType<typeof setTimeout> | undefined;
}

const KINDS = { audio: TrackKind.AUDIO, video: TrackKind.VIDEO } as const;
/** Reasons to stay out: the SFU or a moderator decided. */
const FINAL_REASONS = new Set([
  LeaveReason.REMOVED,
  LeaveReason.ROOM_CLOSED,
  LeaveReason.DUPLICATE_IDENTITY,
  LeaveReason.CLIENT_INITIATED,
]);

function durationMs(duration: { seconds: bigint; nanos: number } | undefined, fallback: number): number {
  if (!duration) return fallback;
  return Number(duration.seconds) * 1000 + duration.nanos / 1e6 || fallback;
}

/** A failed request whose failure the caller does not await: keep it from being unhandled. */
function settled<T>(promise: Promise<T>): Promise<T> {
  promise.catch(() => {});
  return promise;
}

export class Room extends Emitter<RoomEventMap> {
  #state: RoomState;
  #session: Session;
  #url: string;
  #token: string;
  #options: RoomOptions;
  #connectionState: ConnectionState = "connecting";
  #closing = false;
  #needsNewToken = false;
  #reconnector: Reconnector;
  /** Own tracks in publishing order, published or waiting to be (again). */
  #local: LocalTrackPublication[] = [];
  /** Tracks this room captured itself (publishCamera...): it stops them on disconnect. */
  #captured = new Set<MediaStreamTrack>();
  #metadata: { name?: string; metadata?: string; attributes: Record<string, string> } = { attributes: {} };
  /** Manual subscriptions (`autoSubscribe: false`), restored after a reconnection. */
  #subscriptions = new Map<string, { paused: boolean }>();
  /** How video tracks are shown (`setTrackSettings`), sent again on each subscription. */
  #trackSettings = new Map<string, TrackSettings>();
  /** Reliable data sent while reconnecting, sent once back. */
  #outbox: Array<() => void> = [];
  /** Proves to the SFU that this client held its session, to resume it after a drop. */
  #resumeToken: string;
  /** Whether the last reconnection resumed the session (rather than joined anew). */
  #resumed = false;

  private constructor(url: string, token: string, options: RoomOptions, socket: SignalSocket, joined: JoinResponse) {
    super();
    this.#url = url;
    this.#token = token;
    this.#options = options;
    this.#state = new RoomState(joined);
    this.#resumeToken = joined.resumeToken;
    this.#session = this.#attach(socket, joined);
    this.#reconnector = new Reconnector({
      attempt: () => this.#rejoin(),
      classify: (error) => this.#classify(error),
      ...(options.backoff ? { backoff: options.backoff } : {}),
      onAttempt: (attempt, delayMs) => {
        if (attempt > 0) this.emit("reconnecting", { attempt, delayMs, cause: new Error("retrying") });
      },
    });
    globalThis.addEventListener?.("pagehide", this.#onPageHide);
  }

  /** Closing the page (or leaving it) leaves the meeting: without a `leave`, the SFU takes the
   * closed socket for a network drop and keeps the session, a frozen tile for the others, for
   * its whole resume grace. */
  readonly #onPageHide = (): void => this.disconnect();

  /**
   * Joins the meeting `token` grants. `url` is the gateway (`https://meet.example.org`), its
   * signal URL (`wss://.../v1/signal`), or empty for the page's own origin.
   */
  static async connect(url: string | undefined, token: string, options: RoomOptions = {}): Promise<Room> {
    const signal = signalUrl(url);
    const { socket, joined } = await SignalSocket.join(signal, token, Room.#joinOptions(options));
    const room = new Room(signal, token, options, socket, joined);
    room.#setConnectionState("connected");
    return room;
  }

  static #joinOptions(options: RoomOptions) {
    return {
      manualSubscribe: options.autoSubscribe === false,
      timeoutMs: options.joinTimeoutMs ?? 20_000,
      ...(options.webSocket ? { webSocket: options.webSocket } : {}),
    };
  }

  // --- what the room knows -----------------------------------------------------------------

  /** The meeting (`recording` says whether it is recorded). */
  get info(): RoomInfo {
    return this.#state.room;
  }
  get recording(): boolean {
    return this.#state.room.recording;
  }
  /** This client as the meeting sees it (identity, name, attributes, permissions). */
  get localParticipant(): Participant {
    return this.#state.self;
  }
  /** Everyone else, by identity. */
  get participants(): ReadonlyMap<string, RemoteParticipant> {
    return this.#state.participants;
  }
  /** This client's tracks, in publishing order. */
  get localTracks(): readonly LocalTrackPublication[] {
    return this.#local;
  }
  get connectionState(): ConnectionState {
    return this.#connectionState;
  }
  /** The current peer connections (for getStats); replaced by a reconnection. */
  get publisherConnection(): RTCPeerConnection | undefined {
    return this.#session.publisher;
  }
  get subscriberConnection(): RTCPeerConnection | undefined {
    return this.#session.subscriber;
  }

  // --- publishing --------------------------------------------------------------------------

  /** Publishes a track; resolves once the SFU confirmed it (its `sid` is then set). */
  async publish(track: MediaStreamTrack, options: PublishOptions): Promise<LocalTrackPublication> {
    if (!(options.source in TRACK_SOURCES)) throw new InvalidArgument(`unknown track source ${options.source}`);
    this.#checkOpen();
    const publication = new LocalTrackPublication(
      track,
      options.source,
      options.name ?? "",
      options.muted ?? false,
      (options.simulcast ?? false) && track.kind === "video",
    );
    track.enabled = !publication.muted;
    this.#local.push(publication);
    // A screen share the browser's own "stop sharing" ended is unpublished.
    track.addEventListener("ended", () => void this.unpublish(publication).catch(() => {}), { once: true });
    try {
      await this.#publishOn(this.#session, publication);
    } catch (error) {
      if (this.#isDrop(error) && this.#options.reconnect !== false && !this.#closing) {
        // The session dropped meanwhile: the reconnection publishes it; wait for that.
        const outcome = await Promise.race([
          this.once("localTrackPublished", (e) => e.publication === publication),
          this.once("localTrackUnpublished", (e) => e.publication === publication),
          this.once("disconnected"),
        ]);
        if ("publication" in outcome && publication.sid && this.#local.includes(publication)) return publication;
        throw error;
      }
      this.#local = this.#local.filter((p) => p !== publication);
      throw error;
    }
    return publication;
  }

  /** Captures the camera and publishes it. */
  async publishCamera(
    constraints: MediaTrackConstraints | boolean = true,
    name = "camera",
    options: { simulcast?: boolean } = {},
  ): Promise<LocalTrackPublication> {
    const stream = await navigator.mediaDevices.getUserMedia({ video: constraints });
    return this.#publishCaptured(stream.getVideoTracks()[0]!, "camera", name, options.simulcast ?? false);
  }

  /** Captures the microphone and publishes it. */
  async publishMicrophone(
    constraints: MediaTrackConstraints | boolean = true,
    name = "microphone",
  ): Promise<LocalTrackPublication> {
    const stream = await navigator.mediaDevices.getUserMedia({ audio: constraints });
    return this.#publishCaptured(stream.getAudioTracks()[0]!, "microphone", name);
  }

  /** Asks the user for a screen (or window) and publishes it, with its audio when `audio` and
   * the browser offers it. Several screen shares may be published at once. */
  async publishScreen(options: { audio?: boolean; name?: string } = {}): Promise<LocalTrackPublication[]> {
    const stream = await navigator.mediaDevices.getDisplayMedia({ video: true, audio: options.audio ?? false });
    const name = options.name ?? "screen";
    const published = [await this.#publishCaptured(stream.getVideoTracks()[0]!, "screen_share", name)];
    const audio = stream.getAudioTracks()[0];
    if (audio) published.push(await this.#publishCaptured(audio, "screen_share_audio", `${name} audio`));
    return published;
  }

  async #publishCaptured(
    track: MediaStreamTrack,
    source: TrackSourceName,
    name: string,
    simulcast = false,
  ): Promise<LocalTrackPublication> {
    this.#captured.add(track);
    try {
      return await this.publish(track, { source, name, simulcast });
    } catch (error) {
      track.stop();
      this.#captured.delete(track);
      throw error;
    }
  }

  /** Stops publishing a track (and stops it, when the room captured it). */
  async unpublish(publication: LocalTrackPublication): Promise<void> {
    if (!this.#local.includes(publication)) return;
    this.#local = this.#local.filter((p) => p !== publication);
    const session = this.#session;
    const transceiver = session.transceivers.get(publication);
    session.transceivers.delete(publication);
    if (publication.sid && session.socket.isOpen) {
      const sid = publication.sid;
      await session.socket.request(
        { case: "unpublishTrack", value: { trackSid: sid } },
        (r) => r.case === "trackUnpublished" && r.value.trackSid === sid,
      );
    }
    if (this.#state.local.get(publication.sid) === publication) {
      this.#state.local.delete(publication.sid);
      this.emit("localTrackUnpublished", { publication });
    } else if (!publication.sid) {
      this.emit("localTrackUnpublished", { publication });
    }
    // The m-section stays (the SFU never reuses it); it sends nothing.
    await transceiver?.sender.replaceTrack(null).catch(() => {});
    if (this.#captured.delete(publication.track)) publication.track.stop();
  }

  /** Mutes or unmutes one of this client's tracks: nothing is sent or forwarded while muted. */
  async setMuted(publication: LocalTrackPublication, muted: boolean): Promise<void> {
    publication.muted = muted;
    publication.track.enabled = !muted;
    const session = this.#session;
    const sid = publication.sid;
    if (!sid || !session.socket.isOpen) return; // published (again) with this state
    await session.socket.request(
      { case: "muteTrack", value: { trackSid: sid, muted } },
      (r) => r.case === "trackMuted" && r.value.trackSid === sid,
    );
  }

  // --- receiving ---------------------------------------------------------------------------

  /** Subscribes to (or with `subscribe: false` drops; with `paused` stops forwarding but keeps)
   * others' tracks: for rooms joined with `autoSubscribe: false`. */
  subscribe(trackSids: string[], options: { subscribe?: boolean; paused?: boolean } = {}): void {
    const subscribe = options.subscribe ?? true;
    const paused = options.paused ?? false;
    for (const sid of trackSids) {
      if (subscribe) this.#subscriptions.set(sid, { paused });
      else this.#subscriptions.delete(sid);
    }
    if (this.#session.socket.isOpen && trackSids.length) {
      this.#session.socket.send({ case: "updateSubscription", value: { trackSids, subscribe, paused } });
    }
  }

  unsubscribe(trackSids: string[]): void {
    this.subscribe(trackSids, { subscribe: false });
  }

  /** Says how this client shows others' video tracks: of a track published in simulcast the
   * SFU forwards the smallest layer that fills `width` × `height` (within 20 %), at most
   * `maxQuality`. Kept, and sent again whenever the track is subscribed again. */
  setTrackSettings(trackSids: string[], settings: TrackSettings): void {
    for (const sid of trackSids) this.#trackSettings.set(sid, settings);
    const subscribed = trackSids.filter((sid) => this.#state.findTrack(sid)?.track);
    if (subscribed.length) this.#sendTrackSettings(this.#session, subscribed, settings);
  }

  #sendTrackSettings(session: Session, trackSids: string[], settings: TrackSettings): void {
    if (!session.socket.isOpen) return;
    const value = {
      trackSids,
      width: Math.max(0, Math.round(settings.width ?? 0)),
      height: Math.max(0, Math.round(settings.height ?? 0)),
      maxQuality: settings.maxQuality ? QUALITIES[settings.maxQuality] : VideoQuality.UNSPECIFIED,
    };
    session.socket.send({ case: "updateTrackSettings", value });
  }

  // --- data and metadata -------------------------------------------------------------------

  /** Sends a data message (`topic` tells receivers what it is: `chat`, `reaction`...) to
   * everyone else, or to `destinations`. Reliable messages sent while reconnecting go out
   * once back; lossy ones are dropped. */
  sendData(
    topic: string,
    payload: Uint8Array | string,
    options: { reliable?: boolean; destinations?: string[] } = {},
  ): void {
    this.#checkOpen();
    const bytes = typeof payload === "string" ? new TextEncoder().encode(payload) : payload;
    const reliable = options.reliable ?? true;
    const send = () =>
      this.#session.socket.send({
        case: "data",
        value: { kind: reliable ? DataKind.RELIABLE : DataKind.LOSSY, topic, payload: bytes, destinationIdentities: options.destinations ?? [] },
      });
    if (this.#session.socket.isOpen) send();
    else if (reliable) this.#outbox.push(send);
  }

  /** Changes this client's name, metadata or attributes (an empty attribute value removes
   * it); resolves once the meeting has it. Kept across reconnections. */
  async updateMetadata(update: { name?: string; metadata?: string; attributes?: Record<string, string> }): Promise<void> {
    this.#checkOpen();
    if (update.name !== undefined) this.#metadata.name = update.name;
    if (update.metadata !== undefined) this.#metadata.metadata = update.metadata;
    Object.assign(this.#metadata.attributes, update.attributes ?? {});
    if (!this.#session.socket.isOpen) return;
    await this.#sendMetadata(this.#session, update);
  }

  /** Changes this client's display name. */
  setName(name: string): Promise<void> {
    return this.updateMetadata({ name });
  }

  #sendMetadata(
    session: Session,
    update: { name?: string; metadata?: string; attributes?: Record<string, string> },
  ): Promise<Response> {
    const identity = this.#state.self.identity;
    return session.socket.request(
      { case: "updateMetadata", value: { ...update, attributes: update.attributes ?? {} } },
      (r) => r.case === "participantUpdated" && r.value.participant?.identity === identity,
    );
  }

  // --- leaving -----------------------------------------------------------------------------

  /** Leaves the meeting, closes the connections and stops the tracks the room captured. */
  disconnect(): void {
    if (this.#closing) return;
    this.#end("client_initiated", undefined, true);
  }

  /** For tests: closes the signal socket as a network failure would (the room reconnects). */
  dropSignalForTesting(): void {
    this.#session.socket.dropForTesting();
  }

  // --- sessions ----------------------------------------------------------------------------

  #checkOpen(): void {
    if (this.#closing) throw new ParleyError("the room is disconnected", { code: 9 });
  }

  #setConnectionState(state: ConnectionState): void {
    if (state === this.#connectionState) return;
    this.#connectionState = state;
    this.emit("connectionStateChanged", { state });
  }

  #attach(socket: SignalSocket, joined: JoinResponse): Session {
    const session: Session = {
      socket,
      iceServers: joined.iceServers.map((s) => ({ urls: s.urls, username: s.username, credential: s.credential })),
      publisher: undefined,
      subscriber: undefined,
      mids: new Map(),
      pending: new Map(),
      transceivers: new Map(),
      publishing: Promise.resolve(),
      answering: Promise.resolve(),
      iceTimer: undefined,
    };
    socket.start(
      {
        message: (response) => this.#onMessage(session, response),
        closed: (error) => this.#onDrop(session, error),
      },
      durationMs(joined.pingInterval, 10_000),
    );
    return session;
  }

  #onMessage(session: Session, response: Response): void {
    if (session !== this.#session) return;
    if (response.case === "offer") {
      const offer = response.value;
      session.answering = session.answering
        .then(() => this.#answer(session, offer))
        .catch((error: unknown) => this.#onDrop(session, error instanceof Error ? error : new Error(String(error))));
      return;
    }
    if (response.case === "left") {
      this.#onLeft(session, response.value.reason);
      return;
    }
    if (response.case === "subscribedLayers") {
      void this.#sendLayers(session, response.value.trackSid, response.value.rids);
      return;
    }
    for (const event of this.#state.apply(response, errorOfStatus)) {
      this.emit(event.name, event.detail as never);
      if (event.name === "trackPublished") {
        const track = session.pending.get(event.detail.publication.sid);
        if (track) {
          session.pending.delete(event.detail.publication.sid);
          this.#subscribed(event.detail.publication.sid, track, session);
        }
      }
    }
  }

  #onLeft(session: Session, reason: LeaveReason): void {
    session.socket.close(); // what the bridge does next (closing) is no drop
    this.#resumeToken = ""; // the SFU ended the session: there is none to resume
    const needsToken = reason === LeaveReason.TOKEN_EXPIRED || reason === LeaveReason.MOVED;
    if (FINAL_REASONS.has(reason) || (needsToken && !this.#options.refreshToken)) {
      this.#end(disconnectReason(reason));
      return;
    }
    this.#needsNewToken = needsToken;
    this.#onDrop(session, new Unavailable(`the SFU ended the session (${disconnectReason(reason)})`));
  }

  #newConnection(session: Session, target: SignalTarget): RTCPeerConnection {
    const pc = new RTCPeerConnection({
      iceServers: session.iceServers,
      bundlePolicy: "max-bundle",
      iceTransportPolicy: this.#options.iceTransportPolicy ?? "all",
    });
    pc.onicecandidate = (e) => {
      if (e.candidate?.candidate && session.socket.isOpen) {
        session.socket.send({
          case: "trickle",
          value: {
            target,
            candidate: e.candidate.candidate,
            sdpMid: e.candidate.sdpMid ?? "",
            sdpMlineIndex: e.candidate.sdpMLineIndex ?? 0,
          },
        });
      }
    };
    pc.onconnectionstatechange = () => {
      if (session !== this.#session) return;
      if (pc.connectionState === "failed") {
        this.#onDrop(session, new Unavailable("the media connection failed"));
      } else if (pc.connectionState === "disconnected") {
        clearTimeout(session.iceTimer);
        session.iceTimer = setTimeout(() => {
          if (pc.connectionState === "disconnected") this.#onDrop(session, new Unavailable("the media connection was lost"));
        }, this.#options.iceDisconnectedTimeoutMs ?? 5000);
      }
    };
    return pc;
  }

  /** Publishes one track on a session: announce, offer, answer, confirmation. */
  #publishOn(session: Session, publication: LocalTrackPublication): Promise<void> {
    const work = session.publishing.then(async () => {
      const { socket } = session;
      const cid = publication.track.id;
      const done = new AbortController();
      const announced = socket.send({
        case: "publishTrack",
        value: {
          cid,
          kind: KINDS[publication.kind],
          source: TRACK_SOURCES[publication.source],
          name: publication.name,
          muted: publication.muted,
        },
      });
      const refused = settled(socket.waitFor(() => false, announced, done.signal));
      const confirmed = settled(
        socket.waitFor((r) => r.case === "trackPublished" && r.value.cid === cid, undefined, done.signal),
      );
      session.publisher ??= this.#newConnection(session, SignalTarget.PUBLISHER);
      const pc = session.publisher;
      const transceiver = pc.addTransceiver(publication.track, {
        direction: "sendonly",
        ...(publication.simulcast ? { sendEncodings: SIMULCAST_ENCODINGS.map((e) => ({ ...e })) } : {}),
      });
      session.transceivers.set(publication, transceiver);
      try {
        const offer = await pc.createOffer();
        await pc.setLocalDescription(offer);
        const answer = await Promise.race([
          socket.request({ case: "offer", value: { sdp: offer.sdp ?? "" } }, (r) => r.case === "answer"),
          refused,
        ]);
        if (answer.case !== "answer") throw new ParleyError("the SFU did not answer the offer");
        await pc.setRemoteDescription({ type: "answer", sdp: answer.value.sdp });
        const published = await Promise.race([confirmed, refused]);
        if (published.case !== "trackPublished" || !published.value.track) throw new ParleyError(`track ${cid} was not published`);
        publication.info = published.value.track;
      } catch (error) {
        session.transceivers.delete(publication);
        await transceiver.sender.replaceTrack(null).catch(() => {}); // refused: send nothing
        throw error;
      } finally {
        done.abort();
      }
      this.#state.local.set(publication.sid, publication);
      this.emit("localTrackPublished", { publication });
    });
    session.publishing = work.catch(() => {});
    return work;
  }

  /** Answers a subscriber offer; announces the tracks that now arrive on each mid. */
  async #answer(session: Session, offer: SessionDescription): Promise<void> {
    session.subscriber ??= this.#newConnection(session, SignalTarget.SUBSCRIBER);
    const pc = session.subscriber;
    await pc.setRemoteDescription({ type: "offer", sdp: offer.sdp });
    const answer = await pc.createAnswer();
    await pc.setLocalDescription(answer);
    if (session !== this.#session || !session.socket.isOpen) return;
    session.socket.send({ case: "answer", value: { sdp: answer.sdp ?? "" } });
    // A mid may carry another track than before (the SFU reuses sections): announce it then.
    for (const transceiver of pc.getTransceivers()) {
      const mid = transceiver.mid ?? "";
      const sid = offer.trackSids[mid];
      if (!sid || session.mids.get(mid) === sid) continue;
      session.mids.set(mid, sid);
      this.#subscribed(sid, transceiver.receiver.track, session);
    }
  }

  /** Dynacast: sends only the simulcast layers of a track that someone receives (a paused
   * encoding costs no uplink and no encoder time); the SFU asks again when that changes. */
  async #sendLayers(session: Session, trackSid: string, rids: string[]): Promise<void> {
    const publication = this.#local.find((p) => p.sid === trackSid);
    const sender = publication && session.transceivers.get(publication)?.sender;
    if (!sender) return;
    const parameters = sender.getParameters();
    if (!parameters.encodings.some((e) => e.rid)) return;
    for (const encoding of parameters.encodings) encoding.active = !encoding.rid || rids.includes(encoding.rid);
    await sender.setParameters(parameters).catch((error: unknown) => {
      if (error instanceof Error) this.emit("error", { error: new ParleyError(`could not pause simulcast layers: ${error.message}`) });
    });
  }

  #subscribed(sid: string, track: MediaStreamTrack, session: Session): void {
    const publication = this.#state.findTrack(sid);
    const participant = publication && this.#state.participants.get(publication.participantIdentity);
    if (!publication || !participant) {
      session.pending.set(sid, track);
      return;
    }
    publication.track = track;
    const settings = this.#trackSettings.get(sid);
    if (settings && track.kind === "video") this.#sendTrackSettings(session, [sid], settings);
    this.emit("trackSubscribed", { participant, publication, track });
  }

  /** Whether a request failed because the session dropped (not because the SFU refused). */
  #isDrop(error: unknown): boolean {
    return error instanceof SignalClosed || this.#connectionState === "reconnecting";
  }

  #classify(error: unknown): FailureKind {
    if (this.#closing) return "fatal";
    if (error instanceof Unauthenticated) {
      // Expired or refused: only a fresh token can help, once.
      if (this.#options.refreshToken && !this.#needsNewToken) {
        this.#needsNewToken = true;
        return "retry";
      }
      return "fatal";
    }
    if (error instanceof PermissionDenied || error instanceof InvalidArgument) return "fatal";
    return "retry";
  }

  /** The session dropped: reconnect (or end, when reconnection is off). */
  #onDrop(session: Session, cause: Error): void {
    if (session !== this.#session || this.#closing || this.#connectionState === "reconnecting") return;
    this.#teardown(session);
    if (this.#options.reconnect === false) {
      this.#end("connection_failed", cause);
      return;
    }
    this.#setConnectionState("reconnecting");
    this.emit("reconnecting", { attempt: 0, delayMs: 0, cause });
    void this.#reconnector.reconnect().then((outcome) => {
      if (this.#closing) return;
      if (outcome.ok) {
        this.#setConnectionState("connected");
        this.emit("reconnected", { attempts: outcome.attempts, resumed: this.#resumed });
        return;
      }
      const error = outcome.error instanceof Error ? outcome.error : undefined;
      this.#end("connection_failed", error);
    });
  }

  /** Opens a new session: resumes the one that dropped, or when the SFU no longer has it
   * (its grace period passed, it was ended), joins anew. */
  async #resumeOrJoin(): Promise<{ socket: SignalSocket; joined: JoinResponse }> {
    const options = Room.#joinOptions(this.#options);
    if (this.#resumeToken) {
      const resume = { participantSid: this.#state.self.sid, resumeToken: this.#resumeToken };
      try {
        return await SignalSocket.join(this.#url, this.#token, { ...options, resume });
      } catch (error) {
        if (!(error instanceof NotFound || error instanceof PermissionDenied)) throw error; // retried
        this.#resumeToken = ""; // gone for good: join anew, now and on later attempts
      }
    }
    return SignalSocket.join(this.#url, this.#token, options);
  }

  /** One reconnection attempt: resume (or join again), catch up, publish again. */
  async #rejoin(): Promise<void> {
    if (this.#needsNewToken && this.#options.refreshToken) {
      this.#token = await this.#options.refreshToken();
      this.#needsNewToken = false;
    }
    const { socket, joined } = await this.#resumeOrJoin();
    this.#resumeToken = joined.resumeToken;
    this.#resumed = joined.resumed;
    if (this.#closing) {
      socket.close(true);
      throw new ParleyError("the room was disconnected");
    }
    const session = this.#attach(socket, joined);
    this.#session = session;
    for (const event of this.#state.resync(joined)) this.emit(event.name, event.detail as never);
    this.#state.local.clear();
    try {
      if (Object.keys(this.#metadata.attributes).length || this.#metadata.name !== undefined || this.#metadata.metadata !== undefined) {
        await this.#sendMetadata(session, this.#metadata);
      }
      const subscriptions = [...this.#subscriptions].filter(([sid]) => this.#state.findTrack(sid));
      for (const paused of [false, true]) {
        const sids = subscriptions.filter(([, s]) => s.paused === paused).map(([sid]) => sid);
        if (sids.length) socket.send({ case: "updateSubscription", value: { trackSids: sids, subscribe: true, paused } });
      }
      for (const publication of [...this.#local]) {
        try {
          await this.#publishOn(session, publication);
        } catch (error) {
          if (error instanceof SignalClosed) throw error;
          // Refused now (permissions changed meanwhile): it stays unpublished.
          this.#local = this.#local.filter((p) => p !== publication);
          this.emit("localTrackUnpublished", { publication });
          if (error instanceof ParleyError) this.emit("error", { error });
        }
      }
      for (const send of this.#outbox.splice(0)) send();
    } catch (error) {
      this.#teardown(session);
      throw error;
    }
  }

  #teardown(session: Session): void {
    clearTimeout(session.iceTimer);
    session.socket.close();
    session.publisher?.close();
    session.subscriber?.close();
  }

  #end(reason: DisconnectReason, error?: Error, leave = false): void {
    if (this.#closing) return;
    this.#closing = true;
    this.#reconnector.cancel();
    globalThis.removeEventListener?.("pagehide", this.#onPageHide);
    const session = this.#session;
    clearTimeout(session.iceTimer);
    session.socket.close(leave);
    session.publisher?.close();
    session.subscriber?.close();
    for (const track of this.#captured) track.stop();
    this.#captured.clear();
    this.#outbox = [];
    this.#setConnectionState("disconnected");
    this.emit("disconnected", { reason, ...(error ? { error } : {}) });
  }
}
