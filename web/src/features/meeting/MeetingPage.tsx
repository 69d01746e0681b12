/** `/r/:slug`: pre-join, then the lobby when the room asks for it, then the meeting, then the
 * screen that says why it ended. */
import { useEffect, useRef, useState } from "react";
import { Button } from "react-aria-components";
import { Link } from "wouter";
import { NotFound, PermissionDenied, Room, type DisconnectReason } from "@parley/sdk";
import { api, errorText, type JoinGrant } from "../../api";
import { Header } from "../../components/Header";
import { useT, type MessageKey } from "../../i18n";
import { useSession } from "../auth/session";
import { LobbyWait, useLobbyWatch, type LobbyOutcome } from "../lobby/LobbyWait";
import { callerWaitsInLobby } from "../lobby/waits";
import { PreJoin, type JoinChoices } from "../prejoin/PreJoin";
import { Meeting } from "./Meeting";

type Stage =
  | { kind: "prejoin"; error: string | null; busy: boolean }
  | { kind: "lobby"; entry: string; ticket: string; choices: JoinChoices }
  | { kind: "meeting"; room: Room; grant: JoinGrant; choices: JoinChoices }
  | { kind: "ended"; message: MessageKey };

const ENDED: Partial<Record<DisconnectReason, MessageKey>> = {
  client_initiated: "meeting.left",
  removed: "meeting.removed",
  room_closed: "meeting.ended",
};

export function MeetingPage({ slug }: { slug: string }) {
  const t = useT();
  const { user, loading } = useSession();
  const [stage, setStage] = useState<Stage>({ kind: "prejoin", error: null, busy: false });
  const [askToJoin, setAskToJoin] = useState(false);
  const stageRef = useRef(stage);
  stageRef.current = stage;

  useEffect(() => {
    document.title = `${slug} · Parley`;
  }, [slug]);

  // Pre-join says "Ask to join" when the room will put this caller in its lobby (read again on
  // each visit to pre-join: the room's settings may have changed meanwhile).
  const atPrejoin = stage.kind === "prejoin";
  useEffect(() => {
    if (loading || !atPrejoin) return;
    let current = true;
    void callerWaitsInLobby(slug, user !== null).then((waits) => current && setAskToJoin(waits));
    return () => {
      current = false;
    };
  }, [slug, user, loading, atPrejoin]);

  // Leaving the page leaves the meeting.
  useEffect(
    () => () => {
      const current = stageRef.current;
      if (current.kind === "meeting") current.room.disconnect();
    },
    [],
  );

  async function join(choices: JoinChoices, lobbyTicket = "") {
    setStage({ kind: "prejoin", error: null, busy: true });
    try {
      const { data } = await api.POST("/v1/rooms/{room}:join", {
        params: { path: { room: slug } },
        body: { displayName: choices.name, lobbyTicket },
      });
      if (data?.lobby) {
        setStage({ kind: "lobby", entry: data.lobby.entry?.name ?? "", ticket: data.lobby.ticket ?? "", choices });
        return;
      }
      const grant = data?.grant;
      if (!grant?.token) throw new Error("no join grant");
      const room = await Room.connect("", grant.token, {
        // A reconnection after the token expired gets a fresh one the same way.
        refreshToken: async () => {
          const again = await api.POST("/v1/rooms/{room}:join", { params: { path: { room: slug } }, body: { displayName: choices.name, lobbyTicket } });
          return again.data?.grant?.token ?? grant.token ?? "";
        },
      });
      // For the browser tests and for debugging from the console (getStats, state).
      (window as unknown as { parleyRoom?: Room }).parleyRoom = room;
      room.on("disconnected", ({ reason }) => setStage({ kind: "ended", message: ENDED[reason] ?? "meeting.disconnected" }));
      setStage({ kind: "meeting", room, grant, choices });
    } catch (error) {
      const text = error instanceof NotFound ? t("prejoin.notFound") : error instanceof PermissionDenied ? t("lobby.denied") : errorText(error);
      setStage({ kind: "prejoin", error: text, busy: false });
    }
  }

  function lobbyOutcome(outcome: LobbyOutcome) {
    const current = stageRef.current;
    if (current.kind !== "lobby") return;
    if (outcome === "accepted") void join(current.choices, current.ticket);
    else setStage({ kind: "ended", message: outcome === "denied" ? "lobby.denied" : "lobby.expired" });
  }

  switch (stage.kind) {
    case "prejoin":
      return (
        <div className="page">
          <Header />
          <PreJoin slug={slug} defaultName={user?.displayName ?? ""} askToJoin={askToJoin} busy={stage.busy} error={stage.error} onJoin={(choices) => void join(choices)} />
        </div>
      );
    case "lobby":
      return (
        <div className="page">
          <Header />
          <LobbyWatcher entry={stage.entry} ticket={stage.ticket} onOutcome={lobbyOutcome} />
          <LobbyWait
            name={stage.choices.name}
            onCancel={() => {
              stage.choices.audio?.stop();
              stage.choices.video?.stop();
              setStage({ kind: "prejoin", error: null, busy: false });
            }}
          />
        </div>
      );
    case "meeting":
      return <Meeting room={stage.room} grant={stage.grant} choices={stage.choices} slug={slug} />;
    case "ended":
      return (
        <div className="page">
          <Header />
          <main className="ended" id="main">
            <h1>{t(stage.message)}</h1>
            <div className="row">
              {stage.message !== "lobby.denied" && stage.message !== "meeting.removed" && (
                <Button className="button primary" onPress={() => setStage({ kind: "prejoin", error: null, busy: false })}>
                  {stage.message === "lobby.expired" ? t("lobby.retry") : t("meeting.rejoin")}
                </Button>
              )}
              <Link href="/" className="button">
                {t("meeting.home")}
              </Link>
            </div>
          </main>
        </div>
      );
  }
}

function LobbyWatcher({ entry, ticket, onOutcome }: { entry: string; ticket: string; onOutcome: (outcome: LobbyOutcome) => void }) {
  useLobbyWatch(entry, ticket, onOutcome);
  return null;
}
