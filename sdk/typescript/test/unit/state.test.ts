// The room's event routing, fed with SFU messages in the JSON mapping as the socket reads them.
import { fromJson } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";

import { InvalidArgument } from "../../src/errors.js";
import { JoinResponseSchema } from "../../src/gen/parley/sfu/v1/signal_service_pb.js";
import { errorOfStatus, parseResponse } from "../../src/signal.js";
import { LocalTrackPublication, RoomState, type RoomEvent } from "../../src/state.js";

const camera = (sid: string, muted = false) => ({ sid, kind: "TRACK_KIND_VIDEO", source: "TRACK_SOURCE_CAMERA", name: "cam", muted });

function joined(others: unknown[], recording = false) {
  return fromJson(JoinResponseSchema, {
    room: { room: "abc", sid: "RM_1", recording },
    participant: { sid: "PA_me", identity: "me", name: "Me" },
    otherParticipants: others,
    pingInterval: "5s",
  } as never);
}

const apply = (state: RoomState, json: unknown) => state.apply(parseResponse(JSON.stringify(json)), errorOfStatus);
const names = (events: RoomEvent[]) => events.map((e) => e.name);

describe("RoomState", () => {
  it("routes the SFU's messages to typed events", () => {
    const state = new RoomState(joined([{ sid: "PA_a", identity: "alice", tracks: [camera("TR_a1")] }]));
    expect(state.participants.get("alice")?.tracks.get("TR_a1")?.source).toBe("camera");

    const [joinedEvent, published] = apply(state, {
      participantJoined: { participant: { sid: "PA_b", identity: "bob", tracks: [camera("TR_b1")] } },
    });
    expect(joinedEvent?.name).toBe("participantJoined");
    expect(published?.name === "trackPublished" && published.detail.publication.sid).toBe("TR_b1");

    const [muted] = apply(state, { trackMuted: { participantIdentity: "bob", trackSid: "TR_b1", muted: true } });
    expect(muted?.name === "trackMuted" && muted.detail.muted).toBe(true);
    expect(state.participants.get("bob")?.tracks.get("TR_b1")?.muted).toBe(true);

    // A room admin mutes this client's own track.
    const own = new LocalTrackPublication({ kind: "audio" } as MediaStreamTrack, "microphone", "mic", false);
    own.info = { sid: "TR_me" } as never;
    state.local.set("TR_me", own);
    const [localMuted] = apply(state, { trackMuted: { participantIdentity: "me", trackSid: "TR_me", muted: true } });
    expect(localMuted?.name).toBe("localTrackMuted");
    expect(own.muted).toBe(true);

    const [data] = apply(state, {
      data: { kind: "DATA_KIND_LOSSY", topic: "reaction", payload: Buffer.from("👍 ok").toString("base64"), participantIdentity: "alice" },
    });
    expect(data?.name).toBe("dataReceived");
    if (data?.name !== "dataReceived") throw new Error("unreachable");
    expect(new TextDecoder().decode(data.detail.payload)).toBe("👍 ok");
    expect(data.detail.kind).toBe("lossy");
    expect(data.detail.participant?.identity).toBe("alice");

    const [speakers] = apply(state, { speakersChanged: { speakers: [{ identity: "bob", level: 0.5 }] } });
    expect(speakers?.name === "activeSpeakersChanged" && speakers.detail.speakers[0]?.participant?.name).toBe("");

    const [recording] = apply(state, { roomUpdated: { room: { room: "abc", recording: true } } });
    expect(recording?.name).toBe("roomUpdated");
    expect(state.room.recording).toBe(true);

    expect(names(apply(state, { trackUnpublished: { participantIdentity: "bob", trackSid: "TR_b1" } }))).toEqual([
      "trackUnpublished",
    ]);
    expect(names(apply(state, { participantLeft: { identity: "bob", sid: "PA_b" } }))).toEqual(["participantLeft"]);
    expect([...state.participants.keys()]).toEqual(["alice"]);
  });

  it("keeps this client's own messages out of others' events", () => {
    const state = new RoomState(joined([]));
    expect(apply(state, { trackPublished: { participantIdentity: "me", track: camera("TR_me"), cid: "x" } })).toEqual([]);
    const [update] = apply(state, { participantUpdated: { participant: { identity: "me", name: "New name" } } });
    expect(update?.name).toBe("localParticipantUpdated");
    expect(state.self.name).toBe("New name");
  });

  it("ignores the leave of a participant's replaced session", () => {
    const state = new RoomState(joined([{ sid: "PA_new", identity: "alice" }]));
    expect(apply(state, { participantLeft: { identity: "alice", sid: "PA_old" } })).toEqual([]);
    expect(state.participants.has("alice")).toBe(true);
  });

  it("turns signal errors into typed errors with their field violations", () => {
    const state = new RoomState(joined([]));
    const [failed] = apply(state, {
      error: {
        requestId: "7",
        status: {
          code: 3,
          message: "invalid request",
          details: [
            {
              "@type": "type.googleapis.com/google.rpc.BadRequest",
              fieldViolations: [{ field: "data.topic", description: "at most 100 characters" }],
            },
          ],
        },
      },
    });
    if (failed?.name !== "error") throw new Error(`expected an error event, got ${failed?.name}`);
    expect(failed.detail.error).toBeInstanceOf(InvalidArgument);
    expect(failed.detail.error.fieldViolations).toEqual([{ field: "data.topic", description: "at most 100 characters" }]);
  });

  it("catches up after a reconnection, keeping the publications that stayed", () => {
    const state = new RoomState(
      joined([
        { sid: "PA_a", identity: "alice", tracks: [camera("TR_a1"), camera("TR_a2")] },
        { sid: "PA_b", identity: "bob" },
      ]),
    );
    const kept = state.participants.get("alice")!.tracks.get("TR_a1")!;
    const events = state.resync(
      joined(
        [
          { sid: "PA_a", identity: "alice", tracks: [camera("TR_a1", true), camera("TR_a3")] },
          { sid: "PA_c", identity: "carol", tracks: [camera("TR_c1")] },
        ],
        true,
      ),
    );
    expect(names(events)).toEqual([
      "roomUpdated",
      "participantLeft", // bob
      "participantUpdated", // alice
      "trackUnpublished", // TR_a2
      "trackMuted", // TR_a1
      "trackPublished", // TR_a3
      "participantJoined", // carol
      "trackPublished", // TR_c1
    ]);
    expect(state.participants.get("alice")!.tracks.get("TR_a1")).toBe(kept);
    expect(kept.muted).toBe(true);
    expect([...state.participants.keys()].sort()).toEqual(["alice", "carol"]);
  });
});
