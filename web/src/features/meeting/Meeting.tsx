/** The meeting: tiles (grid or speaker layout), the control bar, the side panels (chat,
 * participants, settings), toasts, reactions, the lobby's waiting list for moderators. */
import { useCallback, useEffect, useMemo, useReducer, useRef, useState, type ReactNode } from "react";
import { Button, Dialog, Heading, Modal, ToggleButton } from "react-aria-components";
import { useLocation } from "wouter";
import type { LocalTrackPublication, Room } from "@parley/sdk";
import { errorText, joinTokenClient, type JoinGrant } from "../../api";
import { Icon } from "../../components/icons";
import { useToasts } from "../../components/toasts";
import { useT } from "../../i18n";
import { chatReducer, CHAT_TOPIC, decodeChat, encodeChat, initialChat } from "../chat/chat";
import { ChatPanel } from "../chat/ChatPanel";
import { meetingLink } from "../home/code";
import { useLobbyQueue } from "../lobby/useLobbyQueue";
import { ParticipantsPanel } from "../participants/ParticipantsPanel";
import type { JoinChoices } from "../prejoin/PreJoin";
import { decodeReaction, REACTIONS, REACTION_TOPIC } from "../reactions/reactions";
import { startRecording, stopRecording } from "../recording/recording";
import { RoomSettings } from "../settings/RoomSettings";
import { gridOrder, gridShape, speakerLayout } from "./layout";
import { SHORTCUTS, shortcutFor, type ShortcutAction } from "./shortcuts";
import { Tile, type TileModel } from "./Tile";
import { useQualities, useRoomVersion, useSpeakers } from "./useRoom";

type Panel = "chat" | "participants" | "settings" | null;
const HAND = "hand_raised";
/** The camera as captured (the pre-join preview captures the same): the top simulcast layer. */
const CAMERA = { width: 1280, height: 720 };

function RemoteAudio({ track, identity }: { track: MediaStreamTrack; identity: string }) {
  const element = useRef<HTMLAudioElement>(null);
  useEffect(() => {
    if (!element.current) return;
    element.current.srcObject = new MediaStream([track]);
    void element.current.play().catch(() => undefined);
  }, [track]);
  return <audio ref={element} autoPlay data-identity={identity} />;
}

function ControlButton({ label, onPress, children, className = "", badge }: { label: string; onPress: () => void; children: ReactNode; className?: string; badge?: number }) {
  return (
    <Button className={`control ${className}`} aria-label={label} onPress={onPress}>
      {children}
      {badge ? <span className="count" aria-hidden="true">{badge}</span> : null}
    </Button>
  );
}

export function Meeting({ room, grant, choices, slug }: { room: Room; grant: JoinGrant; choices: JoinChoices; slug: string }) {
  const t = useT();
  const toasts = useToasts();
  const [, navigate] = useLocation();
  useRoomVersion(room);
  const speakers = useSpeakers(room);
  const qualities = useQualities(room);
  const [chat, dispatchChat] = useReducer(chatReducer, initialChat);
  const [panel, setPanelState] = useState<Panel>(null);
  const [layout, setLayout] = useState<"grid" | "speaker">("grid");
  const [pinned, setPinned] = useState<string | null>(null);
  const [floating, setFloating] = useState<Array<{ id: number; emoji: string; name: string }>>([]);
  const [reactionsOpen, setReactionsOpen] = useState(false);
  const [helpOpen, setHelpOpen] = useState(false);
  const [stageSize, setStageSize] = useState({ width: 0, height: 0 });
  const stage = useRef<HTMLDivElement>(null);
  const selfMuting = useRef(false);
  const moderator = Boolean(grant.grants?.roomAdmin);
  const adminApi = useMemo(() => joinTokenClient(grant.token ?? ""), [grant.token]);
  const floatingId = useRef(0);

  // The SFU sends each remote video in the simulcast layer that fits the tile it is shown in.
  const showVideoAt = useCallback((sid: string, width: number, height: number) => room.setTrackSettings([sid], { width, height }), [room]);

  const setPanel = useCallback((next: Panel) => {
    setPanelState(next);
    dispatchChat({ type: next === "chat" ? "opened" : "closed" });
  }, []);

  // Publish what pre-join captured, once.
  const published = useRef(false);
  useEffect(() => {
    if (published.current) return;
    published.current = true;
    void (async () => {
      try {
        // The preview's tracks when it had them; captured now when Join came first.
        if (choices.micOn) await (choices.audio ? room.publish(choices.audio, { source: "microphone" }) : room.publishMicrophone());
        else choices.audio?.stop();
        // Cameras go out in three layers: each viewer gets the one that fits its tile.
        if (choices.camOn) await (choices.video ? room.publish(choices.video, { source: "camera", simulcast: true }) : room.publishCamera(CAMERA, "camera", { simulcast: true }));
      } catch (error) {
        toasts.push(t("common.error", { message: errorText(error) }));
      }
    })();
  }, []); // eslint-disable-line react-hooks/exhaustive-deps

  // Events that become toasts, chat messages and reactions.
  useEffect(() => {
    const hands = new Map<string, boolean>();
    const offs = [
      room.on("participantJoined", ({ participant }) => toasts.push(t("meeting.joined", { name: participant.name || participant.identity }))),
      room.on("participantLeft", ({ participant }) => toasts.push(t("meeting.leftToast", { name: participant.name || participant.identity }))),
      room.on("participantUpdated", ({ participant }) => {
        const raised = participant.attributes[HAND] === "true";
        if (raised && !hands.get(participant.identity)) toasts.push(t("meeting.raisedHandToast", { name: participant.name }));
        hands.set(participant.identity, raised);
      }),
      room.on("localTrackMuted", ({ publication, muted }) => {
        if (muted && publication.source === "microphone" && !selfMuting.current) toasts.push(t("meeting.mutedByModerator"));
      }),
      room.on("roomUpdated", ({ room: info }) => toasts.push(t(info.recording ? "recording.started" : "recording.stopped"))),
      room.on("dataReceived", ({ participant, identity, topic, payload }) => {
        const name = participant?.name || identity;
        if (topic === CHAT_TOPIC) {
          const message = decodeChat(payload);
          if (!message) return;
          dispatchChat({ type: "received", message: { id: `${identity}:${message.id}`, identity, name, text: message.text, at: Date.now(), isLocal: false } });
          if (panelRef.current !== "chat") toasts.push(t("chat.newFrom", { name, text: message.text.slice(0, 80) }));
        } else if (topic === REACTION_TOPIC) {
          const emoji = decodeReaction(payload);
          if (emoji) showReaction(emoji, name);
        }
      }),
    ];
    return () => offs.forEach((off) => off());
  }, [room]); // eslint-disable-line react-hooks/exhaustive-deps
  const panelRef = useRef<Panel>(panel);
  panelRef.current = panel;

  function showReaction(emoji: string, name: string) {
    const id = ++floatingId.current;
    setFloating((all) => [...all.slice(-9), { id, emoji, name }]);
    window.setTimeout(() => setFloating((all) => all.filter((item) => item.id !== id)), 4000);
  }

  const lobby = useLobbyQueue(slug, moderator, (entry) =>
    toasts.push(t("lobby.someoneWaiting", { name: entry.displayName ?? "" }), {
      action: { label: t("lobby.admit"), run: () => void decide(entry, true) },
      durationMs: 15000,
    }),
  );
  async function decide(entry: Parameters<typeof lobby.decide>[0], admit: boolean) {
    try {
      await lobby.decide(entry, admit);
      if (admit) toasts.push(t("lobby.admitted", { name: entry.displayName ?? "" }));
    } catch (error) {
      toasts.push(t("common.error", { message: errorText(error) }));
    }
  }

  // The stage's size, for the grid's shape.
  useEffect(() => {
    const element = stage.current;
    if (!element) return;
    const observer = new ResizeObserver(([entry]) => {
      if (entry) setStageSize({ width: entry.contentRect.width, height: entry.contentRect.height });
    });
    observer.observe(element);
    return () => observer.disconnect();
  }, []);

  const local = room.localParticipant;
  const mine = (source: string): LocalTrackPublication | undefined => room.localTracks.find((track) => track.source === source);
  const micPublication = mine("microphone");
  const micOn = Boolean(micPublication && !micPublication.muted);
  const camPublication = mine("camera");
  const screens = room.localTracks.filter((track) => track.source === "screen_share");
  const handRaised = local.attributes[HAND] === "true";
  const remotes = [...room.participants.values()];

  const tiles: TileModel[] = [];
  const camera = camPublication && !camPublication.muted ? camPublication.track : undefined;
  tiles.push({ key: `${local.identity}:camera`, identity: local.identity, kind: "camera", isLocal: true, name: local.name || choices.name, video: camera, audioMuted: !micOn, handRaised, speaking: speakers.includes(local.identity), quality: "unknown" });
  for (const screen of screens) tiles.push({ key: `local:${screen.track.id}`, identity: local.identity, kind: "screen", isLocal: true, name: local.name, video: screen.track, audioMuted: false, handRaised: false, speaking: false, quality: "unknown" });
  for (const participant of remotes) {
    const tracks = [...participant.tracks.values()];
    const cam = tracks.find((track) => track.source === "camera");
    const mic = tracks.find((track) => track.source === "microphone");
    tiles.push({
      key: `${participant.identity}:camera`,
      identity: participant.identity,
      kind: "camera",
      isLocal: false,
      name: participant.name || participant.identity,
      video: cam && !cam.muted ? cam.track : undefined,
      videoSid: cam?.sid,
      audioMuted: !mic || mic.muted,
      handRaised: participant.attributes[HAND] === "true",
      speaking: speakers.includes(participant.identity),
      quality: qualities.get(participant.identity) ?? "unknown",
    });
    for (const share of tracks.filter((track) => track.source === "screen_share"))
      tiles.push({ key: share.sid, identity: participant.identity, kind: "screen", isLocal: false, name: participant.name || participant.identity, video: share.track, videoSid: share.sid, audioMuted: false, handRaised: false, speaking: false, quality: "unknown" });
  }
  const audios = remotes.flatMap((participant) => [...participant.tracks.values()].filter((track) => track.kind === "audio" && track.track).map((track) => ({ sid: track.sid, track: track.track!, identity: participant.identity })));

  // Pinning a tile shows it on the speaker layout's stage.
  const pinnedTile = pinned && tiles.some((tile) => tile.key === pinned) ? pinned : null;
  const useSpeaker = layout === "speaker" || pinnedTile !== null;
  const arranged = useSpeaker ? speakerLayout(tiles, { pinned: pinnedTile, speakers }) : null;
  const gridTiles = arranged ? arranged.strip : gridOrder(tiles);
  const shape = gridShape(gridTiles.length, stageSize.width, stageSize.height);

  async function toggleMic() {
    try {
      if (micPublication) {
        selfMuting.current = true;
        await room.setMuted(micPublication, micOn);
        selfMuting.current = false;
      } else {
        await room.publishMicrophone(choices.audioDeviceId ? { deviceId: { exact: choices.audioDeviceId } } : true);
      }
    } catch (error) {
      selfMuting.current = false;
      toasts.push(t("common.error", { message: errorText(error) }));
    }
  }
  async function toggleCam() {
    try {
      if (camPublication) {
        await room.unpublish(camPublication);
        camPublication.track.stop(); // the preview's track: the room did not capture it
      } else {
        await room.publishCamera(choices.videoDeviceId ? { ...CAMERA, deviceId: { exact: choices.videoDeviceId } } : CAMERA, "camera", { simulcast: true });
      }
    } catch (error) {
      toasts.push(t("common.error", { message: errorText(error) }));
    }
  }
  async function share() {
    try {
      await room.publishScreen({ audio: true });
    } catch (error) {
      if (error instanceof DOMException && error.name === "NotAllowedError") return; // the user cancelled
      toasts.push(t("common.error", { message: errorText(error) }));
    }
  }
  async function stopSharing() {
    for (const publication of room.localTracks.filter((track) => track.source === "screen_share" || track.source === "screen_share_audio")) await room.unpublish(publication);
  }
  async function toggleHand() {
    await room.updateMetadata({ attributes: { [HAND]: handRaised ? "" : "true" } });
  }
  function sendChat(text: string) {
    const id = crypto.randomUUID();
    room.sendData(CHAT_TOPIC, encodeChat(id, text));
    dispatchChat({ type: "received", message: { id: `${local.identity}:${id}`, identity: local.identity, name: local.name, text, at: Date.now(), isLocal: true } });
  }
  function react(emoji: string) {
    room.sendData(REACTION_TOPIC, emoji, { reliable: false });
    showReaction(emoji, local.name);
    setReactionsOpen(false);
  }
  async function copyInvite() {
    const link = meetingLink(slug);
    try {
      await navigator.clipboard.writeText(link);
      toasts.push(t("meeting.copied"));
    } catch {
      toasts.push(link, { durationMs: 15000 });
    }
  }
  async function toggleRecording() {
    try {
      if (room.recording) await stopRecording(slug);
      else await startRecording(slug, false);
    } catch (error) {
      toasts.push(t("common.error", { message: errorText(error) }));
    }
  }
  function leave() {
    room.disconnect();
    navigate("/");
  }

  // Keyboard shortcuts.
  const actions = useRef<Record<ShortcutAction, () => void>>({} as Record<ShortcutAction, () => void>);
  actions.current = {
    mic: () => void toggleMic(),
    cam: () => void toggleCam(),
    hand: () => void toggleHand(),
    chat: () => setPanel(panelRef.current === "chat" ? null : "chat"),
    participants: () => setPanel(panelRef.current === "participants" ? null : "participants"),
    help: () => setHelpOpen(true),
  };
  useEffect(() => {
    function onKey(event: KeyboardEvent) {
      const target = event.target as HTMLElement | null;
      const typing = Boolean(target && (target.tagName === "INPUT" || target.tagName === "TEXTAREA" || target.isContentEditable));
      const action = shortcutFor({ key: event.key, ctrlKey: event.ctrlKey, metaKey: event.metaKey, altKey: event.altKey, shiftKey: event.shiftKey, typing });
      if (!action) return;
      event.preventDefault();
      actions.current[action]();
    }
    window.addEventListener("keydown", onKey);
    return () => window.removeEventListener("keydown", onKey);
  }, []);

  const panelTitle = panel === "chat" ? t("chat.title") : panel === "participants" ? t("participants.title", { count: remotes.length + 1 }) : t("settings.title");

  return (
    <div className={`meeting${panel ? " with-panel" : ""}`} data-connection={room.connectionState}>
      <h1 className="visually-hidden">{t("prejoin.room", { code: slug })}</h1>
      {room.connectionState === "reconnecting" && (
        <div className="banner" role="alert">
          {t("meeting.reconnecting")}
        </div>
      )}
      {room.recording && (
        <div className="recording-badge" role="status">
          <span className="dot" aria-hidden="true" /> {t("recording.active")}
        </div>
      )}
      <div className="meeting-body">
        <div className={`stage-area${arranged ? " speaker" : ""}`}>
          {arranged?.stage && (
            <div className="stage-main">
              <Tile tile={arranged.stage} pinned={pinnedTile === arranged.stage.key} onPin={setPinned} onVideoSize={showVideoAt} />
            </div>
          )}
          <div
            className="grid"
            ref={stage}
            style={{ ["--cols" as string]: shape.cols, ["--tile-w" as string]: `${Math.floor(shape.tileWidth)}px`, ["--tile-h" as string]: `${Math.floor(shape.tileHeight)}px` }}
          >
            {gridTiles.map((tile) => (
              <Tile key={tile.key} tile={tile} pinned={pinnedTile === tile.key} onPin={setPinned} onVideoSize={showVideoAt} />
            ))}
          </div>
          {remotes.length === 0 && (
            <p className="alone">
              {t("meeting.alone")}{" "}
              <Button className="button small" onPress={copyInvite}>
                {t("meeting.invite")}
              </Button>
            </p>
          )}
          <div className="reactions-float" aria-live="polite">
            {floating.map((item) => (
              <span key={item.id} className="floating" style={{ left: `${10 + ((item.id * 37) % 70)}%` }}>
                <span className="emoji">{item.emoji}</span>
                <span className="who">{item.name}</span>
              </span>
            ))}
          </div>
        </div>
        {panel && (
          <aside className="side-panel" aria-label={panelTitle}>
            <div className="panel-head">
              <h2>{panelTitle}</h2>
              <Button className="icon-button" aria-label={t("common.close")} onPress={() => setPanel(null)}>
                <Icon name="close" />
              </Button>
            </div>
            {panel === "chat" && <ChatPanel messages={chat.messages} onSend={sendChat} />}
            {panel === "participants" && <ParticipantsPanel room={room} slug={slug} moderator={moderator} adminApi={adminApi} lobby={lobby.entries} onDecide={(entry, admit) => void decide(entry, admit)} />}
            {panel === "settings" && <RoomSettings slug={slug} onSaved={() => setPanel(null)} />}
          </aside>
        )}
      </div>
      {reactionsOpen && (
        <div className="reaction-picker" role="group" aria-label={t("meeting.reactions")}>
          {REACTIONS.map((emoji) => (
            <Button key={emoji} className="emoji-button" aria-label={emoji} onPress={() => react(emoji)}>
              {emoji}
            </Button>
          ))}
        </div>
      )}
      <nav className="control-bar" aria-label={t("meeting.more")}>
        <div className="controls-left">
          <span className="room-code">{slug}</span>
        </div>
        <div className="controls-main">
          <ControlButton label={micOn ? t("meeting.micOn") : t("meeting.micOff")} onPress={() => void toggleMic()} className={micOn ? "" : "off"}>
            <Icon name={micOn ? "mic" : "micOff"} />
          </ControlButton>
          <ControlButton label={camPublication ? t("meeting.camOn") : t("meeting.camOff")} onPress={() => void toggleCam()} className={camPublication ? "" : "off"}>
            <Icon name={camPublication ? "cam" : "camOff"} />
          </ControlButton>
          <ControlButton label={t("meeting.share")} onPress={() => void share()} className={screens.length ? "active" : ""}>
            <Icon name="screen" />
          </ControlButton>
          {screens.length > 0 && (
            <ControlButton label={t("meeting.stopShare")} onPress={() => void stopSharing()} className="active">
              <Icon name="close" />
            </ControlButton>
          )}
          <ToggleButton className="control" aria-label={handRaised ? t("meeting.lowerHand") : t("meeting.raiseHand")} isSelected={handRaised} onChange={() => void toggleHand()}>
            <Icon name="hand" />
          </ToggleButton>
          <ToggleButton className="control" aria-label={t("meeting.reactions")} isSelected={reactionsOpen} onChange={setReactionsOpen}>
            <Icon name="smile" />
          </ToggleButton>
          <ControlButton label={t("meeting.leave")} onPress={leave} className="danger wide">
            <Icon name="leave" />
          </ControlButton>
        </div>
        <div className="controls-right">
          <ToggleButton className="control" aria-label={t("meeting.chat")} isSelected={panel === "chat"} onChange={(on) => setPanel(on ? "chat" : null)}>
            <Icon name="chat" />
            {chat.unread > 0 && <span className="count">{chat.unread}</span>}
          </ToggleButton>
          <ToggleButton className="control" aria-label={t("meeting.participants")} isSelected={panel === "participants"} onChange={(on) => setPanel(on ? "participants" : null)}>
            <Icon name="people" />
            <span className="count quiet">{remotes.length + 1}</span>
            {lobby.entries.length > 0 && <span className="count alert">{lobby.entries.length}</span>}
          </ToggleButton>
          <ControlButton label={layout === "grid" ? t("meeting.layoutSpeaker") : t("meeting.layoutGrid")} onPress={() => setLayout(layout === "grid" ? "speaker" : "grid")}>
            <Icon name={layout === "grid" ? "speaker" : "grid"} />
          </ControlButton>
          <ControlButton label={t("meeting.invite")} onPress={() => void copyInvite()}>
            <Icon name="link" />
          </ControlButton>
          {moderator && (
            <>
              <ControlButton label={room.recording ? t("recording.stop") : t("recording.start")} onPress={() => void toggleRecording()} className={room.recording ? "recording" : ""}>
                <Icon name="record" />
              </ControlButton>
              <ControlButton label={t("meeting.settings")} onPress={() => setPanel(panel === "settings" ? null : "settings")}>
                <Icon name="settings" />
              </ControlButton>
            </>
          )}
          <ControlButton label={t("meeting.shortcuts")} onPress={() => setHelpOpen(true)}>
            <Icon name="keyboard" />
          </ControlButton>
        </div>
      </nav>
      {audios.map((audio) => (
        <RemoteAudio key={audio.sid} track={audio.track} identity={audio.identity} />
      ))}
      <Modal isOpen={helpOpen} onOpenChange={setHelpOpen} isDismissable className="modal">
        <Dialog className="dialog">
          <Heading slot="title">{t("meeting.shortcuts")}</Heading>
          <dl className="shortcuts">
            {SHORTCUTS.map((shortcut) => (
              <div key={shortcut.action}>
                <dt>
                  <kbd>{shortcut.keys}</kbd>
                </dt>
                <dd>{t(`shortcuts.${shortcut.action}`)}</dd>
              </div>
            ))}
          </dl>
          <Button className="button" slot="close">
            {t("common.close")}
          </Button>
        </Dialog>
      </Modal>
    </div>
  );
}
