/**
 * Parley's TypeScript SDK. The REST client (`createClient`) and errors here; the message types
 * of every contract under `@parley/sdk/gen/<path>_pb.js` (for example
 * `@parley/sdk/gen/parley/control/v1/resources_pb.js`); the browser room client `Room`.
 */
export {
  createClient,
  authMiddleware,
  streamMessages,
  CSRF_COOKIE,
  CSRF_HEADER,
  type ClientOptions,
  type ParleyClient,
  type Schema,
  type components,
  type operations,
  type paths,
} from "./client.js";
export * from "./errors.js";
export { Room, type PublishOptions, type RoomOptions, type TrackSettings } from "./room.js";
export {
  LocalTrackPublication,
  RemoteParticipant,
  RemoteTrackPublication,
  RoomState,
  type ConnectionQualityName,
  type ConnectionState,
  type DisconnectReason,
  type Participant,
  type RoomEvent,
  type RoomEventMap,
  type RoomEventName,
  type RoomInfo,
  type Track,
  type TrackSourceName,
} from "./state.js";
export { Emitter } from "./emitter.js";
export { Reconnector, backoffDelay, type BackoffOptions, type Clock, type ReconnectOutcome } from "./reconnect.js";
export { signalUrl, SignalClosed, type WebSocketFactory } from "./signal.js";
