/** The REST client of the page's gateway, with the browser's session cookie (and CSRF header). */
import { createClient, ParleyError, type ParleyClient, type Schema } from "@parley/sdk";

export const api: ParleyClient = createClient();

/** A client that calls with a join token: the SFU's room admin routes (`/v1/sfu/...`). */
export function joinTokenClient(token: string): ParleyClient {
  return createClient({ token });
}

export type Room = Schema<"Room">;
export type LobbyEntry = Schema<"LobbyEntry">;
export type JoinGrant = Schema<"JoinGrant">;
export type Recording = Schema<"Recording">;
export type AccessLevel = Schema<"AccessLevel">;
export type RoleName = Schema<"Role">;
export type TrackSourceEnum = Schema<"TrackSource">;

/** The text of an error for a toast or an alert. */
export function errorText(error: unknown): string {
  if (error instanceof ParleyError) return error.message;
  return error instanceof Error ? error.message : String(error);
}

/** `rooms/abc` → `abc`. */
export function roomId(name: string | undefined): string {
  return (name ?? "").split("/")[1] ?? "";
}
