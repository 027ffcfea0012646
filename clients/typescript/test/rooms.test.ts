// Around the game: watching, quick join, a rematch and each game's rounds; the fold helpers
// without a server, the calls against a live one (ROUNDTABLE_URL).
import assert from "node:assert/strict";
import { test } from "node:test";

import { EventSource } from "eventsource";

import {
  type GameStartedEvent,
  type Player,
  type RoomEvent,
  type RoundtableClient,
  type Snapshot,
  RoundtableError,
  actionFor,
  createRoundtableClient,
  isSpectatorState,
  listRounds,
  openRoomStream,
  performAction,
  playersForNewGame,
  quickJoin,
  rematchGame,
  startsNewGame,
  streamTicketSource,
  unwrap,
  watchRoom,
} from "../src/index.js";

const baseUrl = process.env.ROUNDTABLE_URL;

async function until(what: string, predicate: () => boolean, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!predicate()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

function refusedWith(status: number, code: string): (error: unknown) => boolean {
  return (error) => error instanceof RoundtableError && error.status === status && error.code === code;
}

const player = (id: string, role: Player["role"], team: Player["team"], alive: boolean): Player => ({
  id,
  nickname: id,
  seat: 1,
  is_host: false,
  alive,
  connected: true,
  role,
  team,
});

test("a new game (a rematch) forgets the last one's roles, teams and deaths", () => {
  const before = [player("a", "mafia", "mafia", true), player("b", "citizen", "town", false)];
  const after = playersForNewGame(before);
  assert.deepEqual(
    after.map((p) => [p.id, p.role, p.team, p.alive]),
    [
      ["a", null, null, true],
      ["b", null, null, true],
    ],
  );
  assert.equal(before[0]!.role, "mafia", "the old list is left as it was");
  const started = { type: "game.started", data: { room: { game: 2 } } } as unknown as GameStartedEvent;
  assert.ok(startsNewGame(started, 1));
  assert.ok(!startsNewGame(started, 2), "a replayed game.started of the game the fold holds is not new");
  assert.ok(isSpectatorState({ me: null }));
  assert.ok(!isSpectatorState({ me: before[0]! }));
});

interface Seat {
  id: string;
  api: RoundtableClient;
}

/** Act on every option every seat is offered until the missions game is over. */
async function playToTheEnd(seats: Seat[], roomId: string): Promise<void> {
  for (let pass = 0; pass < 100; pass += 1) {
    for (const seat of seats) {
      const mine = unwrap(await seat.api.GET("/v1/rooms/{room_id}/state", { params: { path: { room_id: roomId } } }));
      if (mine.room.status === "finished") return;
      const { round, phase } = mine.room;
      if (phase === null) break;
      for (const option of mine.options) {
        const answer =
          option.pick > 0 ? { targets: option.targets.slice(0, option.pick) } : { choice: option.choices[0]! };
        const action = actionFor(option, answer, { round, phase, ...(mine.board ? { attempt: mine.board.attempt } : {}) });
        try {
          await performAction(seat.api, roomId, action);
        } catch (error) {
          if (!(error instanceof RoundtableError && error.status === 409)) throw error; // another closed the phase
        }
      }
    }
  }
  assert.fail("the game did not end");
}

test("a spectator watches a game and its rematch; rounds stay readable per game", { skip: !baseUrl }, async () => {
  const url = baseUrl as string;
  const anonymous = createRoundtableClient({ baseUrl: url });
  const host = unwrap(await anonymous.POST("/v1/rooms", { body: { name: "TS rematch", nickname: "Lead", ruleset: "missions" } }));
  const roomId = host.room.id;
  assert.equal(host.room.game, 0);
  const seats: Seat[] = [{ id: host.player.id, api: createRoundtableClient({ baseUrl: url, token: host.token }) }];
  for (const nickname of ["M2", "M3", "M4", "M5"]) {
    const joined = unwrap(
      await anonymous.POST("/v1/rooms/{room_id}/players", { params: { path: { room_id: roomId } }, body: { nickname } }),
    );
    seats.push({ id: joined.player.id, api: createRoundtableClient({ baseUrl: url, token: joined.token }) });
  }
  const hostApi = seats[0]!.api;

  const watching = await watchRoom(anonymous, roomId, { nickname: "Fan" });
  assert.equal(watching.room.id, roomId);
  assert.equal(watching.spectator.nickname, "Fan");
  const fan = createRoundtableClient({ baseUrl: url, token: watching.token });
  const state = unwrap(await fan.GET("/v1/rooms/{room_id}/state", { params: { path: { room_id: roomId } } }));
  assert.ok(isSpectatorState(state));
  assert.deepEqual(state.options, []);
  await assert.rejects(
    fan.POST("/v1/rooms/{room_id}/messages", { params: { path: { room_id: roomId } }, body: { text: "hi" } }).then(unwrap),
    refusedWith(403, "spectator"),
  );
  await assert.rejects(rematchGame(hostApi, roomId), refusedWith(409, "game_not_finished"));

  const snapshots: Snapshot[] = [];
  const seen: RoomEvent[] = [];
  const stream = openRoomStream({
    baseUrl: url,
    roomId,
    ticket: streamTicketSource(fan, roomId),
    EventSource,
    onSnapshot: (snapshot) => snapshots.push(snapshot),
    onEvent: (event) => seen.push(event),
  });
  try {
    await until("the spectator's snapshot", () => snapshots.length === 1);
    assert.equal(snapshots[0]!.data.me, null);
    unwrap(await hostApi.POST("/v1/rooms/{room_id}/start", { params: { path: { room_id: roomId } } }));
    await playToTheEnd(seats, roomId);
    await until("game.finished on the spectator's stream", () => seen.some((e) => e.type === "game.finished"));

    const second = await rematchGame(hostApi, roomId);
    assert.equal(second.game, 2);
    assert.equal(second.status, "in_progress");
    await until("the rematch's game.started", () =>
      seen.some((e) => e.type === "game.started" && startsNewGame(e, 1)),
    );
    const types = new Set(seen.map((e) => e.type));
    for (const hidden of ["role.assigned", "options.changed", "mission.chosen"]) {
      assert.ok(!types.has(hidden as RoomEvent["type"]), `a spectator never sees ${hidden}`);
    }

    const first = await listRounds(fan, roomId, { game: 1 });
    assert.equal(first.game, 1);
    assert.ok(first.rounds.length >= 3, "a missions game has three missions at least");
    assert.equal((await listRounds(hostApi, roomId)).game, 2);
    await assert.rejects(listRounds(hostApi, roomId, { game: 3 }), refusedWith(404, "game_not_found"));
  } finally {
    stream.close();
  }
});

test("two quick joins of a ruleset land in the fullest lobby with room", { skip: !baseUrl }, async () => {
  const url = baseUrl as string;
  const anonymous = createRoundtableClient({ baseUrl: url });
  const tag = Math.random().toString(36).slice(2, 8);
  // Other tests leave public mafia lobbies on this server: an 18-of-20 lobby is fuller than
  // any of them, so both quick joins must take its last two seats.
  const body = { name: `TS quick ${tag}`, nickname: `H${tag}`, ruleset: "mafia" as const, settings: { max_players: 20 } };
  const fullest = unwrap(await anonymous.POST("/v1/rooms", { body }));
  for (let i = 2; i <= 18; i++) {
    unwrap(
      await anonymous.POST("/v1/rooms/{room_id}/players", {
        params: { path: { room_id: fullest.room.id } },
        body: { nickname: `P${i}${tag}` },
      }),
    );
  }
  const first = await quickJoin(anonymous, { ruleset: "mafia", nickname: `Q${tag}` });
  const second = await quickJoin(anonymous, { ruleset: "mafia", nickname: `R${tag}` });
  assert.equal(first.room.ruleset, "mafia");
  assert.equal(first.room.id, fullest.room.id);
  assert.equal(second.room.id, fullest.room.id);
  const api = createRoundtableClient({ baseUrl: url, token: second.token });
  const state = unwrap(await api.GET("/v1/rooms/{room_id}/state", { params: { path: { room_id: second.room.id } } }));
  assert.equal(state.room.status, "lobby");
  assert.equal(state.me?.id, second.player.id);
  const ids = state.players.map((p) => p.id);
  assert.ok(ids.includes(first.player.id) && ids.includes(second.player.id));
});
