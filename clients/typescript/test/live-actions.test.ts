// Acting from options against a live server (ROUNDTABLE_URL): the state's options, performAction,
// and options.changed on the player's own stream. The test never decides who may act: it reads it.
import assert from "node:assert/strict";
import { test } from "node:test";

import { EventSource } from "eventsource";

import {
  type Option,
  type RoomEvent,
  type RoomSession,
  type RoundtableClient,
  RoundtableError,
  actionFor,
  createRoundtableClient,
  openRoomStream,
  performAction,
  streamTicketSource,
  unwrap,
} from "../src/index.js";

const baseUrl = process.env.ROUNDTABLE_URL;

async function until(what: string, predicate: () => boolean, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!predicate()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

interface Seat {
  session: RoomSession;
  api: RoundtableClient;
}

async function options(seat: Seat): Promise<{ options: Option[]; round: number; phase: string | null }> {
  const state = unwrap(
    await seat.api.GET("/v1/rooms/{room_id}/state", { params: { path: { room_id: seat.session.room.id } } }),
  );
  return { options: state.options, round: state.room.round, phase: state.room.phase };
}

test("a mafia game is played from options through performAction", { skip: !baseUrl }, async () => {
  const url = baseUrl as string;
  const anonymous = createRoundtableClient({ baseUrl: url });
  const host = unwrap(
    await anonymous.POST("/v1/rooms", {
      body: { name: "TS actions", nickname: "Host", ruleset: "mafia", settings: { night_seconds: 600, day_seconds: 600 } },
    }),
  );
  const roomId = host.room.id;
  const seats: Seat[] = [{ session: host, api: createRoundtableClient({ baseUrl: url, token: host.token }) }];
  for (const nickname of ["P2", "P3", "P4"]) {
    const joined = unwrap(
      await anonymous.POST("/v1/rooms/{room_id}/players", { params: { path: { room_id: roomId } }, body: { nickname } }),
    );
    seats.push({ session: joined, api: createRoundtableClient({ baseUrl: url, token: joined.token }) });
  }
  const hostSeat = seats[0]!;
  assert.deepEqual((await options(hostSeat)).options, [], "nothing to do in the lobby");

  const mine: RoomEvent[] = [];
  const stream = openRoomStream({
    baseUrl: url,
    roomId,
    ticket: streamTicketSource(hostSeat.api, roomId),
    EventSource,
    onEvent: (event) => mine.push(event),
  });
  try {
    await until("the host's stream", () => stream.lastSeq() !== null);
    unwrap(await hostSeat.api.POST("/v1/rooms/{room_id}/start", { params: { path: { room_id: roomId } } }));

    // Night: whoever the state offers an option acts on it, sparing the host so it lives to vote.
    let acted = 0;
    let closed = false;
    for (const seat of seats) {
      const now = await options(seat);
      if (now.phase !== "night") break; // the last awaited action closed it
      for (const option of now.options) {
        assert.equal(option.type, "vote");
        assert.equal(option.pick, 1);
        const target = option.targets.find((id) => id !== host.player.id) ?? option.targets[0]!;
        const action = actionFor(option, { targets: [target] }, { round: now.round, phase: "night" });
        const key = `night-${seat.session.player.id}`;
        const accepted = await performAction(seat.api, roomId, action, { idempotencyKey: key });
        assert.equal(accepted.type, "vote");
        assert.equal(accepted.phase, "night");
        // The same key again: the first answer, not a second action.
        assert.deepEqual(await performAction(seat.api, roomId, action, { idempotencyKey: key }), accepted);
        acted += 1;
        closed ||= accepted.phase_closed;
      }
    }
    assert.ok(acted >= 1, "the mafia at least had a night option");
    assert.ok(closed, "the last awaited night action closed the night");

    // Day: nobody has an option; an action anyway is refused with a stable code.
    const day = await options(hostSeat);
    assert.equal(day.phase, "day");
    assert.deepEqual(day.options, []);
    await assert.rejects(
      performAction(hostSeat.api, roomId, { type: "vote", target_player_id: null }),
      (error: unknown) => error instanceof RoundtableError && error.status >= 400 && error.status < 500,
    );
    unwrap(
      await hostSeat.api.POST("/v1/rooms/{room_id}/advance", {
        params: { path: { room_id: roomId } },
        body: { round: 1, phase: "day" },
      }),
    );

    // Vote: the host's stream tells it its new option, the same the state lists.
    await until("the host's options.changed for the vote", () =>
      mine.some((e) => e.type === "options.changed" && e.data.options.some((o) => o.vote_action === "eliminate")),
    );
    const changed = mine.filter((e) => e.type === "options.changed");
    assert.ok(changed.every((e) => e.type === "options.changed" && e.data.player_id === host.player.id), "private");
    const vote = await options(hostSeat);
    assert.equal(vote.phase, "vote");
    const last = changed.at(-1);
    assert.ok(last?.type === "options.changed");
    assert.deepEqual(last.data.options, vote.options);
    const option = vote.options[0]!;
    assert.ok(option.abstain);
    const abstained = await performAction(hostSeat.api, roomId, actionFor(option, { abstain: true }, { round: 1, phase: "vote" }));
    assert.equal(abstained.phase, "vote");
    await until("the host's vote.cast", () => mine.some((e) => e.seq === abstained.seq && e.type === "vote.cast"));
  } finally {
    stream.close();
  }
});

test("a missions game is played to its end from options alone", { skip: !baseUrl }, async () => {
  const url = baseUrl as string;
  const anonymous = createRoundtableClient({ baseUrl: url });
  const host = unwrap(
    await anonymous.POST("/v1/rooms", { body: { name: "TS missions", nickname: "Lead", ruleset: "missions" } }),
  );
  assert.equal(host.room.settings.ruleset, "missions");
  const roomId = host.room.id;
  const seats: Seat[] = [{ session: host, api: createRoundtableClient({ baseUrl: url, token: host.token }) }];
  for (const nickname of ["M2", "M3", "M4", "M5"]) {
    const joined = unwrap(
      await anonymous.POST("/v1/rooms/{room_id}/players", { params: { path: { room_id: roomId } }, body: { nickname } }),
    );
    seats.push({ session: joined, api: createRoundtableClient({ baseUrl: url, token: joined.token }) });
  }
  unwrap(await seats[0]!.api.POST("/v1/rooms/{room_id}/start", { params: { path: { room_id: roomId } } }));

  const types = new Set<string>();
  // Every pass acts on every option offered, so each pass moves the game on; it ends within five missions.
  for (let pass = 0; pass < 100; pass += 1) {
    const state = unwrap(await seats[0]!.api.GET("/v1/rooms/{room_id}/state", { params: { path: { room_id: roomId } } }));
    if (state.room.status === "finished") {
      assert.ok(state.room.winner === "crew" || state.room.winner === "spies");
      assert.ok(state.board, "the board stays readable at the end");
      assert.deepEqual([...types].sort(), ["approve", "mission", "propose"]);
      return;
    }
    for (const seat of seats) {
      const mine = unwrap(await seat.api.GET("/v1/rooms/{room_id}/state", { params: { path: { room_id: roomId } } }));
      const { round, phase } = mine.room;
      if (phase === null) break;
      for (const option of mine.options) {
        const answer =
          option.pick > 0 ? { targets: option.targets.slice(0, option.pick) } : { choice: option.choices[0]! };
        const action = actionFor(option, answer, { round, phase, ...(mine.board ? { attempt: mine.board.attempt } : {}) });
        try {
          await performAction(seat.api, roomId, action);
          types.add(option.type);
        } catch (error) {
          // Another seat's action closed the phase first.
          if (!(error instanceof RoundtableError && error.status === 409)) throw error;
        }
      }
    }
  }
  assert.fail("the game did not end");
});
