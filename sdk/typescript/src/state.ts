/**
 * What the room client knows of a meeting, and the events each SFU message turns into. Pure:
 * no WebRTC and no socket here, so the routing is tested without a browser (`Room` feeds it
 * the messages and handles the media).
 */
import { TrackSource } from "./gen/parley/control/v1/resources_pb.js";
import {
  DataKind,
  LeaveReason,
  TrackKind,
  type Participant,
  type Room as RoomInfo,
  type Track,
} from "./gen/parley/sfu/v1/resources_pb.js";
import { ConnectionQuality, type JoinResponse } from "./gen/parley/sfu/v1/signal_service_pb.js";
import type { ParleyError } from "./errors.js";
import type { Status } from "./gen/google/rpc/status_pb.js";
import type { Response } from "./signal.js";

export type { Participant, RoomInfo, Track };

/** What a track carries, as the Python SDK names it. */
export type TrackSourceName = "camera" | "microphone" | "screen_share" | "screen_share_audio";

export const TRACK_SOURCES: Record<TrackSourceName, TrackSource> = {
  camera: TrackSource.CAMERA,
  microphone: TrackSource.MICROPHONE,
  screen_share: TrackSource.SCREEN_SHARE,
  screen_share_audio: TrackSource.SCREEN_SHARE_AUDIO,
};

export function sourceName(source: TrackSource): TrackSourceName | "unknown" {
  for (const [name, value] of Object.entries(TRACK_SOURCES)) if (value === source) return name as TrackSourceName;
  return "unknown";
}

/** Why the room was left, from `parley.sfu.v1.LeaveReason` (`removed`: by a moderator). */
export type DisconnectReason =
  | "client_initiated"
  | "removed"
  | "room_closed"
  | "duplicate_identity"
  | "token_expired"
  | "server_shutdown"
  | "connection_failed"
  | "moved"
  | "unknown";

export function disconnectReason(reason: LeaveReason): DisconnectReason {
  const name = LeaveReason[reason];
  return name && name !== "UNSPECIFIED" ? (name.toLowerCase() as DisconnectReason) : "unknown";
}

/** A track someone else publishes; `track` is set once it is subscribed. */
export class RemoteTrackPublication {
  /** The MediaStreamTrack, once subscribed. After a reconnection a new one replaces it
   * (`trackSubscribed` fires again). */
  track: MediaStreamTrack | undefined;

  constructor(
    readonly participantIdentity: string,
    public info: Track,
  ) {}

  get sid(): string {
    return this.info.sid;
  }
  get kind(): "audio" | "video" {
    return this.info.kind === TrackKind.AUDIO ? "audio" : "video";
  }
  get source(): TrackSourceName | "unknown" {
    return sourceName(this.info.source);
  }
  get name(): string {
    return this.info.name;
  }
  get muted(): boolean {
    return this.info.muted;
  }
}

/** Someone else in the meeting. */
export class RemoteParticipant {
  readonly tracks = new Map<string, RemoteTrackPublication>();

  constructor(public info: Participant) {}

  get identity(): string {
    return this.info.identity;
  }
  get sid(): string {
    return this.info.sid;
  }
  get name(): string {
    return this.info.name;
  }
  get metadata(): string {
    return this.info.metadata;
  }
  get attributes(): Record<string, string> {
    return this.info.attributes;
  }
}

/** One of this client's own tracks. `sid` changes when a reconnection publishes it again. */
export class LocalTrackPublication {
  /** The track as the room sees it; undefined until the SFU confirmed it. */
  info: Track | undefined;
  muted: boolean;

  constructor(
    readonly track: MediaStreamTrack,
    readonly source: TrackSourceName,
    readonly name: string,
    muted: boolean,
    /** Sent in three simulcast layers. */
    readonly simulcast = false,
  ) {
    this.muted = muted;
  }

  get sid(): string {
    return this.info?.sid ?? "";
  }
  get kind(): "audio" | "video" {
    return this.track.kind === "audio" ? "audio" : "video";
  }
}

export type ConnectionState = "connecting" | "connected" | "reconnecting" | "disconnected";
export type ConnectionQualityName = "unknown" | "poor" | "good" | "excellent";

/** Every event of a `Room`, by name, with what it carries. */
export interface RoomEventMap {
  /** connecting → connected → (reconnecting → connected)* → disconnected. */
  connectionStateChanged: { state: ConnectionState };
  /** The connection dropped; an attempt to get back starts after `delayMs`. */
  reconnecting: { attempt: number; delayMs: number; cause: Error };
  /** Back in the meeting: own tracks published again, others' tracks subscribed again.
   * `resumed`: the SFU took up the same session (same sids, the others saw nothing but a
   * pause); false: it had ended, and the room joined anew. */
  reconnected: { attempts: number; resumed: boolean };
  /** Out of the meeting for good: left, removed by a moderator, gave up reconnecting... */
  disconnected: { reason: DisconnectReason; error?: ParleyError | Error };
  participantJoined: { participant: RemoteParticipant };
  /** A name, metadata, attributes (a raised hand) or permissions changed. */
  participantUpdated: { participant: RemoteParticipant };
  participantLeft: { participant: RemoteParticipant };
  trackPublished: { participant: RemoteParticipant; publication: RemoteTrackPublication };
  trackUnpublished: { participant: RemoteParticipant; publication: RemoteTrackPublication };
  /** A track's media arrives: show or play `track`. */
  trackSubscribed: { participant: RemoteParticipant; publication: RemoteTrackPublication; track: MediaStreamTrack };
  trackMuted: { participant: RemoteParticipant; publication: RemoteTrackPublication; muted: boolean };
  /** One of this client's tracks is published (again, after a reconnection: a new `sid`). */
  localTrackPublished: { publication: LocalTrackPublication };
  localTrackUnpublished: { publication: LocalTrackPublication };
  /** One of this client's tracks was muted or unmuted (by itself or by a room admin). */
  localTrackMuted: { publication: LocalTrackPublication; muted: boolean };
  /** This client's own participant changed (name, metadata, attributes, permissions). */
  localParticipantUpdated: { participant: Participant };
  dataReceived: {
    /** The sender; undefined for a room admin's service, or someone hidden. */
    participant: RemoteParticipant | undefined;
    identity: string;
    topic: string;
    payload: Uint8Array;
    kind: "reliable" | "lossy";
  };
  /** Who speaks now, loudest first; empty when no one does. */
  activeSpeakersChanged: { speakers: Array<{ identity: string; level: number; participant?: RemoteParticipant }> };
  connectionQualityChanged: { updates: Array<{ identity: string; quality: ConnectionQualityName }> };
  /** The meeting changed: `room.recording` says whether it is being recorded. */
  roomUpdated: { room: RoomInfo };
  /** A request that was not awaited failed (the session goes on). */
  error: { error: ParleyError };
}

export type RoomEventName = keyof RoomEventMap;
export type RoomEvent = { [K in RoomEventName]: { name: K; detail: RoomEventMap[K] } }[RoomEventName];

function event<K extends RoomEventName>(name: K, detail: RoomEventMap[K]): RoomEvent {
  return { name, detail } as RoomEvent;
}

const QUALITIES: Record<number, ConnectionQualityName> = {
  [ConnectionQuality.POOR]: "poor",
  [ConnectionQuality.GOOD]: "good",
  [ConnectionQuality.EXCELLENT]: "excellent",
};

/** The meeting as this client knows it. */
export class RoomState {
  room: RoomInfo;
  self: Participant;
  readonly participants = new Map<string, RemoteParticipant>();
  /** This client's own tracks, by sid once published. */
  readonly local = new Map<string, LocalTrackPublication>();

  constructor(joined: JoinResponse) {
    this.room = joined.room!;
    this.self = joined.participant!;
    for (const info of joined.otherParticipants) this.#add(info);
  }

  findTrack(sid: string): RemoteTrackPublication | undefined {
    for (const participant of this.participants.values()) {
      const found = participant.tracks.get(sid);
      if (found) return found;
    }
    return undefined;
  }

  #add(info: Participant): RemoteParticipant {
    const participant = new RemoteParticipant(info);
    for (const track of info.tracks) participant.tracks.set(track.sid, new RemoteTrackPublication(info.identity, track));
    this.participants.set(info.identity, participant);
    return participant;
  }

  /** Takes in a new session's `joined` (after a reconnection) and returns what changed while
   * the client was away. Publications that stay keep their objects, so the app's views of
   * them stay; their media comes back with `trackSubscribed`. */
  resync(joined: JoinResponse): RoomEvent[] {
    const events: RoomEvent[] = [];
    this.self = joined.participant!;
    if (joined.room) {
      const recordingChanged = joined.room.recording !== this.room.recording;
      this.room = joined.room;
      if (recordingChanged) events.push(event("roomUpdated", { room: this.room }));
    }
    const present = new Set(joined.otherParticipants.map((p) => p.identity));
    for (const [identity, participant] of [...this.participants]) {
      if (!present.has(identity)) {
        this.participants.delete(identity);
        events.push(event("participantLeft", { participant }));
      }
    }
    for (const info of joined.otherParticipants) {
      const known = this.participants.get(info.identity);
      if (!known) {
        const participant = this.#add(info);
        events.push(event("participantJoined", { participant }));
        for (const publication of participant.tracks.values()) {
          events.push(event("trackPublished", { participant, publication }));
        }
        continue;
      }
      known.info = info;
      events.push(event("participantUpdated", { participant: known }));
      const sids = new Set(info.tracks.map((t) => t.sid));
      for (const [sid, publication] of [...known.tracks]) {
        if (!sids.has(sid)) {
          known.tracks.delete(sid);
          events.push(event("trackUnpublished", { participant: known, publication }));
        }
      }
      for (const track of info.tracks) {
        const publication = known.tracks.get(track.sid);
        if (publication) {
          const mutedChanged = publication.info.muted !== track.muted;
          publication.info = track;
          if (mutedChanged) events.push(event("trackMuted", { participant: known, publication, muted: track.muted }));
        } else {
          const added = new RemoteTrackPublication(info.identity, track);
          known.tracks.set(track.sid, added);
          events.push(event("trackPublished", { participant: known, publication: added }));
        }
      }
    }
    return events;
  }

  /** The events one SFU message means (subscriber offers and answers are the `Room`'s). */
  apply(response: Response, toError: (status: Status | undefined) => ParleyError): RoomEvent[] {
    switch (response.case) {
      case "participantJoined": {
        const info = response.value.participant;
        if (!info || info.identity === this.self.identity) return [];
        const participant = this.#add(info);
        const events = [event("participantJoined", { participant })];
        for (const publication of participant.tracks.values()) {
          events.push(event("trackPublished", { participant, publication }));
        }
        return events;
      }
      case "participantUpdated": {
        const info = response.value.participant;
        if (!info) return [];
        if (info.identity === this.self.identity) {
          this.self = info;
          return [event("localParticipantUpdated", { participant: info })];
        }
        const participant = this.participants.get(info.identity);
        if (!participant) {
          const added = this.#add(info); // an update can be the first news of someone
          return [event("participantJoined", { participant: added })];
        }
        participant.info = info;
        return [event("participantUpdated", { participant })];
      }
      case "participantLeft": {
        const participant = this.participants.get(response.value.identity);
        // A participant that came back (same identity, new session) left as its old self.
        if (!participant || (response.value.sid && participant.sid !== response.value.sid)) return [];
        this.participants.delete(participant.identity);
        return [event("participantLeft", { participant })];
      }
      case "trackPublished": {
        const { participantIdentity, track } = response.value;
        if (!track || participantIdentity === this.self.identity) return [];
        const participant = this.participants.get(participantIdentity);
        if (!participant) return [];
        const publication = new RemoteTrackPublication(participantIdentity, track);
        participant.tracks.set(track.sid, publication);
        return [event("trackPublished", { participant, publication })];
      }
      case "trackUnpublished": {
        const { participantIdentity, trackSid } = response.value;
        const own = this.local.get(trackSid);
        if (participantIdentity === this.self.identity && own) {
          this.local.delete(trackSid);
          return [event("localTrackUnpublished", { publication: own })];
        }
        const participant = this.participants.get(participantIdentity);
        const publication = participant?.tracks.get(trackSid);
        if (!participant || !publication) return [];
        participant.tracks.delete(trackSid);
        return [event("trackUnpublished", { participant, publication })];
      }
      case "trackMuted": {
        const { trackSid, muted } = response.value;
        const own = this.local.get(trackSid);
        if (own) {
          own.muted = muted;
          if (own.info) own.info.muted = muted;
          return [event("localTrackMuted", { publication: own, muted })];
        }
        const publication = this.findTrack(trackSid);
        const participant = publication && this.participants.get(publication.participantIdentity);
        if (!publication || !participant) return [];
        publication.info.muted = muted;
        return [event("trackMuted", { participant, publication, muted })];
      }
      case "data": {
        const packet = response.value;
        return [
          event("dataReceived", {
            participant: this.participants.get(packet.participantIdentity),
            identity: packet.participantIdentity,
            topic: packet.topic,
            payload: packet.payload,
            kind: packet.kind === DataKind.LOSSY ? "lossy" : "reliable",
          }),
        ];
      }
      case "speakersChanged":
        return [
          event("activeSpeakersChanged", {
            speakers: response.value.speakers.map((s) => {
              const participant = this.participants.get(s.identity);
              return { identity: s.identity, level: s.level, ...(participant ? { participant } : {}) };
            }),
          }),
        ];
      case "connectionQuality":
        return [
          event("connectionQualityChanged", {
            updates: response.value.updates.map((u) => ({ identity: u.identity, quality: QUALITIES[u.quality] ?? "unknown" })),
          }),
        ];
      case "roomUpdated":
        if (!response.value.room) return [];
        this.room = response.value.room;
        return [event("roomUpdated", { room: this.room })];
      case "error":
        return [event("error", { error: toError(response.value.status) })];
      default:
        return [];
    }
  }
}
