// openRoomStream's resume rules against a scripted EventSource: no server needed.
import assert from "node:assert/strict";
import { test } from "node:test";

import {
  type EventSourceLike,
  type MessageEventLike,
  type RoomEvent,
  RoundtableError,
  jittered,
  openRoomStream,
} from "../src/index.js";

class FakeEventSource implements EventSourceLike {
  static opened: FakeEventSource[] = [];
  readonly listeners = new Map<string, ((event: MessageEventLike) => void)[]>();
  closed = false;

  constructor(readonly url: string) {
    FakeEventSource.opened.push(this);
  }

  addEventListener(type: string, listener: (event: MessageEventLike) => void): void {
    this.listeners.set(type, [...(this.listeners.get(type) ?? []), listener]);
  }

  close(): void {
    this.closed = true;
  }

  emit(type: string, event: MessageEventLike & Record<string, unknown>): void {
    for (const listener of this.listeners.get(type) ?? []) listener(event);
  }

  chat(seq: number, text = `m${seq}`): void {
    const event: RoomEvent = {
      seq,
      room_id: "r",
      type: "chat.message",
      at: "2026-01-01T00:00:00Z",
      data: { player_id: "p", text, channel: "room" },
    };
    this.emit("chat.message", { data: JSON.stringify(event) });
  }

  after(): string | null {
    return new URL(this.url, "http://x").searchParams.get("after");
  }
}

const tick = (ms = 5): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

test("resumes after the last seq on any error, and delivers each event once", async () => {
  FakeEventSource.opened = [];
  const seen: number[] = [];
  const stream = openRoomStream({
    baseUrl: "http://h",
    roomId: "r",
    token: "t",
    EventSource: FakeEventSource,
    retryMs: 1,
    onEvent: (event) => seen.push(event.seq),
  });
  const first = FakeEventSource.opened[0]!;
  assert.equal(first.after(), null, "no resume point: the stream starts with a snapshot");
  assert.equal(new URL(first.url).searchParams.get("access_token"), "t");
  first.emit("snapshot", {
    data: JSON.stringify({ type: "snapshot", room_id: "r", data: { last_seq: 4 } }),
  });
  assert.equal(stream.lastSeq(), 4);
  first.chat(5);
  first.chat(6);
  first.emit("error", {}); // the server ended the stream, or the network dropped
  assert.ok(first.closed, "the helper, not EventSource, reconnects");
  await tick();
  const second = FakeEventSource.opened[1]!;
  assert.equal(second.after(), "6");
  second.chat(6); // a duplicate across the reconnection is dropped
  second.chat(8); // seq 7 was not ours to see
  first.chat(9); // a replaced connection is ignored
  assert.deepEqual(seen, [5, 6, 8]);
  assert.equal(stream.lastSeq(), 8);
  stream.close();
  assert.ok(second.closed);
});

test("starts from `after` without a snapshot, dispatches per type, stops on a refused token", async () => {
  FakeEventSource.opened = [];
  const texts: string[] = [];
  const errors: { status?: number; fatal: boolean }[] = [];
  const stream = openRoomStream({
    baseUrl: "",
    roomId: "r",
    token: "t",
    after: 10,
    EventSource: FakeEventSource,
    retryMs: 1,
    on: { "chat.message": (event) => texts.push(event.data.text) },
    onError: (error) => errors.push(error),
  });
  const first = FakeEventSource.opened[0]!;
  assert.equal(first.url, "/v1/rooms/r/events?access_token=t&after=10");
  first.chat(10, "old");
  first.chat(11, "new");
  assert.deepEqual(texts, ["new"]);
  first.emit("error", { code: 401, message: "Unauthorized" });
  await tick(20);
  assert.equal(FakeEventSource.opened.length, 1, "no retry after a 401");
  assert.deepEqual(errors, [{ status: 401, message: "Unauthorized", fatal: true }]);
  stream.close();
});

test("opens each connection with a fresh ticket and never the token", async () => {
  FakeEventSource.opened = [];
  let asked = 0;
  const stream = openRoomStream({
    baseUrl: "http://h",
    roomId: "r",
    ticket: async () => `k${++asked}`,
    EventSource: FakeEventSource,
    retryMs: 1,
    onEvent: () => undefined,
  });
  await tick();
  const first = FakeEventSource.opened[0]!;
  assert.equal(first.url, "http://h/v1/rooms/r/events?ticket=k1");
  first.chat(3);
  first.emit("error", {});
  await tick(20);
  assert.equal(FakeEventSource.opened[1]!.url, "http://h/v1/rooms/r/events?ticket=k2&after=3");
  stream.close();
});

test("a refused ticket request is fatal; a failed one is retried", async () => {
  FakeEventSource.opened = [];
  const errors: { status?: number; fatal: boolean }[] = [];
  let calls = 0;
  const stream = openRoomStream({
    baseUrl: "",
    roomId: "r",
    ticket: async () => {
      calls += 1;
      if (calls === 1) throw new TypeError("fetch failed");
      throw new RoundtableError(401, undefined, "Unauthorized");
    },
    EventSource: FakeEventSource,
    retryMs: 1,
    onEvent: () => undefined,
    onError: (error) => errors.push({ ...(error.status !== undefined ? { status: error.status } : {}), fatal: error.fatal }),
  });
  await tick(30);
  assert.deepEqual(errors, [{ fatal: false }, { status: 401, fatal: true }]);
  assert.equal(FakeEventSource.opened.length, 0);
  await tick(20);
  assert.equal(calls, 2, "no retry after a 401");
  stream.close();
});

test("close() cancels a pending reconnection", async () => {
  FakeEventSource.opened = [];
  const stream = openRoomStream({
    baseUrl: "http://h",
    roomId: "r",
    token: "t",
    EventSource: FakeEventSource,
    retryMs: 5,
    onEvent: () => undefined,
  });
  FakeEventSource.opened[0]!.emit("error", {});
  stream.close();
  await tick(30);
  assert.equal(FakeEventSource.opened.length, 1);
});

test("reconnections wait between half and all of the backoff, at random", () => {
  assert.equal(jittered(1000, () => 0), 500);
  assert.equal(jittered(1000, () => 0.5), 750);
  assert.ok(jittered(1000, () => 0.999999) <= 1000);
  const waits = Array.from({ length: 200 }, () => jittered(800));
  assert.ok(waits.every((wait) => wait >= 400 && wait <= 800));
  assert.ok(new Set(waits).size > 100, "spread out, not in lockstep");
});

test("without an EventSource it says what to pass", () => {
  assert.throws(
    () => openRoomStream({ baseUrl: "", roomId: "r", token: "t", onEvent: () => undefined }),
    /eventsource/,
  );
});
