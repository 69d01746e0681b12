/** Who is in the meeting, and for moderators: mute, remove, change role; the lobby's waiting list. */
import { Button, Menu, MenuItem, MenuTrigger, Popover } from "react-aria-components";
import type { ParleyClient, Room } from "@parley/sdk";
import { api, errorText, type LobbyEntry, type RoleName } from "../../api";
import { Icon } from "../../components/icons";
import { useToasts } from "../../components/toasts";
import { useT, type MessageKey } from "../../i18n";

/** A logged-in user's identity is their user id (32 hex digits); guests' start with `guest-`. */
export function userOfIdentity(identity: string): string | null {
  return /^[0-9a-f]{32}$/.test(identity) ? `users/${identity}` : null;
}

const ROLES: Array<{ role: RoleName; label: MessageKey; name: MessageKey }> = [
  { role: "ROLE_MEMBER", label: "participants.makeMember", name: "role.member" },
  { role: "ROLE_ADMINISTRATOR", label: "participants.makeAdmin", name: "role.administrator" },
  { role: "ROLE_OWNER", label: "participants.makeOwner", name: "role.owner" },
];

/** Gives `user` the role on the room: a new access, or the existing one changed. */
async function setRole(slug: string, user: string, role: RoleName): Promise<void> {
  const { data } = await api.GET("/v1/rooms/{room}/accesses", { params: { path: { room: slug } } });
  const existing = (data?.roomAccesses ?? []).find((access) => access.user === user);
  if (!existing?.name) {
    await api.POST("/v1/rooms/{room}/accesses", { params: { path: { room: slug } }, body: { user, role } });
    return;
  }
  const [, room = "", , access = ""] = existing.name.split("/");
  await api.PATCH("/v1/rooms/{room}/accesses/{access}", {
    params: { path: { room, access }, query: { updateMask: "role" } },
    body: { role },
  });
}

export function ParticipantsPanel({
  room,
  slug,
  moderator,
  adminApi,
  lobby,
  onDecide,
}: {
  room: Room;
  slug: string;
  moderator: boolean;
  adminApi: ParleyClient;
  lobby: LobbyEntry[];
  onDecide: (entry: LobbyEntry, admit: boolean) => void;
}) {
  const t = useT();
  const toasts = useToasts();
  const id = room.info.room;
  const local = room.localParticipant;
  const remotes = [...room.participants.values()];

  async function run(action: () => Promise<unknown>) {
    try {
      await action();
    } catch (error) {
      toasts.push(t("common.error", { message: errorText(error) }));
    }
  }

  return (
    <div className="participants">
      {moderator && lobby.length > 0 && (
        <section aria-labelledby="waiting-title" className="waiting">
          <h3 id="waiting-title">{t("lobby.waitingList", { count: lobby.length })}</h3>
          <ul>
            {lobby.map((entry) => (
              <li key={entry.name} className="person">
                <span className="person-name">{entry.displayName}</span>
                <Button className="button small primary" onPress={() => onDecide(entry, true)}>
                  {t("lobby.admit")}
                </Button>
                <Button className="button small" onPress={() => onDecide(entry, false)}>
                  {t("lobby.deny")}
                </Button>
              </li>
            ))}
          </ul>
        </section>
      )}
      <ul className="people" aria-label={t("participants.title", { count: remotes.length + 1 })}>
        <li className="person">
          <span className="person-name">{t("meeting.you", { name: local.name })}</span>
          {local.attributes["hand_raised"] === "true" && <span role="img" aria-label={t("meeting.handRaised")} className="hand-icon"><Icon name="hand" size={16} /></span>}
        </li>
        {remotes.map((participant) => {
          const mic = [...participant.tracks.values()].find((track) => track.source === "microphone");
          const user = userOfIdentity(participant.identity);
          return (
            <li key={participant.identity} className="person" data-identity={participant.identity}>
              <span className="person-name">
                {participant.name || participant.identity}
                {!user && <span className="tag">{t("participants.guest")}</span>}
              </span>
              {participant.attributes["hand_raised"] === "true" && <span role="img" aria-label={t("meeting.handRaised")} className="hand-icon"><Icon name="hand" size={16} /></span>}
              {(!mic || mic.muted) && (
                <span role="img" aria-label={t("meeting.muted")} className="muted-icon">
                  <Icon name="micOff" size={16} />
                </span>
              )}
              {moderator && (
                <MenuTrigger>
                  <Button className="icon-button small" aria-label={`${t("meeting.more")}: ${participant.name}`}>
                    <Icon name="more" size={18} />
                  </Button>
                  <Popover className="popover">
                    <Menu
                      className="menu"
                      onAction={(key) => {
                        const action = String(key);
                        if (action === "mute" && mic)
                          void run(() =>
                            adminApi.POST("/v1/sfu/rooms/{room}/participants/{identity}/tracks/{track_sid}:mute", {
                              params: { path: { room: id, identity: participant.identity, track_sid: mic.sid } },
                              body: { muted: true },
                            }),
                          );
                        if (action === "remove")
                          void run(() =>
                            adminApi.POST("/v1/sfu/rooms/{room}/participants/{identity}:remove", {
                              params: { path: { room: id, identity: participant.identity } },
                              body: {},
                            }),
                          );
                        const role = ROLES.find((entry) => entry.role === action);
                        if (role && user)
                          void run(async () => {
                            await setRole(slug, user, role.role);
                            toasts.push(t("participants.roleChanged", { name: participant.name, role: t(role.name) }));
                          });
                      }}
                    >
                      <MenuItem id="mute" className="menu-item" isDisabled={!mic || mic.muted}>
                        {t("participants.mute")}
                      </MenuItem>
                      {user && ROLES.map((entry) => (
                        <MenuItem key={entry.role} id={entry.role} className="menu-item">
                          {t(entry.label)}
                        </MenuItem>
                      ))}
                      <MenuItem id="remove" className="menu-item danger">
                        {t("participants.remove")}
                      </MenuItem>
                    </Menu>
                  </Popover>
                </MenuTrigger>
              )}
            </li>
          );
        })}
      </ul>
    </div>
  );
}
