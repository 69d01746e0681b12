// The REST client against a real gateway and control, started by tests/test_typescript_sdk.py
// (which sets PARLEY_GATEWAY_URL); run alone, it fails for want of that address.
import { describe, expect, it } from "vitest";

import { createClient, streamMessages, type Schema } from "../../src/client.js";
import { InvalidArgument, NotFound, Unauthenticated } from "../../src/errors.js";

const baseUrl = process.env.PARLEY_GATEWAY_URL;
if (!baseUrl) throw new Error("PARLEY_GATEWAY_URL is not set: run tests/test_typescript_sdk.py");

async function logIn(subject: string): Promise<string> {
  const { data } = await createClient({ baseUrl }).POST("/v1/users:devLogin", {
    body: { subject, displayName: subject },
  });
  expect(data?.accessToken).toBeTruthy();
  return data!.accessToken!;
}

describe("the REST client on a real gateway", () => {
  it("creates, reads and joins a room", async () => {
    const api = createClient({ baseUrl, token: await logIn(`ts-owner-${Date.now()}`) });
    const { data: room } = await api.POST("/v1/rooms", { body: { displayName: "TypeScript sync" } });
    expect(room?.slug).toMatch(/^[a-z]{3}-[a-z]{4}-[a-z]{3}$/);
    const { data: again } = await api.GET("/v1/rooms/{room}", { params: { path: { room: room!.slug! } } });
    expect(again?.displayName).toBe("TypeScript sync");
    const { data: grant } = await api.POST("/v1/rooms/{room}:join", {
      params: { path: { room: room!.slug! } },
      body: { displayName: "Owner" },
    });
    expect(grant?.grant?.token).toBeTruthy();
  });

  it("throws typed errors with the gateway's field violations", async () => {
    const api = createClient({ baseUrl, token: await logIn(`ts-bad-${Date.now()}`) });
    const invalid = await api.POST("/v1/rooms", { body: { slug: "Not A Slug!" } }).catch((e: unknown) => e);
    expect(invalid).toBeInstanceOf(InvalidArgument);
    const violations = (invalid as InvalidArgument).fieldViolations;
    expect(violations.map((v) => v.field)).toContain("room.slug");

    const missing = await api.GET("/v1/rooms/{room}", { params: { path: { room: "no-such-room" } } }).catch((e) => e);
    expect(missing).toBeInstanceOf(NotFound);
    expect((missing as NotFound).httpStatus).toBe(404);
  });

  it("refuses a bad token as Unauthenticated", async () => {
    const api = createClient({ baseUrl, token: "not-a-valid-token" });
    await expect(api.POST("/v1/rooms", { body: { displayName: "x" } })).rejects.toBeInstanceOf(Unauthenticated);
  });

  it("reads a server-streaming route as messages", async () => {
    // A guest waits in the lobby of a restricted room, then follows its entry as NDJSON.
    const owner = createClient({ baseUrl, token: await logIn(`ts-host-${Date.now()}`) });
    const { data: room } = await owner.POST("/v1/rooms", {
      body: { displayName: "Lobby", accessLevel: "ACCESS_LEVEL_RESTRICTED" },
    });
    const guest = createClient({ baseUrl });
    const { data: joined } = await guest.POST("/v1/rooms/{room}:join", {
      params: { path: { room: room!.slug! } },
      body: { displayName: "Guest" },
    });
    const entry = joined?.lobby?.entry;
    expect(entry?.name).toBeTruthy();
    const [, roomId, , entryId] = entry!.name!.split("/");
    const { data: stream } = await guest.GET("/v1/rooms/{room}/lobbyEntries/{lobby_entry}:watch", {
      params: { path: { room: roomId!, lobby_entry: entryId! }, query: { ticket: joined!.lobby!.ticket! } },
      parseAs: "stream",
    });
    const first = await streamMessages<Schema<"LobbyEntry">>(stream!).next();
    expect(first.value?.state).toBe("LOBBY_ENTRY_STATE_WAITING");
  });
});
