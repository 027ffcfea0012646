// @roundtable/client: typed HTTP calls and typed, resumable room event streams for Roundtable.

export {
  createRoundtableClient,
  RoundtableError,
  unwrap,
  type RoundtableClient,
  type RoundtableClientOptions,
  type TokenSource,
} from "./client.js";
export {
  jittered,
  openRoomSocket,
  openRoomStream,
  roomEventsTicketUrl,
  roomEventsUrl,
  roomSocketUrl,
  streamTicketSource,
  type EventSourceConstructor,
  type WebSocketConstructor,
  type EventSourceLike,
  type MessageEventLike,
  type RoomStream,
  type RoomStreamError,
  type RoomStreamOptions,
} from "./stream.js";
export {
  actionFor,
  answerProblem,
  ATTEMPT_GUARDED,
  performAction,
  type ActionGuard,
  type OptionAnswer,
} from "./actions.js";
export {
  isSpectatorState,
  listRounds,
  playersForNewGame,
  quickJoin,
  rematchGame,
  startsNewGame,
  watchRoom,
} from "./rooms.js";
export {
  dispatchRoomEvent,
  isRoomEventType,
  type MessageName,
  type RoomEventData,
  type RoomEventHandlers,
  type RoomEventOf,
  type RoomEventType,
  type SocketServerMessage,
} from "./events.js";

// The contract's types, named after the spec schemas (`Room`, `Player`, `RoomState`, `RoomEvent`,
// `Snapshot`, `VoteCastEvent`, `SocketCommand`, …), plus openapi-typescript's `paths` and `components`.
export type * from "./generated/openapi.js";
export type * from "./generated/events.js";
export { ROOM_EVENT_TYPES } from "./generated/events.js";
