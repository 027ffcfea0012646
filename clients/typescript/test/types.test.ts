// Compile-time checks of the public API (tsc --noEmit runs over test/), plus the stream URL.
import assert from "node:assert/strict";
import { test } from "node:test";

import { EventSource as NodeEventSource } from "eventsource";

import {
  type EventSourceConstructor,
  type Player,
  type RoomEvent,
  type RoomEventOf,
  type Snapshot,
  type VoteCastEvent,
  ROOM_EVENT_TYPES,
  isRoomEventType,
  roomEventsTicketUrl,
  roomEventsUrl,
  roomSocketUrl,
} from "../src/index.js";

type Equal<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;
const voteCastIsNamed: Equal<RoomEventOf<"vote.cast">, VoteCastEvent> = true;
const snapshotCarriesPlayers: Equal<Snapshot["data"]["players"], Player[]> = true;
// Both the browser's EventSource and the `eventsource` package fit the parameter.
const browser: EventSourceConstructor | undefined = (globalThis as { EventSource?: typeof EventSource })
  .EventSource;
const node: EventSourceConstructor = NodeEventSource;

function describe(event: RoomEvent): string {
  switch (event.type) {
    case "chat.message":
      return event.data.text;
    case "player.joined":
      return event.data.player.nickname;
    case "vote.cast":
      return event.data.target_player_id ?? "abstain";
    default:
      return event.type;
  }
}

test("the event types and the stream URL", () => {
  assert.ok(voteCastIsNamed && snapshotCarriesPlayers && node && browser === undefined);
  assert.equal(ROOM_EVENT_TYPES.length, 14);
  assert.ok(isRoomEventType("vote.cast") && isRoomEventType("room.closed") && !isRoomEventType("snapshot"));
  assert.equal(
    describe({
      seq: 1,
      room_id: "r",
      type: "chat.message",
      at: "2026-01-01T00:00:00Z",
      data: { player_id: "p", text: "hi", channel: "room" },
    }),
    "hi",
  );
  assert.equal(roomEventsUrl("http://h:1/", "r 1", "t/k", null), "http://h:1/v1/rooms/r%201/events?access_token=t%2Fk");
  assert.equal(roomEventsUrl("", "r", "t", 7), "/v1/rooms/r/events?access_token=t&after=7");
  assert.equal(roomEventsTicketUrl("http://h:1/", "r", "k/1", null), "http://h:1/v1/rooms/r/events?ticket=k%2F1");
  assert.equal(roomSocketUrl("https://h", "r", "k", 3), "wss://h/v1/rooms/r/ws?ticket=k&after=3");
  assert.equal(roomSocketUrl("http://h:8000", "r", "k", null), "ws://h:8000/v1/rooms/r/ws?ticket=k");
});
