import { describe, expect, it } from "vitest";
import { chatReducer, decodeChat, encodeChat, initialChat, type ChatMessage } from "../src/features/chat/chat";
import { parseMeetingCode } from "../src/features/home/code";
import { waitsInLobby } from "../src/features/lobby/waits";
import { gridOrder, gridShape, initials, speakerLayout, type TileKey } from "../src/features/meeting/layout";
import { shortcutFor } from "../src/features/meeting/shortcuts";

const message = (id: string, isLocal = false): ChatMessage => ({ id, identity: "a", name: "A", text: "hi", at: 0, isLocal });
const key = (identity: string, kind: "camera" | "screen" = "camera", isLocal = false): TileKey => ({ key: `${identity}:${kind}`, identity, kind, isLocal });

describe("grid shape", () => {
  it("puts one tile in the whole area", () => expect(gridShape(1, 1600, 900)).toMatchObject({ cols: 1, rows: 1, tileWidth: 1600 }));
  it("puts four tiles two by two on a wide screen", () => expect(gridShape(4, 1600, 900)).toMatchObject({ cols: 2, rows: 2 }));
  it("stacks tiles on a phone held upright", () => expect(gridShape(3, 390, 700).cols).toBe(1));
  it("never overflows the area", () => {
    for (let count = 1; count <= 25; count++) {
      const shape = gridShape(count, 1280, 720);
      expect(shape.cols * shape.rows).toBeGreaterThanOrEqual(count);
      expect(shape.cols * shape.tileWidth + 8 * (shape.cols - 1)).toBeLessThanOrEqual(1280.0001);
      expect(shape.rows * shape.tileHeight + 8 * (shape.rows - 1)).toBeLessThanOrEqual(720.0001);
    }
  });
});

describe("tile order", () => {
  it("shows screens first, then me, then the others as they came", () => {
    const order = gridOrder([key("b"), key("me", "camera", true), key("c", "screen"), key("d")]);
    expect(order.map((tile) => tile.key)).toEqual(["c:screen", "me:camera", "b:camera", "d:camera"]);
  });
  it("puts the pinned tile on stage, else a screen share, else the loudest speaker", () => {
    const tiles = [key("me", "camera", true), key("b"), key("c")];
    expect(speakerLayout(tiles, { pinned: "b:camera", speakers: ["c"] }).stage?.key).toBe("b:camera");
    expect(speakerLayout(tiles, { pinned: null, speakers: ["me", "c"] }).stage?.key).toBe("c:camera");
    expect(speakerLayout([...tiles, key("b", "screen")], { pinned: null, speakers: ["c"] }).stage?.key).toBe("b:screen");
    expect(speakerLayout(tiles, { pinned: null, speakers: [] }).strip).toHaveLength(2);
  });
  it("makes initials", () => {
    expect(initials("Ada Lovelace")).toBe("AL");
    expect(initials("bob")).toBe("BO");
    expect(initials("  ")).toBe("?");
  });
});

describe("chat", () => {
  it("counts unread messages while closed, not those sent here", () => {
    let state = chatReducer(initialChat, { type: "received", message: message("1") });
    state = chatReducer(state, { type: "received", message: message("2", true) });
    expect(state.unread).toBe(1);
    state = chatReducer(state, { type: "opened" });
    expect(state.unread).toBe(0);
    expect(chatReducer(state, { type: "received", message: message("3") }).unread).toBe(0);
  });
  it("drops duplicates", () => {
    const once = chatReducer(initialChat, { type: "received", message: message("1") });
    expect(chatReducer(once, { type: "received", message: message("1") })).toBe(once);
  });
  it("round-trips the wire format and refuses others", () => {
    const bytes = new TextEncoder().encode(encodeChat("x", "hello"));
    expect(decodeChat(bytes)).toEqual({ id: "x", text: "hello" });
    expect(decodeChat(new TextEncoder().encode("not json"))).toBeNull();
    expect(decodeChat(new TextEncoder().encode('{"id":"x","text":"  "}'))).toBeNull();
  });
});

describe("meeting codes", () => {
  it("reads codes and links", () => {
    expect(parseMeetingCode(" ABC-defg-hij ")).toBe("abc-defg-hij");
    expect(parseMeetingCode("http://127.0.0.1:8080/r/abc-defg-hij?x=1")).toBe("abc-defg-hij");
    expect(parseMeetingCode("not a code!")).toBeNull();
    expect(parseMeetingCode("")).toBeNull();
  });
});

describe("shortcuts", () => {
  const input = { key: "d", ctrlKey: true, metaKey: false, altKey: false, shiftKey: false, typing: false };
  it("maps keys to actions", () => {
    expect(shortcutFor(input)).toBe("mic");
    expect(shortcutFor({ ...input, key: "e", ctrlKey: false, metaKey: true })).toBe("cam");
    expect(shortcutFor({ ...input, key: "h", altKey: true })).toBe("hand");
  });
  it("leaves plain keys to text fields", () => {
    expect(shortcutFor({ ...input, key: "?", ctrlKey: false, typing: true })).toBeNull();
    expect(shortcutFor({ ...input, key: "?", ctrlKey: false })).toBe("help");
  });
});

describe("who waits in the lobby", () => {
  const anonymous = { loggedIn: false, holdsRole: false };
  const user = { loggedIn: true, holdsRole: false };
  const member = { loggedIn: true, holdsRole: true };
  it("lets everyone into a public room", () => {
    for (const caller of [anonymous, user, member]) expect(waitsInLobby("ACCESS_LEVEL_PUBLIC", caller)).toBe(false);
    expect(waitsInLobby(undefined, anonymous)).toBe(false);
  });
  it("makes anonymous guests wait in a trusted room", () => {
    expect(waitsInLobby("ACCESS_LEVEL_TRUSTED", anonymous)).toBe(true);
    expect(waitsInLobby("ACCESS_LEVEL_TRUSTED", user)).toBe(false);
  });
  it("makes everyone without a role wait in a restricted room", () => {
    expect(waitsInLobby("ACCESS_LEVEL_RESTRICTED", anonymous)).toBe(true);
    expect(waitsInLobby("ACCESS_LEVEL_RESTRICTED", user)).toBe(true);
    expect(waitsInLobby("ACCESS_LEVEL_RESTRICTED", member)).toBe(false);
  });
});
