// The client against a live server (ROUNDTABLE_URL): create, join, stream, chat, resume; all typed.
import assert from "node:assert/strict";
import { test } from "node:test";

import { EventSource } from "eventsource";

import {
  type EventSourceConstructor,
  type RoomEvent,
  type RoomEventOf,
  type RoomSession,
  type Snapshot,
  RoundtableError,
  createRoundtableClient,
  openRoomStream,
  streamTicketSource,
  unwrap,
} from "../src/index.js";

const baseUrl = process.env.ROUNDTABLE_URL;

/** Wait until `predicate()` holds, or fail after `ms`. */
async function until(what: string, predicate: () => boolean, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!predicate()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** The `eventsource` package, keeping every connection's URL so the test can see resumes and cut them. */
function recordingEventSource(): { Impl: EventSourceConstructor; opened: EventSource[] } {
  const opened: EventSource[] = [];
  class Recording extends EventSource {
    constructor(url: string) {
      super(url);
      opened.push(this);
    }
  }
  return { Impl: Recording, opened };
}

test("create, join, stream the snapshot and events, chat, resume after a cut", { skip: !baseUrl }, async () => {
  const url = baseUrl as string;
  const anonymous = createRoundtableClient({ baseUrl: url });

  const created = await anonymous.POST("/v1/rooms", {
    body: { name: "TS night", nickname: "Ada", ruleset: "mafia", settings: { max_players: 6 } },
  });
  assert.equal(created.response.status, 201);
  const host: RoomSession = unwrap(created);
  assert.equal(host.room.status, "lobby");
  assert.equal(host.room.settings.max_players, 6);
  assert.ok(host.player.is_host);
  const roomId = host.room.id;

  // The host's stream opens with a snapshot, then delivers what happens next.
  const { Impl, opened } = recordingEventSource();
  const snapshots: Snapshot[] = [];
  const events: RoomEvent[] = [];
  const joins: RoomEventOf<"player.joined">[] = [];
  const chats: string[] = [];
  // Each connection with a fresh single-use ticket: the token never goes into a URL.
  const hostClient = createRoundtableClient({ baseUrl: url, token: host.token });
  const stream = openRoomStream({
    baseUrl: url,
    roomId,
    ticket: streamTicketSource(hostClient, roomId),
    EventSource: Impl,
    retryMs: 50,
    onSnapshot: (snapshot) => snapshots.push(snapshot),
    onEvent: (event) => {
      events.push(event);
      if (event.type === "chat.message") chats.push(`${event.data.channel}:${event.data.text}`);
    },
    on: { "player.joined": (event) => joins.push(event) },
  });
  try {
    await until("the snapshot", () => snapshots.length === 1);
    const state = snapshots[0]!.data;
    assert.equal(state.room.id, roomId);
    assert.deepEqual(
      state.players.map((p) => p.nickname),
      ["Ada"],
    );
    assert.equal(state.me?.id, host.player.id);
    assert.equal(stream.lastSeq(), state.last_seq);

    // A second player joins: the host sees `player.joined`.
    const joined = unwrap(
      await anonymous.POST("/v1/rooms/{room_id}/players", {
        params: { path: { room_id: roomId } },
        body: { nickname: "Grace" },
      }),
    );
    assert.equal(joined.player.seat, 2);
    await until("Grace's player.joined", () => joins.some((e) => e.data.player.id === joined.player.id));

    // Problems come back typed, and as exceptions through unwrap().
    const taken = await anonymous.POST("/v1/rooms/{room_id}/players", {
      params: { path: { room_id: roomId } },
      body: { nickname: "ada" },
    });
    assert.equal(taken.response.status, 409);
    assert.equal(taken.error?.code, "nickname_taken");
    assert.throws(() => unwrap(taken), (error: unknown) => error instanceof RoundtableError && error.code === "nickname_taken");

    // Grace chats (bearer token from the client's middleware); the host's stream carries it.
    const grace = createRoundtableClient({ baseUrl: url, token: joined.token });
    const said = unwrap(
      await grace.POST("/v1/rooms/{room_id}/messages", {
        params: { path: { room_id: roomId } },
        body: { text: "hello from TypeScript" },
      }),
    );
    assert.equal(said.channel, "room");
    await until("the chat message", () => stream.lastSeq() === said.seq);
    assert.deepEqual(chats, ["room:hello from TypeScript"]);

    // Cut the connection: the helper reopens with ?after=<last seq> and loses or repeats nothing.
    assert.equal(opened.length, 1);
    const cut = opened[0]!;
    cut.dispatchEvent(new Event("error"));
    await until("the reconnection", () => opened.length === 2);
    assert.equal(new URL(opened[1]!.url).searchParams.get("after"), String(said.seq));
    const tickets = opened.map((source) => new URL(source.url).searchParams.get("ticket"));
    assert.ok(tickets[0] && tickets[1] && tickets[0] !== tickets[1], "a new ticket for each connection");
    assert.ok(opened.every((source) => !source.url.includes(host.token)), "the token is in no URL");
    const again = unwrap(
      await grace.POST("/v1/rooms/{room_id}/messages", {
        params: { path: { room_id: roomId } },
        body: { text: "still there?" },
      }),
    );
    await until("the chat after the cut", () => stream.lastSeq() === again.seq);
    assert.deepEqual(chats, ["room:hello from TypeScript", "room:still there?"]);
    assert.equal(snapshots.length, 1, "a resumed stream has no second snapshot");
    const seqs = events.map((e) => e.seq);
    assert.deepEqual(seqs, [...new Set(seqs)].sort((a, b) => a - b), "each event once, in order");

    // The state call agrees with what the stream said.
    const view = unwrap(await grace.GET("/v1/rooms/{room_id}/state", { params: { path: { room_id: roomId } } }));
    assert.deepEqual(
      view.players.map((p) => p.nickname),
      ["Ada", "Grace"],
    );
    assert.equal(view.last_seq, again.seq);
  } finally {
    stream.close();
  }

  // Replaying from the start (after=0): every event, the host's own player.joined first, no snapshot.
  const replayed: RoomEvent[] = [];
  let replaySnapshot = false;
  const replay = openRoomStream({
    baseUrl: url,
    roomId,
    token: host.token,
    after: 0,
    EventSource,
    onSnapshot: () => {
      replaySnapshot = true;
    },
    onEvent: (event) => replayed.push(event),
  });
  try {
    await until("the replay", () => replayed.at(-1)?.seq === stream.lastSeq());
  } finally {
    replay.close();
  }
  assert.equal(replaySnapshot, false);
  const joinedNames = replayed.flatMap((e) => (e.type === "player.joined" ? [e.data.player.nickname] : []));
  assert.deepEqual(joinedNames, ["Ada", "Grace"]);
  const replayedSeqs = replayed.map((e) => e.seq);
  assert.deepEqual(replayedSeqs, [...new Set(replayedSeqs)].sort((a, b) => a - b), "in order, once each");
  assert.equal(replayedSeqs[0], 1);
  for (const seq of events.map((e) => e.seq)) assert.ok(replayedSeqs.includes(seq), `seq ${seq} replayed`);
});

test("a refused ticket request stops the stream with a fatal error", { skip: !baseUrl }, async () => {
  const url = baseUrl as string;
  const host = unwrap(
    await createRoundtableClient({ baseUrl: url }).POST("/v1/rooms", {
      body: { name: "Refused ticket", nickname: "Eve", ruleset: "mafia" },
    }),
  );
  const errors: { status?: number; fatal: boolean }[] = [];
  const stranger = createRoundtableClient({ baseUrl: url, token: "not-a-token" });
  const stream = openRoomStream({
    baseUrl: url,
    roomId: host.room.id,
    ticket: streamTicketSource(stranger, host.room.id),
    EventSource,
    onEvent: () => assert.fail("no event without a ticket"),
    onError: (error) => errors.push(error),
  });
  try {
    await until("the fatal error", () => errors.some((e) => e.fatal));
  } finally {
    stream.close();
  }
  assert.equal(errors.length, 1);
  assert.equal(errors[0]?.status, 401);
});

test("a refused token stops the stream with a fatal error", { skip: !baseUrl }, async () => {
  const url = baseUrl as string;
  const host = unwrap(
    await createRoundtableClient({ baseUrl: url }).POST("/v1/rooms", {
      body: { name: "Refused", nickname: "Eve", ruleset: "mafia" },
    }),
  );
  const errors: { status?: number; fatal: boolean }[] = [];
  const stream = openRoomStream({
    baseUrl: url,
    roomId: host.room.id,
    token: "not-a-token",
    EventSource,
    onEvent: () => assert.fail("no event with a bad token"),
    onError: (error) => errors.push(error),
  });
  try {
    await until("the fatal error", () => errors.some((e) => e.fatal));
  } finally {
    stream.close();
  }
  assert.equal(errors.at(-1)?.status, 401);
});
