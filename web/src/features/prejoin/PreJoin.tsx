/** Pre-join: camera and microphone preview with device choice, the name the others will see,
 * and joining with the microphone or camera off. */
import { useEffect, useRef, useState, type FormEvent } from "react";
import { Button, FieldError, Form, Input, Label, ListBox, ListBoxItem, Popover, Select, SelectValue, TextField, ToggleButton } from "react-aria-components";
import { Icon } from "../../components/icons";
import { useT } from "../../i18n";

export interface JoinChoices {
  name: string;
  micOn: boolean;
  camOn: boolean;
  /** The preview's tracks, handed over to the meeting (no second permission prompt). */
  audio: MediaStreamTrack | null;
  video: MediaStreamTrack | null;
  audioDeviceId: string;
  videoDeviceId: string;
}

const NAME_KEY = "parley.displayName";

function DeviceSelect({ label, devices, value, onChange }: { label: string; devices: MediaDeviceInfo[]; value: string; onChange: (id: string) => void }) {
  const t = useT();
  return (
    <Select className="select" selectedKey={value || null} onSelectionChange={(key) => onChange(String(key))} isDisabled={devices.length === 0} placeholder={t("prejoin.noDevice")}>
      <Label>{label}</Label>
      <Button className="select-button">
        <SelectValue />
        <span aria-hidden="true">▾</span>
      </Button>
      <Popover className="popover">
        <ListBox className="listbox" items={devices.map((device, index) => ({ id: device.deviceId, label: device.label || `${label} ${index + 1}` }))}>
          {(item) => (
            <ListBoxItem className="listbox-item" id={item.id}>
              {item.label}
            </ListBoxItem>
          )}
        </ListBox>
      </Popover>
    </Select>
  );
}

/** The preview's microphone or camera track while `enabled`, captured again when another
 * device is chosen. Capturing never sets the chosen device itself: that would capture again
 * (stopping the first track), and a Join clicked meanwhile handed the meeting a stopped track
 * (a guest's camera stayed black). A track stopped here leaves the state; once `handedOver`
 * is set the meeting owns the track and it is not stopped. */
function usePreviewTrack(
  kind: "audio" | "video",
  enabled: boolean,
  deviceId: string,
  handedOver: { current: boolean },
  onCaptured: () => void,
  onDenied: () => void,
): MediaStreamTrack | null {
  const [track, setTrack] = useState<MediaStreamTrack | null>(null);
  useEffect(() => {
    if (!enabled) {
      setTrack(null);
      return;
    }
    let captured: MediaStreamTrack | null = null;
    let cancelled = false;
    const device = deviceId ? { deviceId: { exact: deviceId } } : {};
    const constraints = kind === "audio" ? { audio: deviceId ? device : true } : { video: { width: 1280, height: 720, ...device } };
    navigator.mediaDevices
      ?.getUserMedia(constraints)
      .then((stream) => {
        captured = stream.getTracks()[0] ?? null;
        if (cancelled) return captured?.stop();
        setTrack(captured);
        onCaptured();
      })
      .catch(onDenied);
    return () => {
      cancelled = true;
      if (captured && !handedOver.current) {
        const stopped = captured;
        stopped.stop();
        setTrack((current) => (current === stopped ? null : current));
      }
    };
  }, [enabled, deviceId]); // eslint-disable-line react-hooks/exhaustive-deps

  return track;
}

export function PreJoin({
  slug,
  defaultName,
  askToJoin,
  busy,
  error,
  onJoin,
}: {
  slug: string;
  defaultName: string;
  /** Say "Ask to join" (the room has a lobby for this caller) rather than "Join now". */
  askToJoin: boolean;
  busy: boolean;
  error: string | null;
  onJoin: (choices: JoinChoices) => void;
}) {
  const t = useT();
  const [name, setName] = useState(() => localStorage.getItem(NAME_KEY) || defaultName);
  const [micOn, setMicOn] = useState(true);
  const [camOn, setCamOn] = useState(true);
  const [devices, setDevices] = useState<MediaDeviceInfo[]>([]);
  const [audioDeviceId, setAudioDeviceId] = useState("");
  const [videoDeviceId, setVideoDeviceId] = useState("");
  const [denied, setDenied] = useState(false);
  const [nameError, setNameError] = useState<string | null>(null);
  const videoElement = useRef<HTMLVideoElement>(null);
  const handedOver = useRef(false);

  useEffect(() => {
    if (!name && defaultName) setName(defaultName);
  }, [defaultName]); // eslint-disable-line react-hooks/exhaustive-deps

  const onCaptured = async () => setDevices(await navigator.mediaDevices.enumerateDevices());
  const onDenied = () => setDenied(true);
  const audio = usePreviewTrack("audio", true, audioDeviceId, handedOver, onCaptured, onDenied);
  // The camera only while it is on (its light goes off with it).
  const video = usePreviewTrack("video", camOn, videoDeviceId, handedOver, onCaptured, onDenied);

  useEffect(() => {
    if (videoElement.current) videoElement.current.srcObject = video ? new MediaStream([video]) : null;
  }, [video]);

  // The device in use when none was chosen (the browser's default).
  const shownAudioDevice = audioDeviceId || audio?.getSettings().deviceId || "";
  const shownVideoDevice = videoDeviceId || video?.getSettings().deviceId || "";

  function submit(event: FormEvent) {
    event.preventDefault();
    const trimmed = name.trim();
    if (!trimmed) {
      setNameError(t("prejoin.nameRequired"));
      return;
    }
    localStorage.setItem(NAME_KEY, trimmed);
    handedOver.current = true;
    onJoin({
      name: trimmed,
      micOn,
      camOn,
      audio,
      video: camOn ? video : null,
      audioDeviceId: shownAudioDevice,
      videoDeviceId: shownVideoDevice,
    });
  }

  return (
    <main className="prejoin" id="main">
      <div className="preview">
        <div className="preview-video">
          {camOn && video ? <video ref={videoElement} autoPlay playsInline muted className="mirror" data-testid="preview" /> : <div className="preview-off">{t("prejoin.cameraOff")}</div>}
          <div className="preview-toggles">
            <ToggleButton className="round-toggle" isSelected={micOn} onChange={setMicOn} aria-label={micOn ? t("meeting.micOn") : t("meeting.micOff")}>
              <Icon name={micOn ? "mic" : "micOff"} />
            </ToggleButton>
            <ToggleButton className="round-toggle" isSelected={camOn} onChange={setCamOn} aria-label={camOn ? t("meeting.camOn") : t("meeting.camOff")}>
              <Icon name={camOn ? "cam" : "camOff"} />
            </ToggleButton>
          </div>
        </div>
        {denied && <p className="hint warning">{t("prejoin.permission")}</p>}
        <div className="device-row">
          <DeviceSelect label={t("prejoin.microphone")} devices={devices.filter((d) => d.kind === "audioinput")} value={shownAudioDevice} onChange={setAudioDeviceId} />
          <DeviceSelect label={t("prejoin.camera")} devices={devices.filter((d) => d.kind === "videoinput")} value={shownVideoDevice} onChange={setVideoDeviceId} />
        </div>
      </div>
      <Form className="prejoin-form" onSubmit={submit} validationErrors={nameError ? { name: nameError } : {}}>
        <h1>{t("prejoin.title")}</h1>
        <p className="hint">{t("prejoin.room", { code: slug })}</p>
        <TextField
          name="name"
          className="field"
          value={name}
          maxLength={100}
          onChange={(value) => {
            setName(value);
            setNameError(null);
          }}
        >
          <Label>{t("prejoin.name")}</Label>
          <Input autoComplete="name" />
          <FieldError className="field-error" />
        </TextField>
        {error && (
          <p className="field-error" role="alert">
            {error}
          </p>
        )}
        <Button type="submit" className="button primary large" isDisabled={busy}>
          {busy ? t("prejoin.joining") : askToJoin ? t("prejoin.askToJoin") : t("prejoin.join")}
        </Button>
      </Form>
    </main>
  );
}
