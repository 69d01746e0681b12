/** Starting and stopping a room's recording (control's RecordingService). */
import { api, type Recording } from "../../api";

const RUNNING: ReadonlyArray<Recording["state"]> = ["RECORDING_STATE_INITIATED", "RECORDING_STATE_ACTIVE"];

export function isRunning(recording: Recording): boolean {
  return RUNNING.includes(recording.state);
}

export async function startRecording(slug: string, transcribe: boolean): Promise<Recording | undefined> {
  const { data } = await api.POST("/v1/rooms/{room}/recordings", {
    params: { path: { room: slug } },
    body: { mode: transcribe ? "RECORDING_MODE_TRANSCRIPT" : "RECORDING_MODE_SCREEN_RECORDING" },
  });
  return data;
}

/** Stops whichever recording of the room is running. */
export async function stopRecording(slug: string): Promise<void> {
  const { data } = await api.GET("/v1/rooms/{room}/recordings", { params: { path: { room: slug } } });
  for (const recording of (data?.recordings ?? []).filter(isRunning)) {
    const [, room = "", , id = ""] = (recording.name ?? "").split("/");
    await api.POST("/v1/rooms/{room}/recordings/{recording}:stop", { params: { path: { room, recording: id } }, body: {} });
  }
}
