/** The waiting screen: follows the lobby entry live (the watch stream) until a decision. */
import { useEffect } from "react";
import { Button } from "react-aria-components";
import { NotFound, streamMessages } from "@parley/sdk";
import { api, type LobbyEntry } from "../../api";
import { useT } from "../../i18n";

export type LobbyOutcome = "accepted" | "denied" | "expired";

/** Watches `entry` with its ticket and reports the decision; reconnects when the stream ends
 * early (a gateway restart) until the entry expires. */
export function useLobbyWatch(entryName: string, ticket: string, onOutcome: (outcome: LobbyOutcome) => void) {
  useEffect(() => {
    const [, room = "", , lobbyEntry = ""] = entryName.split("/");
    const abort = new AbortController();
    void (async () => {
      while (!abort.signal.aborted) {
        try {
          const { response } = await api.GET("/v1/rooms/{room}/lobbyEntries/{lobby_entry}:watch", {
            params: { path: { room, lobby_entry: lobbyEntry }, query: { ticket } },
            parseAs: "stream",
            signal: abort.signal,
          });
          if (!response.body) break;
          for await (const entry of streamMessages<LobbyEntry>(response.body)) {
            if (entry.state === "LOBBY_ENTRY_STATE_ACCEPTED") return onOutcome("accepted");
            if (entry.state === "LOBBY_ENTRY_STATE_DENIED") return onOutcome("denied");
          }
        } catch (error) {
          if (abort.signal.aborted) return;
          // NotFound: the entry lapsed (nobody decided in time).
          if (error instanceof NotFound) return onOutcome("expired");
        }
        await new Promise((resolve) => setTimeout(resolve, 1000));
      }
    })();
    return () => abort.abort();
  }, [entryName, ticket]); // eslint-disable-line react-hooks/exhaustive-deps
}

export function LobbyWait({ name, onCancel }: { name: string; onCancel: () => void }) {
  const t = useT();
  return (
    <main className="lobby-wait" id="main">
      <div className="pulse" aria-hidden="true" />
      <h1>{t("lobby.waiting")}</h1>
      <p className="hint">{t("lobby.waitingHint")}</p>
      <p className="lobby-name">{name}</p>
      <Button className="button" onPress={onCancel}>
        {t("lobby.cancel")}
      </Button>
    </main>
  );
}
