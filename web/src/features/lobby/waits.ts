/** Whether joining a room puts the caller in its lobby, so that pre-join says "Ask to join"
 * rather than "Join now". Control decides at the join (`JoinRoomResponse.lobby`); this reads the
 * same rule from what the app can know beforehand: the room's access level (`GetRoom`, open to
 * anyone), whether the caller is logged in, and whether they hold a role on the room (the room
 * is among theirs, `ListRooms`). */
import { api, type AccessLevel } from "../../api";

export function waitsInLobby(accessLevel: AccessLevel | undefined, caller: { loggedIn: boolean; holdsRole: boolean }): boolean {
  if (accessLevel === "ACCESS_LEVEL_TRUSTED") return !caller.loggedIn;
  if (accessLevel === "ACCESS_LEVEL_RESTRICTED") return !caller.holdsRole;
  return false; // PUBLIC, and rooms created without a level (PUBLIC by default)
}

/** Asks control whether `slug` would put this caller in the lobby. A failure answers false:
 * the join itself still says where the caller goes. */
export async function callerWaitsInLobby(slug: string, loggedIn: boolean): Promise<boolean> {
  try {
    const { data: room } = await api.GET("/v1/rooms/{room}", { params: { path: { room: slug } } });
    let holdsRole = false;
    if (room?.accessLevel === "ACCESS_LEVEL_RESTRICTED" && loggedIn) {
      const { data } = await api.GET("/v1/rooms", { params: { query: { filter: `slug = "${slug}"`, pageSize: 1 } } });
      holdsRole = (data?.rooms ?? []).length > 0;
    }
    return waitsInLobby(room?.accessLevel, { loggedIn, holdsRole });
  } catch {
    return false;
  }
}
