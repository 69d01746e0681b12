/** One tile: a participant's camera (or initials), or a screen share, with its name and badges. */
import { useEffect, useMemo, useRef } from "react";
import { Button } from "react-aria-components";
import type { ConnectionQualityName } from "@parley/sdk";
import { Icon } from "../../components/icons";
import { useT } from "../../i18n";
import { initials, type TileKey } from "./layout";

export interface TileModel extends TileKey {
  name: string;
  video: MediaStreamTrack | undefined;
  /** The remote video track's sid: its size on screen is reported (`onVideoSize`). */
  videoSid?: string | undefined;
  audioMuted: boolean;
  handRaised: boolean;
  speaking: boolean;
  quality: ConnectionQualityName;
}

/** Reports to the SFU at what size (in device pixels) the video is shown, so that of a
 * simulcast track it sends the layer that fits: a thumbnail gets 320x180, the stage 1280x720. */
function useShownSize(element: React.RefObject<HTMLVideoElement | null>, onSize: ((width: number, height: number) => void) | undefined) {
  useEffect(() => {
    const video = element.current;
    if (!video || !onSize) return;
    let timer: ReturnType<typeof setTimeout> | undefined;
    let last = "";
    const observer = new ResizeObserver(() => {
      clearTimeout(timer);
      // Layouts settle in a few frames (a panel opening, a window being resized): report once.
      timer = setTimeout(() => {
        const scale = window.devicePixelRatio || 1;
        const width = Math.round(video.clientWidth * scale);
        const height = Math.round(video.clientHeight * scale);
        if (!width || !height || `${width}x${height}` === last) return;
        last = `${width}x${height}`;
        onSize(width, height);
      }, 250);
    });
    observer.observe(video);
    return () => {
      clearTimeout(timer);
      observer.disconnect();
    };
  }, [element, onSize]);
}

function Video({ track, mirror, onSize }: { track: MediaStreamTrack; mirror: boolean; onSize?: ((width: number, height: number) => void) | undefined }) {
  const element = useRef<HTMLVideoElement>(null);
  useEffect(() => {
    const video = element.current;
    if (!video) return;
    video.srcObject = new MediaStream([track]);
    void video.play().catch(() => undefined);
  }, [track]);
  useShownSize(element, onSize);
  return <video ref={element} autoPlay playsInline muted className={mirror ? "mirror" : undefined} />;
}

export function Tile({
  tile,
  pinned,
  onPin,
  onVideoSize,
}: {
  tile: TileModel;
  pinned: boolean;
  onPin: (key: string | null) => void;
  onVideoSize?: (sid: string, width: number, height: number) => void;
}) {
  const t = useT();
  const sid = tile.videoSid;
  const onSize = useMemo(() => (sid && onVideoSize ? (width: number, height: number) => onVideoSize(sid, width, height) : undefined), [sid, onVideoSize]);
  const label = tile.kind === "screen" ? t("meeting.screenOf", { name: tile.name }) : tile.isLocal ? t("meeting.you", { name: tile.name }) : tile.name;
  return (
    <figure
      className={`tile ${tile.kind}${tile.speaking && tile.kind === "camera" ? " speaking" : ""}`}
      data-identity={tile.identity}
      data-kind={tile.kind}
      data-local={tile.isLocal || undefined}
      aria-label={label}
    >
      {tile.video ? <Video track={tile.video} mirror={tile.isLocal && tile.kind === "camera"} onSize={onSize} /> : <div className="avatar" aria-hidden="true">{initials(tile.name)}</div>}
      <figcaption className="tile-label">
        {tile.kind === "camera" && tile.audioMuted && (
          <span className="badge muted" title={t("meeting.muted")} role="img" aria-label={t("meeting.muted")}>
            <Icon name="micOff" size={14} />
          </span>
        )}
        <span className="tile-name">{label}</span>
        {tile.kind === "camera" && !tile.isLocal && tile.quality !== "unknown" && (
          <span className={`quality q-${tile.quality}`} role="img" aria-label={t("meeting.quality", { quality: t(`quality.${tile.quality}`) })} title={t("meeting.quality", { quality: t(`quality.${tile.quality}`) })}>
            <i />
            <i />
            <i />
          </span>
        )}
      </figcaption>
      {tile.handRaised && tile.kind === "camera" && (
        <span className="badge hand" role="img" aria-label={t("meeting.handRaised")} title={t("meeting.handRaised")}>
          <Icon name="hand" size={18} />
        </span>
      )}
      <Button className={`icon-button pin${pinned ? " active" : ""}`} aria-label={pinned ? t("meeting.unpin") : t("meeting.pin")} aria-pressed={pinned} onPress={() => onPin(pinned ? null : tile.key)}>
        <Icon name="pin" size={16} />
      </Button>
    </figure>
  );
}
