// Names over the generated event types.
import type { MessagePayloads, RoomEvent, Snapshot, SocketAck, SocketError } from "./generated/events.js";
import { ROOM_EVENT_TYPES } from "./generated/events.js";

/** The `type` of every event of the log: `"player.joined" | "vote.cast" | …`. */
export type RoomEventType = RoomEvent["type"];

/** The event of one type: `RoomEventOf<"vote.cast">` is `VoteCastEvent`. */
export type RoomEventOf<T extends RoomEventType> = Extract<RoomEvent, { type: T }>;

/** The `data` of the event of one type: `RoomEventData<"chat.message">` is `ChatMessageData`. */
export type RoomEventData<T extends RoomEventType> = RoomEventOf<T>["data"];

/** One handler per event type, each typed by it. */
export type RoomEventHandlers = { [T in RoomEventType]?: (event: RoomEventOf<T>) => void };

/** What the server sends over the WebSocket: the events, the snapshot and command replies. */
export type SocketServerMessage = RoomEvent | Snapshot | SocketAck | SocketError;

/** The name of any message of the AsyncAPI file: event types, `snapshot`, `ack`, `error`, `ping`, `chat`, `vote`. */
export type MessageName = keyof MessagePayloads;

const EVENT_TYPES: ReadonlySet<string> = new Set(ROOM_EVENT_TYPES);

/** Tell whether a string is an event type this client knows. */
export function isRoomEventType(type: string): type is RoomEventType {
  return EVENT_TYPES.has(type);
}

/** Call the handler of `event`'s type, if any, with the event narrowed to it. */
export function dispatchRoomEvent(event: RoomEvent, handlers: RoomEventHandlers): void {
  const handler = handlers[event.type] as ((event: RoomEvent) => void) | undefined;
  handler?.(event);
}

// Both lists come from the same spec; this fails to compile if they ever disagree.
type Missing = Exclude<RoomEventType, (typeof ROOM_EVENT_TYPES)[number]>;
const everyTypeListed: [Missing] extends [never] ? true : Missing = true;
void everyTypeListed;
