/** Room settings for its administrators and owners: access level and what others may publish. */
import { useEffect, useState } from "react";
import { Button, Checkbox, CheckboxGroup, Label, Radio, RadioGroup } from "react-aria-components";
import { api, errorText, type AccessLevel, type Room, type TrackSourceEnum } from "../../api";
import { useToasts } from "../../components/toasts";
import { useT, type MessageKey } from "../../i18n";

const LEVELS: Array<{ level: AccessLevel; label: MessageKey }> = [
  { level: "ACCESS_LEVEL_PUBLIC", label: "settings.accessPublic" },
  { level: "ACCESS_LEVEL_TRUSTED", label: "settings.accessTrusted" },
  { level: "ACCESS_LEVEL_RESTRICTED", label: "settings.accessRestricted" },
];

const SOURCES: Array<{ source: TrackSourceEnum; label: MessageKey }> = [
  { source: "TRACK_SOURCE_CAMERA", label: "source.camera" },
  { source: "TRACK_SOURCE_MICROPHONE", label: "source.microphone" },
  { source: "TRACK_SOURCE_SCREEN_SHARE", label: "source.screen_share" },
  { source: "TRACK_SOURCE_SCREEN_SHARE_AUDIO", label: "source.screen_share_audio" },
];

export function RoomSettings({ slug, onSaved }: { slug: string; onSaved: () => void }) {
  const t = useT();
  const toasts = useToasts();
  const [room, setRoom] = useState<Room | null>(null);
  const [level, setLevel] = useState<AccessLevel>("ACCESS_LEVEL_PUBLIC");
  const [sources, setSources] = useState<string[]>([]);
  const [saving, setSaving] = useState(false);

  useEffect(() => {
    api.GET("/v1/rooms/{room}", { params: { path: { room: slug } } }).then(
      ({ data }) => {
        if (!data) return;
        setRoom(data);
        setLevel(data.accessLevel && data.accessLevel !== "ACCESS_LEVEL_UNSPECIFIED" ? data.accessLevel : "ACCESS_LEVEL_PUBLIC");
        setSources(data.configuration?.publishSources ?? []);
      },
      (error: unknown) => toasts.push(t("common.error", { message: errorText(error) })),
    );
  }, [slug]); // eslint-disable-line react-hooks/exhaustive-deps

  async function save() {
    setSaving(true);
    try {
      await api.PATCH("/v1/rooms/{room}", {
        params: { path: { room: slug }, query: { updateMask: "access_level,configuration.publish_sources" } },
        body: { accessLevel: level, configuration: { publishSources: sources as TrackSourceEnum[] }, etag: room?.etag },
      });
      toasts.push(t("settings.saved"));
      onSaved();
    } catch (error) {
      toasts.push(t("common.error", { message: errorText(error) }));
    } finally {
      setSaving(false);
    }
  }

  if (!room) return <p className="hint">{t("recordings.loading")}</p>;
  return (
    <div className="settings">
      <RadioGroup className="radio-group" value={level} onChange={(value) => setLevel(value as AccessLevel)}>
        <Label>{t("settings.access")}</Label>
        {LEVELS.map(({ level: value, label }) => (
          <Radio key={value} value={value} className="radio">
            {t(label)}
          </Radio>
        ))}
      </RadioGroup>
      <CheckboxGroup className="checkbox-group" value={sources} onChange={setSources}>
        <Label>{t("settings.publish")}</Label>
        {SOURCES.map(({ source, label }) => (
          <Checkbox key={source} value={source} className="checkbox">
            <span className="checkbox-box" aria-hidden="true" />
            {t(label)}
          </Checkbox>
        ))}
      </CheckboxGroup>
      <Button className="button primary" onPress={save} isDisabled={saving}>
        {t("common.save")}
      </Button>
    </div>
  );
}
