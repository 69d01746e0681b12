/** For moderators: who waits in the lobby, kept fresh by polling (the lobby has no list watch),
 * with a callback for each newcomer. */
import { useCallback, useEffect, useRef, useState } from "react";
import { api, type LobbyEntry } from "../../api";

const POLL_MS = 2000;

export function useLobbyQueue(slug: string, enabled: boolean, onNewcomer: (entry: LobbyEntry) => void) {
  const [entries, setEntries] = useState<LobbyEntry[]>([]);
  const seen = useRef(new Set<string>());
  const newcomer = useRef(onNewcomer);
  newcomer.current = onNewcomer;

  const refresh = useCallback(async () => {
    try {
      const { data } = await api.GET("/v1/rooms/{room}/lobbyEntries", { params: { path: { room: slug } } });
      const waiting = (data?.lobbyEntries ?? []).filter((entry) => entry.state === "LOBBY_ENTRY_STATE_WAITING");
      for (const entry of waiting) {
        if (entry.name && !seen.current.has(entry.name)) {
          seen.current.add(entry.name);
          newcomer.current(entry);
        }
      }
      setEntries(waiting);
    } catch {
      // the next poll tries again
    }
  }, [slug]);

  useEffect(() => {
    if (!enabled) return;
    void refresh();
    const timer = window.setInterval(() => void refresh(), POLL_MS);
    return () => window.clearInterval(timer);
  }, [enabled, refresh]);

  const decide = useCallback(
    async (entry: LobbyEntry, admit: boolean) => {
      const [, room = "", , lobbyEntry = ""] = (entry.name ?? "").split("/");
      const params = { params: { path: { room, lobby_entry: lobbyEntry } }, body: {} };
      if (admit) await api.POST("/v1/rooms/{room}/lobbyEntries/{lobby_entry}:admit", params);
      else await api.POST("/v1/rooms/{room}/lobbyEntries/{lobby_entry}:deny", params);
      setEntries((all) => all.filter((other) => other.name !== entry.name));
    },
    [],
  );

  return { entries, decide };
}
