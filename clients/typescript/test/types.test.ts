// Compile-time checks of the public API (tsc --noEmit runs over test/), plus the stream URL.
import assert from "node:assert/strict";
import { test } from "node:test";

import { EventSource as NodeEventSource } from "eventsource";

import {
  type EventSourceConstructor,
  type MissionsBoard,
  type Option,
  type OptionsChangedEvent,
  type Player,
  type RoomEventHandlers,
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
// The snapshot carries what the caller may do now, and a missions game's board.
const snapshotCarriesOptions: Equal<Snapshot["data"]["options"], Option[]> = true;
const snapshotCarriesBoard: Equal<Snapshot["data"]["board"], MissionsBoard | null> = true;
const optionsChangedIsNamed: Equal<RoomEventOf<"options.changed">, OptionsChangedEvent> = true;
// Handlers for the ruleset events are typed by their own data.
const handlers: RoomEventHandlers = {
  "options.changed": (event) => void event.data.options.map((option) => option.pick),
  "approval.closed": (event) => void event.data.votes.map((vote) => `${vote.voter_id}:${vote.choice}`),
  "mission.closed": (event) => void (event.data.fails + (event.data.succeeded ? 1 : 0)),
  "team.proposed": (event) => void event.data.player_ids.length,
  "leader.changed": (event) => void event.data.leader_id,
};
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
    case "approval.closed":
      return event.data.votes.map((vote) => vote.choice).join(",");
    case "mission.closed":
      return `${event.data.fails} fail(s)`;
    default:
      return event.type;
  }
}

test("the event types and the stream URL", () => {
  assert.ok(voteCastIsNamed && snapshotCarriesPlayers && node && browser === undefined);
  assert.ok(snapshotCarriesOptions && snapshotCarriesBoard && optionsChangedIsNamed && handlers);
  // The mafia's fourteen, then the missions ruleset's six and options.changed.
  assert.equal(ROOM_EVENT_TYPES.length, 21);
  assert.ok(isRoomEventType("vote.cast") && isRoomEventType("room.closed") && !isRoomEventType("snapshot"));
  for (const type of ["leader.changed", "team.proposed", "approval.cast", "approval.closed", "mission.chosen", "mission.closed", "options.changed"]) {
    assert.ok(isRoomEventType(type), type);
  }
  assert.equal(
    describe({
      seq: 2,
      room_id: "r",
      type: "mission.closed",
      at: "2026-01-01T00:00:00Z",
      data: { round: 1, team: ["a", "b"], fails: 1, succeeded: false },
    }),
    "1 fail(s)",
  );
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
