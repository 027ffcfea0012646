// A room's event stream over EventSource that resumes by seq and hands each event over once, typed.
import type { RoomEvent, Snapshot } from "./generated/events.js";
import { ROOM_EVENT_TYPES } from "./generated/events.js";
import { RoundtableError, unwrap, type RoundtableClient } from "./client.js";
import { dispatchRoomEvent, type RoomEventHandlers } from "./events.js";

/** The part of an EventSource message this helper reads. */
export interface MessageEventLike {
  readonly data?: unknown;
}

/** What this helper needs of an EventSource: the browser's, or the `eventsource` package's in Node. */
export interface EventSourceLike {
  addEventListener(type: string, listener: (event: MessageEventLike) => void): void;
  close(): void;
}

/** An EventSource constructor, such as `globalThis.EventSource` or `import { EventSource } from "eventsource"`. */
export type EventSourceConstructor = new (url: string) => EventSourceLike;

/** Why a stream stopped or paused. */
export interface RoomStreamError {
  /** The HTTP status when the EventSource implementation reports it (the `eventsource` package does). */
  status?: number;
  message: string;
  /** True when the helper gave up (the token is refused or the room is gone); false while it retries. */
  fatal: boolean;
}

export interface RoomStreamOptions {
  /** The server, such as `http://127.0.0.1:8000` (or `""` for the page's own origin). */
  baseUrl: string;
  roomId: string;
  /**
   * Asked before every connection (reconnections included) for a fresh single-use stream
   * ticket, sent as `?ticket=`: the bearer token then never appears in a URL. Use
   * `streamTicketSource(client, roomId)`. Give this or `token`.
   */
  ticket?: () => Promise<string>;
  /**
   * The player's token, sent as `?access_token=` (EventSource cannot send headers). Kept for
   * compatibility: prefer `ticket`, which keeps the token out of URLs, logs and history.
   */
  token?: string;
  /** Resume after this seq (replay, no snapshot). Left out, the stream opens with a snapshot. */
  after?: number;
  /** Every event, once, in seq order. */
  onEvent?: (event: RoomEvent) => void;
  /** Or a handler per type, each typed by it (called after `onEvent`). */
  on?: RoomEventHandlers;
  /** The caller's state, when the stream opens without a resume point. */
  onSnapshot?: (snapshot: Snapshot) => void;
  /** Each time a connection opens (the first one and every reconnection). */
  onOpen?: () => void;
  /** Each time a connection fails; `fatal` when the helper stops trying. */
  onError?: (error: RoomStreamError) => void;
  /** The EventSource to use; the global one by default (browsers have it, Node 20 does not). */
  EventSource?: EventSourceConstructor;
  /**
   * First reconnection delay in ms (doubles on each failure in a row, up to `maxRetryMs`); each
   * wait is a random part of it, between half and all (see `jittered`). Default 500.
   */
  retryMs?: number;
  /** Default 15000. */
  maxRetryMs?: number;
}

export interface RoomStream {
  /** Stop for good: close the connection and cancel any pending reconnection. */
  close(): void;
  /** The seq the stream resumes after: the last event's seq, or the snapshot's `last_seq`; null before either. */
  lastSeq(): number | null;
}

// Statuses that no retry will fix.
const FATAL_STATUSES = new Set([400, 401, 403, 404, 410, 422]);

/**
 * Return between half of `delay` and all of it, at random: the clients of a server that went
 * away (a restart, a crash) do not all come back at the same instant.
 */
export function jittered(delay: number, random: () => number = Math.random): number {
  return delay / 2 + (delay / 2) * random();
}

/** Build the events URL: `?access_token=` always, `?after=` when resuming. */
export function roomEventsUrl(baseUrl: string, roomId: string, token: string, after: number | null): string {
  const query = new URLSearchParams({ access_token: token });
  if (after !== null) query.set("after", String(after));
  return `${baseUrl.replace(/\/+$/, "")}/v1/rooms/${encodeURIComponent(roomId)}/events?${query.toString()}`;
}

/** Build the events URL with a stream ticket: `?ticket=` always, `?after=` when resuming. */
export function roomEventsTicketUrl(baseUrl: string, roomId: string, ticket: string, after: number | null): string {
  return streamUrl(baseUrl, roomId, "events", ticket, after);
}

/** Build the WebSocket URL (`ws:`/`wss:`) with a stream ticket, and `?after=` when resuming. */
export function roomSocketUrl(baseUrl: string, roomId: string, ticket: string, after: number | null): string {
  const base = baseUrl || (globalThis as { location?: { origin?: string } }).location?.origin || "";
  return streamUrl(base.replace(/^http/, "ws"), roomId, "ws", ticket, after);
}

function streamUrl(baseUrl: string, roomId: string, kind: string, ticket: string, after: number | null): string {
  const query = new URLSearchParams({ ticket });
  if (after !== null) query.set("after", String(after));
  return `${baseUrl.replace(/\/+$/, "")}/v1/rooms/${encodeURIComponent(roomId)}/${kind}?${query.toString()}`;
}

/**
 * Return a function that asks the server for a fresh single-use stream ticket of the room
 * (`POST /v1/rooms/{room_id}/stream-tickets`, with `client`'s bearer token) each time it is
 * called: pass it as `openRoomStream`'s `ticket`. It rejects with a `RoundtableError`.
 */
export function streamTicketSource(client: RoundtableClient, roomId: string): () => Promise<string> {
  return async () => {
    const issued = unwrap(
      await client.POST("/v1/rooms/{room_id}/stream-tickets", { params: { path: { room_id: roomId } } }),
    );
    return issued.ticket;
  };
}

/** What this helper needs of a WebSocket constructor: the browser's, or the `ws` package's in Node. */
export type WebSocketConstructor<T> = new (url: string) => T;

/**
 * Open the room's WebSocket with a fresh stream ticket (never the token in the URL); resume
 * after `after` when given. Pass `WebSocket` where there is no global one (Node 20).
 */
export async function openRoomSocket<T = WebSocket>(options: {
  client: RoundtableClient;
  baseUrl: string;
  roomId: string;
  after?: number;
  WebSocket?: WebSocketConstructor<T>;
}): Promise<T> {
  const found = options.WebSocket ?? (globalThis as unknown as { WebSocket?: WebSocketConstructor<T> }).WebSocket;
  if (!found) throw new Error("openRoomSocket: no WebSocket here; pass one (in Node 20: the `ws` package)");
  const ticket = await streamTicketSource(options.client, options.roomId)();
  return new found(roomSocketUrl(options.baseUrl, options.roomId, ticket, options.after ?? null));
}

function statusOf(event: unknown): number | undefined {
  if (event instanceof RoundtableError) return event.status;
  const code = (event as { code?: unknown } | null)?.code;
  return typeof code === "number" ? code : undefined;
}

/**
 * Open a room's event stream. The helper tracks the last seq seen; on any error or end of
 * the connection it reopens with `?after=<last seq>` (and a fresh ticket), so every event
 * arrives exactly once and in order across reconnections. Events arrive typed: switch on `event.type`, or pass `on`.
 */
export function openRoomStream(options: RoomStreamOptions): RoomStream {
  const found = options.EventSource ?? (globalThis as { EventSource?: EventSourceConstructor }).EventSource;
  if (!found) {
    throw new Error("openRoomStream: no EventSource here; pass one (in Node: the `eventsource` package)");
  }
  const EventSourceImpl: EventSourceConstructor = found;
  const { ticket, token } = options;
  if (!ticket && !token) throw new Error("openRoomStream: pass `ticket` (or `token`)");
  const firstRetry = options.retryMs ?? 500;
  const maxRetry = options.maxRetryMs ?? 15_000;

  let last: number | null = options.after ?? null;
  let source: EventSourceLike | null = null;
  let timer: ReturnType<typeof setTimeout> | null = null;
  let closed = false;
  let failures = 0;

  const onEventMessage = (message: MessageEventLike): void => {
    const event = parse<RoomEvent>(message);
    if (!event || typeof event.seq !== "number") return;
    if (last !== null && event.seq <= last) return; // already delivered before a reconnection
    last = event.seq;
    failures = 0;
    options.onEvent?.(event);
    if (options.on) dispatchRoomEvent(event, options.on);
  };

  const onSnapshotMessage = (message: MessageEventLike): void => {
    const snapshot = parse<Snapshot>(message);
    if (!snapshot) return;
    last = Math.max(last ?? 0, snapshot.data.last_seq);
    failures = 0;
    options.onSnapshot?.(snapshot);
  };

  function parse<T>(message: MessageEventLike): T | null {
    if (typeof message.data !== "string") return null;
    try {
      return JSON.parse(message.data) as T;
    } catch {
      options.onError?.({ message: `unreadable event: ${message.data.slice(0, 200)}`, fatal: false });
      return null;
    }
  }

  // Each attempt, so a ticket that arrives after close() or after a newer attempt opens nothing.
  let attempt = 0;

  function connect(): void {
    timer = null;
    if (closed) return;
    if (!ticket) {
      open(roomEventsUrl(options.baseUrl, options.roomId, token as string, last));
      return;
    }
    const mine = ++attempt;
    ticket().then(
      (issued) => {
        if (!closed && mine === attempt) open(roomEventsTicketUrl(options.baseUrl, options.roomId, issued, last));
      },
      (error: unknown) => {
        if (closed || mine !== attempt) return;
        const message = error instanceof Error ? error.message : String(error);
        failed(statusOf(error), `no stream ticket: ${message}`);
      },
    );
  }

  /** Report a failed connection; retry later unless no retry will fix it. */
  function failed(status: number | undefined, message: string): void {
    const fatal = status !== undefined && FATAL_STATUSES.has(status);
    options.onError?.({ ...(status !== undefined ? { status } : {}), message, fatal });
    if (fatal) {
      closed = true;
      return;
    }
    const delay = jittered(Math.min(maxRetry, firstRetry * 2 ** failures));
    failures += 1;
    timer = setTimeout(connect, delay);
  }

  function open(url: string): void {
    const current = new EventSourceImpl(url);
    source = current;
    // Only the live connection speaks: a replaced one may still have a message in flight.
    const onEvent = (message: MessageEventLike): void => {
      if (source === current) onEventMessage(message);
    };
    for (const type of ROOM_EVENT_TYPES) current.addEventListener(type, onEvent);
    current.addEventListener("snapshot", (message) => {
      if (source === current) onSnapshotMessage(message);
    });
    current.addEventListener("open", () => {
      if (source === current) options.onOpen?.();
    });
    current.addEventListener("error", (event) => {
      if (source !== current) return; // a connection already replaced
      // Take reconnection over from EventSource, so the new URL carries `after=<last seq>`.
      current.close();
      source = null;
      if (closed) return;
      const message = (event as { message?: unknown }).message;
      failed(statusOf(event), typeof message === "string" && message ? message : "connection lost");
    });
  }

  connect();

  return {
    close() {
      closed = true;
      attempt += 1;
      if (timer !== null) clearTimeout(timer);
      timer = null;
      source?.close();
      source = null;
    },
    lastSeq: () => last,
  };
}
