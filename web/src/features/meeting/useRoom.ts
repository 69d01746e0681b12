/** React views of the `Room` client: components re-render on its events and read its state
 * (the SDK owns the meeting state; nothing is copied into a store here). */
import { useEffect, useState, useSyncExternalStore } from "react";
import type { ConnectionQualityName, Room, RoomEventName } from "@parley/sdk";

const CHANGES: RoomEventName[] = [
  "connectionStateChanged",
  "participantJoined",
  "participantUpdated",
  "participantLeft",
  "trackPublished",
  "trackUnpublished",
  "trackSubscribed",
  "trackMuted",
  "localTrackPublished",
  "localTrackUnpublished",
  "localTrackMuted",
  "localParticipantUpdated",
  "roomUpdated",
  "reconnected",
];

const versions = new WeakMap<Room, number>();

/** A number that changes whenever the room's participants, tracks or state change. */
export function useRoomVersion(room: Room): number {
  return useSyncExternalStore(
    (notify) => {
      const offs = CHANGES.map((name) =>
        room.on(name, () => {
          versions.set(room, (versions.get(room) ?? 0) + 1);
          notify();
        }),
      );
      return () => offs.forEach((off) => off());
    },
    () => versions.get(room) ?? 0,
  );
}

/** Who speaks now (identities, loudest first). */
export function useSpeakers(room: Room): string[] {
  const [speakers, setSpeakers] = useState<string[]>([]);
  useEffect(() => room.on("activeSpeakersChanged", ({ speakers: now }) => setSpeakers(now.map((speaker) => speaker.identity))), [room]);
  return speakers;
}

/** Each participant's connection quality as the SFU reports it. */
export function useQualities(room: Room): ReadonlyMap<string, ConnectionQualityName> {
  const [qualities, setQualities] = useState<ReadonlyMap<string, ConnectionQualityName>>(new Map());
  useEffect(
    () =>
      room.on("connectionQualityChanged", ({ updates }) =>
        setQualities((before) => {
          const next = new Map(before);
          for (const { identity, quality } of updates) next.set(identity, quality);
          return next;
        }),
      ),
    [room],
  );
  return qualities;
}
