/** `/r/:slug/recordings`: a room's recordings, with download, transcript and summary. */
import { useEffect, useState } from "react";
import { Button } from "react-aria-components";
import { api, errorText, type Recording } from "../../api";
import { Header } from "../../components/Header";
import { useI18n } from "../../i18n";

interface Extra {
  transcript?: string;
  summary?: string;
}

function RecordingRow({ recording }: { recording: Recording }) {
  const { t, language } = useI18n();
  const [extra, setExtra] = useState<Extra>({});
  const [error, setError] = useState<string | null>(null);
  const [, room = "", , id = ""] = (recording.name ?? "").split("/");
  const when = recording.startTime ?? recording.createTime;
  const saved = recording.state === "RECORDING_STATE_SAVED" || recording.state === "RECORDING_STATE_NOTIFICATION_SUCCEEDED" || recording.state === "RECORDING_STATE_NOTIFICATION_FAILED";

  async function download() {
    try {
      const { data } = await api.GET("/v1/rooms/{room}/recordings/{recording}:download", { params: { path: { room, recording: id } } });
      if (data?.url) location.assign(data.url);
    } catch (failure) {
      setError(errorText(failure));
    }
  }

  async function loadTranscript() {
    const transcription = (recording.transcription ?? "").split("/")[1] ?? "";
    try {
      const { data } = await api.GET("/v1/transcriptions/{transcription}", { params: { path: { transcription }, query: { view: "TRANSCRIPTION_VIEW_FULL" } } });
      const text = (data?.segments ?? []).map((segment) => `${segment.speaker ? `${segment.speaker}: ` : ""}${segment.text ?? ""}`).join("\n");
      setExtra((before) => ({ ...before, transcript: text || "—" }));
    } catch (failure) {
      setError(errorText(failure));
    }
  }

  async function loadSummary() {
    const summary = (recording.summary ?? "").split("/")[1] ?? "";
    try {
      const { data } = await api.GET("/v1/summaries/{summary}", { params: { path: { summary } } });
      setExtra((before) => ({ ...before, summary: data?.markdown || data?.minutes?.summary || "—" }));
    } catch (failure) {
      setError(errorText(failure));
    }
  }

  return (
    <li className="recording">
      <div className="recording-head">
        <strong>{when ? new Intl.DateTimeFormat(language, { dateStyle: "medium", timeStyle: "short" }).format(new Date(when)) : recording.name}</strong>
        <span className="tag">{(recording.state ?? "").replace("RECORDING_STATE_", "").toLowerCase()}</span>
        <span className="tag">{recording.mode === "RECORDING_MODE_TRANSCRIPT" ? t("recordings.transcript") : "video"}</span>
      </div>
      <div className="row">
        <Button className="button small" onPress={download} isDisabled={!saved}>
          {t("recordings.download")}
        </Button>
        {recording.transcription && (
          <Button className="button small" onPress={loadTranscript}>
            {t("recordings.transcript")}
          </Button>
        )}
        {recording.summary && (
          <Button className="button small" onPress={loadSummary}>
            {t("recordings.summary")}
          </Button>
        )}
      </div>
      {error && <p className="field-error">{error}</p>}
      {extra.summary && (
        <section>
          <h3>{t("recordings.summary")}</h3>
          <p className="prewrap">{extra.summary}</p>
        </section>
      )}
      {extra.transcript && (
        <section>
          <h3>{t("recordings.transcript")}</h3>
          <p className="prewrap">{extra.transcript}</p>
        </section>
      )}
    </li>
  );
}

export function RecordingsPage({ slug }: { slug: string }) {
  const { t } = useI18n();
  const [recordings, setRecordings] = useState<Recording[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    api.GET("/v1/rooms/{room}/recordings", { params: { path: { room: slug } } }).then(
      ({ data }) => setRecordings(data?.recordings ?? []),
      (failure: unknown) => setError(errorText(failure)),
    );
  }, [slug]);
  return (
    <div className="page">
      <Header />
      <main className="recordings-page" id="main">
        <h1>{t("recordings.title", { room: slug })}</h1>
        {error && <p className="field-error" role="alert">{error}</p>}
        {!recordings && !error && <p className="hint">{t("recordings.loading")}</p>}
        {recordings?.length === 0 && <p className="hint">{t("recordings.none")}</p>}
        <ul className="recording-list">
          {(recordings ?? []).map((recording) => (
            <RecordingRow key={recording.name} recording={recording} />
          ))}
        </ul>
      </main>
    </div>
  );
}
