// A bot written against the installed @roundtable/client, as someone outside this repository
// would: create a room, join it, stream the host's events, act from options only, and meet a
// refused action as a RoundtableError. Run with plain `node` on tsc's output; the server is
// ROUNDTABLE_URL. It prints one JSON line that the test reads.
import { EventSource } from "eventsource";

import {
  actionFor,
  createRoundtableClient,
  openRoomStream,
  performAction,
  RoundtableError,
  streamTicketSource,
  unwrap,
  type Phase,
  type RoomEvent,
  type RoomSession,
  type RoundtableClient,
  type Snapshot,
} from "@roundtable/client";

const baseUrl = process.env.ROUNDTABLE_URL;
if (!baseUrl) throw new Error("set ROUNDTABLE_URL");

async function until(what: string, predicate: () => boolean, ms = 15_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

interface Seat {
  session: RoomSession;
  api: RoundtableClient;
}

const anonymous = createRoundtableClient({ baseUrl });
const host = unwrap(
  await anonymous.POST("/v1/rooms", {
    body: { name: "Packaged", nickname: "Host", ruleset: "mafia", settings: { night_seconds: 600, day_seconds: 600 } },
  }),
);
const roomId = host.room.id;
const seats: Seat[] = [{ session: host, api: createRoundtableClient({ baseUrl, token: host.token }) }];
const hostApi = seats[0]!.api;

const events: RoomEvent[] = [];
const joined: string[] = [];
const phases: Phase[] = [];
let snapshot: Snapshot | null = null;
const stream = openRoomStream({
  baseUrl,
  roomId,
  ticket: streamTicketSource(hostApi, roomId),
  EventSource,
  onSnapshot: (first) => {
    snapshot = first;
  },
  onEvent: (event) => events.push(event),
  // One handler per type, each narrowed by it: `data.player` exists on player.joined alone.
  on: {
    "player.joined": (event) => joined.push(event.data.player.nickname),
    "phase.started": (event) => phases.push(event.data.phase),
  },
});

try {
  await until("the snapshot", () => snapshot !== null);
  for (const nickname of ["Bea", "Cy", "Dee"]) {
    const session = unwrap(
      await anonymous.POST("/v1/rooms/{room_id}/players", { params: { path: { room_id: roomId } }, body: { nickname } }),
    );
    seats.push({ session, api: createRoundtableClient({ baseUrl, token: session.token }) });
  }
  unwrap(await hostApi.POST("/v1/rooms/{room_id}/start", { params: { path: { room_id: roomId } } }));

  // Night: every seat does what its options offer, and nothing else, until the night closes.
  let lastSeq = 0;
  let night: { round: number; phase: Phase } | null = null;
  for (const seat of seats) {
    const state = unwrap(
      await seat.api.GET("/v1/rooms/{room_id}/state", { params: { path: { room_id: roomId } } }),
    );
    if (state.room.phase !== "night") break;
    night = { round: state.room.round, phase: state.room.phase };
    for (const option of state.options) {
      const target = option.targets.find((id) => id !== host.player.id) ?? option.targets[0];
      if (target === undefined) continue;
      const accepted = await performAction(seat.api, roomId, actionFor(option, { targets: [target] }, night), {
        idempotencyKey: crypto.randomUUID(),
      });
      lastSeq = Math.max(lastSeq, accepted.seq);
    }
  }
  if (night === null) throw new Error("the game did not open on a night");
  const after = unwrap(await hostApi.GET("/v1/rooms/{room_id}/state", { params: { path: { room_id: roomId } } }));

  // A vote guarded by the night that is over: refused, with the problem's stable code.
  let refused: { name: string; status: number; code: string } | null = null;
  try {
    await performAction(hostApi, roomId, { type: "vote", target_player_id: null, ...night });
  } catch (error) {
    if (!(error instanceof RoundtableError)) throw error;
    refused = { name: error.name, status: error.status, code: error.code };
  }

  await until("the day on the stream", () => phases.includes("day") && (stream.lastSeq() ?? 0) >= lastSeq);
  console.log(
    JSON.stringify({
      phase: after.room.phase,
      joined,
      phases,
      types: events.map((event) => event.type),
      seqs: events.map((event) => event.seq),
      refused,
    }),
  );
} finally {
  stream.close();
}
