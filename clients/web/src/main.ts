// The page: create or join a room (mafia or missions), or quick play, then play it live over the
// room's SSE stream; or watch a room as a spectator (the same stream, public events only, no
// controls). When a game is over its host may play again: the rematch's game.started comes on the
// same stream and every page moves on to the new game without a reload.
//
// It acts only from the server's options (the state's, then each options.changed): every button
// is one of them, sent to POST /actions. No game rule is restated here or in model.ts.
//
// The seat ({roomId, token, lastSeq}) is kept in localStorage, with the room's history lines.
// A first visit opens the stream without a resume point: a snapshot, then events. A reload
// reads GET /state (the present) and reopens the stream after the saved lastSeq: the events
// it missed while reloading fill the history, and only those newer than the state move the
// model, so nothing is lost or applied twice.

import {
  actionFor,
  createRoundtableClient,
  openRoomStream,
  performAction,
  quickJoin,
  rematchGame,
  RoundtableError,
  startsNewGame,
  streamTicketSource,
  unwrap,
  watchRoom,
  type ActionRequest,
  type CreateRoomRequest,
  type Option,
  type Room,
  type RoomEvent,
  type RoomState,
  type RoomStream,
  type Snapshot,
} from "@roundtable/client";

import { byId, fill, h } from "./dom.js";
import {
  apply,
  describe,
  fromState,
  needsBoard,
  phaseKey,
  type Investigation,
  type LogLine,
  type Model,
  type Sent,
} from "./model.js";
import { appendLog, clearLog, invalidate, render, renderWatching, tick, type Answer } from "./view.js";

interface Seat {
  roomId: string;
  token: string;
  /** The seq the stream resumes after. */
  lastSeq: number;
  /** What this player sent in the open phase (a sealed vote is never streamed back). */
  sent?: Sent | null;
}

interface History {
  roomId: string;
  /** The seq of the newest event the lines cover. */
  through: number;
  lines: LogLine[];
}

const SEAT_KEY = "roundtable.session";
const HISTORY_KEY = "roundtable.history";
const MAX_LINES = 500;
const BASE_URL = window.location.origin;

let seat: Seat | null = null;
let model: Model | null = null;
let investigations: Investigation[] = [];
let history: History | null = null;
let stream: RoomStream | null = null;
// Whether this game's board was already read again (see resync), so a missing one is asked for once.
let boardAsked = false;

const api = createRoundtableClient({ baseUrl: BASE_URL, token: () => seat?.token });

// ---- storage ---------------------------------------------------------------------------

function read<T>(key: string): T | null {
  try {
    const raw = localStorage.getItem(key);
    return raw ? (JSON.parse(raw) as T) : null;
  } catch {
    return null;
  }
}

function save(): void {
  if (!seat) return;
  if (model) {
    // Resume after what both the model and the history have seen.
    seat.lastSeq = Math.min(model.lastSeq, history?.through ?? model.lastSeq);
    seat.sent = model.sent;
  }
  localStorage.setItem(SEAT_KEY, JSON.stringify(seat));
  if (history) {
    history.lines = history.lines.slice(-MAX_LINES);
    localStorage.setItem(HISTORY_KEY, JSON.stringify(history));
  }
}

function forget(): void {
  stream?.close();
  stream = null;
  seat = null;
  model = null;
  history = null;
  investigations = [];
  localStorage.removeItem(SEAT_KEY);
  localStorage.removeItem(HISTORY_KEY);
}

// ---- screens and messages ----------------------------------------------------------------

let errorTimer: ReturnType<typeof setTimeout> | undefined;

function showError(error: unknown): void {
  const el = byId("error");
  let text = error instanceof Error ? error.message : String(error);
  if (error instanceof RoundtableError) text = error.problem?.detail ?? error.problem?.title ?? error.message;
  el.textContent = text;
  el.dataset.code = error instanceof RoundtableError ? error.code : "";
  el.hidden = false;
  clearTimeout(errorTimer);
  errorTimer = setTimeout(() => {
    el.hidden = true;
  }, 6000);
}

function setConnection(state: "idle" | "connecting" | "live" | "reconnecting", text: string): void {
  const el = byId("connection");
  el.dataset.state = state;
  el.textContent = text;
}

function showHome(message?: string): void {
  byId("room").hidden = true;
  byId("home").hidden = false;
  setConnection("idle", "");
  if (message) showError(message);
  void listRooms().catch(() => undefined); // the forms work without the list
}

function showRoom(): void {
  byId("home").hidden = true;
  byId("room").hidden = false;
}

function redraw(): void {
  if (model) render(model, investigations, actions);
}

// ---- the room's stream -------------------------------------------------------------------

function addLines(lines: LogLine[]): void {
  if (!history || lines.length === 0) return;
  history.lines.push(...lines);
  appendLog(lines);
}

function onSnapshot(snapshot: Snapshot): void {
  if (!seat) return;
  model = fromState(snapshot.data, seat.sent ?? null);
  if (!history || history.roomId !== seat.roomId) history = { roomId: seat.roomId, through: 0, lines: [] };
  history.through = Math.max(history.through, snapshot.data.last_seq);
  save();
  redraw();
  void pollWatching().catch(() => undefined);
  void loadInvestigations();
}

function onEvent(event: RoomEvent): void {
  if (!model || !history) return;
  if (event.seq > history.through) {
    const line = describe(model, event);
    if (line) addLines([line]);
    history.through = event.seq;
  }
  if (event.seq > model.lastSeq) {
    if (event.type === "game.started") {
      boardAsked = false;
      if (startsNewGame(event, model.room.game)) investigations = []; // the last game's findings
    }
    apply(model, event);
    if (event.type === "night.result" && event.data.detective_id === model.meId) {
      const { round, target_player_id, team } = event.data;
      investigations.push({ round, target_player_id, team });
    }
  }
  save();
  redraw();
  if (model.removed) {
    forget();
    showHome("You are no longer in that room.");
    return;
  }
  if (needsBoard(model)) resync();
}

/**
 * Read the state again and resume the stream after it: a missions game that started after the
 * snapshot has a board (team sizes, the first leader) that no event carries whole.
 */
function resync(): void {
  if (!seat || boardAsked) return;
  boardAsked = true;
  stream?.close();
  stream = null;
  save();
  void resume(seat);
}

function openStream(after?: number): void {
  if (!seat) return;
  stream?.close();
  const current = seat;
  setConnection("connecting", "connecting…");
  stream = openRoomStream({
    baseUrl: BASE_URL,
    roomId: current.roomId,
    // A fresh single-use ticket for each connection: the token itself stays out of URLs.
    ticket: streamTicketSource(api, current.roomId),
    ...(after !== undefined ? { after } : {}),
    onSnapshot,
    onEvent,
    onOpen: () => setConnection("live", "live"),
    onError: (error) => {
      setConnection("reconnecting", error.fatal ? "disconnected" : "reconnecting…");
      // A browser's EventSource does not tell why it failed: ask whether the seat still exists.
      void checkSeat(current);
    },
  });
}

async function checkSeat(checked: Seat): Promise<void> {
  const result = await api.GET("/v1/rooms/{room_id}/state", { params: { path: { room_id: checked.roomId } } });
  if (seat === checked && [401, 403, 404].includes(result.response.status)) {
    forget();
    showHome("Your seat in that room is gone.");
  }
}

async function loadInvestigations(): Promise<void> {
  if (!seat || !model || model.room.status === "lobby" || model.meId === null) return;
  const loaded = model;
  const result = await api.GET("/v1/rooms/{room_id}/rounds", { params: { path: { room_id: seat.roomId } } });
  if (!result.data || model !== loaded) return;
  const found: Investigation[] = [];
  for (const round of result.data.rounds) {
    for (const phase of round.phases) {
      for (const found_ of phase.investigations) {
        if (found_.detective_id === loaded.meId) {
          found.push({ round: round.round, target_player_id: found_.target_player_id, team: found_.team });
        }
      }
    }
  }
  // Keep any result that arrived live meanwhile.
  const rounds = new Set(found.map((r) => r.round));
  investigations = [...found, ...investigations.filter((r) => !rounds.has(r.round))].sort((a, b) => a.round - b.round);
  redraw();
}

/** Enter a room just created or joined: the stream's snapshot draws it. */
function enter(roomId: string, token: string): void {
  forget();
  boardAsked = false;
  seat = { roomId, token, lastSeq: 0 };
  history = { roomId, through: 0, lines: [] };
  save();
  clearLog();
  renderWatching(null);
  showRoom();
  openStream();
}

/** Come back to the saved seat after a reload: the state now, then the events missed. */
async function resume(saved: Seat): Promise<void> {
  seat = saved;
  let state: RoomState;
  try {
    state = unwrap(await api.GET("/v1/rooms/{room_id}/state", { params: { path: { room_id: saved.roomId } } }));
  } catch (error) {
    if (error instanceof RoundtableError && [401, 403, 404].includes(error.status)) {
      forget();
      showHome("Your seat in that room is gone.");
      return;
    }
    showHome();
    showError(`Cannot reach the server (${String(error)}); retrying…`);
    setTimeout(() => void resume(saved), 2000);
    return;
  }
  if (seat !== saved) return;
  model = fromState(state, saved.sent ?? null);
  const kept = read<History>(HISTORY_KEY);
  history = kept && kept.roomId === saved.roomId ? kept : { roomId: saved.roomId, through: saved.lastSeq, lines: [] };
  clearLog();
  appendLog(history.lines);
  showRoom();
  redraw();
  void loadInvestigations();
  openStream(Math.min(saved.lastSeq, history.through, state.last_seq));
}

// ---- commands ----------------------------------------------------------------------------

async function run(command: () => Promise<unknown>): Promise<void> {
  try {
    await command();
  } catch (error) {
    showError(error);
    invalidate();
  } finally {
    redraw();
  }
}

const actions = {
  start(): void {
    if (!seat) return;
    const roomId = seat.roomId;
    void run(async () => unwrap(await api.POST("/v1/rooms/{room_id}/start", { params: { path: { room_id: roomId } } })));
  },
  rematch(): void {
    if (!seat) return;
    const roomId = seat.roomId;
    // The new game arrives on the stream (game.started) like any event: nothing to draw here.
    void run(async () => rematchGame(api, roomId));
  },
  advance(): void {
    if (!seat || !model?.room.phase) return;
    const roomId = seat.roomId;
    const body = { round: model.room.round, phase: model.room.phase };
    void run(async () =>
      unwrap(await api.POST("/v1/rooms/{room_id}/advance", { params: { path: { room_id: roomId } }, body })),
    );
  },
  act(option: Option, answer: Answer): void {
    if (!seat || !model?.room.phase) return;
    const roomId = seat.roomId;
    const key = phaseKey(model);
    // The guard: the server refuses the action with phase_closed if this phase is over by then.
    const guard = { round: model.room.round, phase: model.room.phase, ...(model.board ? { attempt: model.board.attempt } : {}) };
    let action: ActionRequest;
    try {
      action = actionFor(option, answer, guard);
    } catch (error) {
      showError(error);
      return;
    }
    void run(async () => {
      await performAction(api, roomId, action);
      if (model && phaseKey(model) === key) {
        model.sent = { key, action };
        save();
      }
    });
  },
  redraw,
};

async function chat(form: HTMLFormElement): Promise<void> {
  const input = form.elements.namedItem("text") as HTMLInputElement;
  const text = input.value.trim();
  if (!seat || !text) return;
  const roomId = seat.roomId;
  await run(async () => {
    unwrap(await api.POST("/v1/rooms/{room_id}/messages", { params: { path: { room_id: roomId } }, body: { text } }));
    input.value = "";
  });
}

async function leave(): Promise<void> {
  if (seat && model && model.room.status === "lobby" && model.meId !== null) {
    const roomId = seat.roomId;
    const playerId = model.meId;
    await api.DELETE("/v1/rooms/{room_id}/players/{player_id}", {
      params: { path: { room_id: roomId, player_id: playerId } },
    });
  }
  forget();
  showHome();
}

function field(form: HTMLFormElement, name: string): string {
  return (form.elements.namedItem(name) as HTMLInputElement | HTMLSelectElement).value.trim();
}

/** The create form's "seconds per phase", as each ruleset's settings name its phases. */
function createBody(form: HTMLFormElement): CreateRoomRequest {
  const seconds = Number.parseInt(field(form, "seconds"), 10);
  const given = Number.isFinite(seconds);
  const name = field(form, "name");
  const nickname = field(form, "nickname");
  if (field(form, "ruleset") === "missions") {
    const settings = { propose_seconds: seconds, approve_seconds: seconds, mission_seconds: seconds };
    return { name, nickname, ruleset: "missions", ...(given ? { settings } : {}) };
  }
  const settings = { night_seconds: seconds, day_seconds: seconds, vote_seconds: seconds };
  return { name, nickname, ruleset: "mafia", ...(given ? { settings } : {}) };
}

const SECONDS_HINTS: Record<string, string> = {
  mafia: "(empty: night 60, day 120, vote 60)",
  missions: "(empty: propose 90, approve 45, mission 45)",
};

async function createRoom(form: HTMLFormElement): Promise<void> {
  const session = unwrap(await api.POST("/v1/rooms", { body: createBody(form) }));
  enter(session.room.id, session.token);
}

async function joinRoom(form: HTMLFormElement): Promise<void> {
  const code = field(form, "code").toUpperCase();
  const page = unwrap(await api.GET("/v1/rooms", { params: { query: { code } } }));
  const room = page.items[0];
  if (!room) throw new Error(`No open room has the code ${code}.`);
  const session = unwrap(
    await api.POST("/v1/rooms/{room_id}/players", {
      params: { path: { room_id: room.id } },
      body: { nickname: field(form, "nickname"), code },
    }),
  );
  enter(session.room.id, session.token);
}

async function quickPlay(form: HTMLFormElement): Promise<void> {
  const ruleset = field(form, "ruleset") === "missions" ? "missions" : "mafia";
  const session = await quickJoin(api, { ruleset, nickname: field(form, "nickname") });
  enter(session.room.id, session.token);
}

/** Watch a room as a spectator: a public one by its id, any by its code. */
async function watch(roomId: string, code?: string): Promise<void> {
  const session = await watchRoom(api, roomId, code ? { code } : {});
  enter(session.room.id, session.token);
}

async function watchByCode(form: HTMLFormElement): Promise<void> {
  const code = field(form, "code").toUpperCase();
  const page = unwrap(await api.GET("/v1/rooms", { params: { query: { code } } }));
  const room = page.items[0];
  if (!room) throw new Error(`No open room has the code ${code}.`);
  await watch(room.id, code);
}

/** The public rooms not over yet, each with "Watch" (and a lobby's code to join it). */
async function listRooms(): Promise<void> {
  const list = byId("room-list");
  const result = await api.GET("/v1/rooms", { params: { query: { limit: 20 } } });
  const rooms = (result.data?.items ?? []).filter((r: Room) => r.status === "lobby" || r.status === "in_progress");
  if (rooms.length === 0) {
    fill(list, h("li", { class: "room-meta" }, "No open room right now."));
    return;
  }
  fill(
    list,
    ...rooms.map((room: Room) => {
      const button = h("button", { type: "button", class: "quiet", "data-testid": "watch-room", "data-room-id": room.id }, "Watch");
      button.addEventListener("click", () => {
        button.disabled = true;
        watch(room.id)
          .catch(showError)
          .finally(() => {
            button.disabled = false;
          });
      });
      const where = room.status === "lobby" ? `lobby, code ${room.code}` : `round ${room.round}`;
      return h(
        "li",
        { "data-testid": "open-room", "data-room-id": room.id, "data-status": room.status },
        h("span", {}, room.name, " ", h("span", { class: "room-meta" }, `${room.ruleset} · ${room.player_count} players · ${where}`)),
        button,
      );
    }),
  );
}

/** "Watching N" in the room's header: the spectators the server counts, read now and then. */
async function pollWatching(): Promise<void> {
  if (!seat || byId("room").hidden) return;
  const result = await api.GET("/v1/rooms/{room_id}", { params: { path: { room_id: seat.roomId } } });
  renderWatching(result.data ? result.data.spectator_count : null);
}

function onSubmit(id: string, handler: (form: HTMLFormElement) => Promise<void>): void {
  const form = byId<HTMLFormElement>(id);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const submit = form.querySelector<HTMLButtonElement>("button[type=submit]");
    if (submit) submit.disabled = true;
    handler(form)
      .catch(showError)
      .finally(() => {
        if (submit) submit.disabled = false;
      });
  });
}

// ---- start -------------------------------------------------------------------------------

onSubmit("create-form", createRoom);
byId<HTMLFormElement>("create-form").addEventListener("change", (event) => {
  const target = event.target as HTMLSelectElement;
  if (target.name === "ruleset") byId("seconds-hint").textContent = SECONDS_HINTS[target.value] ?? "";
});
onSubmit("join-form", joinRoom);
onSubmit("quick-form", quickPlay);
onSubmit("watch-form", watchByCode);
byId("rooms-refresh").addEventListener("click", () => void listRooms().catch(showError));
onSubmit("chat-form", chat);
byId("leave-button").addEventListener("click", () => void leave());
setInterval(() => tick(model), 250);
setInterval(() => void pollWatching().catch(() => undefined), 5000);

const saved = read<Seat>(SEAT_KEY);
if (saved?.roomId && saved.token) {
  void resume({ roomId: saved.roomId, token: saved.token, lastSeq: saved.lastSeq || 0, sent: saved.sent ?? null });
}
else showHome();
