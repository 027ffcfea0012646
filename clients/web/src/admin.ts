// The operators' page (/admin, served only when the server has an ADMIN_TOKEN): the live rooms,
// refreshed every few seconds; a room's players with their roles, its whole log with hidden
// events marked, a replay of each game step by step, and closing it.
//
// The admin token is asked for once and kept in sessionStorage (this tab only); every call
// sends it as the bearer token. A 401 forgets it and asks again.

import {
  createRoundtableClient,
  RoundtableError,
  unwrap,
  type AdminEvent,
  type AdminEventPage,
  type AdminReplay,
  type AdminRoom,
  type AdminRoomDetail,
  type ReplayPlayer,
  type Player,
  type RoomStatus,
} from "@roundtable/client";

import { byId, fill, h } from "./dom.js";

const TOKEN_KEY = "roundtable.admin-token";
const REFRESH_MS = 4000;

const client = createRoundtableClient({ baseUrl: "", token: () => sessionStorage.getItem(TOKEN_KEY) });

interface Open {
  id: string;
  detail: AdminRoomDetail;
  /** The log read so far, oldest first. */
  events: AdminEvent[];
  replay: AdminReplay | null;
  /** The replay step shown (an index into replay.steps). */
  step: number;
}

let open: Open | null = null;
let timer: number | undefined;
/** "Close room" was clicked and waits for its confirmation (a refresh keeps it waiting). */
let confirming = false;

const tokenForm = byId<HTMLFormElement>("token-form");
const roomsSection = byId("rooms");
const roomSection = byId("room");
const statusFilter = byId<HTMLSelectElement>("status-filter");
const replayGame = byId<HTMLSelectElement>("replay-game");

function showError(message: string | null): void {
  const el = byId("error");
  el.hidden = message === null;
  el.textContent = message ?? "";
}

/** Run a call; a 401 forgets the token and asks for it again, any other failure is shown. */
async function guarded(work: () => Promise<void>): Promise<void> {
  try {
    await work();
    showError(null);
  } catch (error) {
    if (error instanceof RoundtableError && error.status === 401) {
      signOut("That admin token was refused.");
      return;
    }
    showError(error instanceof Error ? error.message : String(error));
  }
}

function signOut(message: string | null): void {
  sessionStorage.removeItem(TOKEN_KEY);
  window.clearInterval(timer);
  open = null;
  roomsSection.hidden = true;
  roomSection.hidden = true;
  byId("forget-token").hidden = true;
  tokenForm.hidden = false;
  showError(message);
}

function signedIn(): void {
  tokenForm.hidden = true;
  byId("forget-token").hidden = false;
  roomsSection.hidden = open !== null;
  window.clearInterval(timer);
  timer = window.setInterval(() => void refresh(), REFRESH_MS);
  void refresh();
}

function time(at: string | null | undefined): HTMLElement {
  if (!at) return h("span", { class: "muted" }, "—");
  return h("time", { datetime: at, title: at }, new Date(at).toLocaleTimeString());
}

function where(room: AdminRoom): string {
  if (room.status === "in_progress") return `round ${room.round} · ${room.phase ?? ""}`;
  if (room.status === "finished") return `won by ${room.winner ?? "nobody"}`;
  return room.status.replace("_", " ");
}

// The rooms.

async function refresh(): Promise<void> {
  await guarded(async () => {
    const status = (statusFilter.value || undefined) as RoomStatus | undefined;
    const page = unwrap(await client.GET("/admin/api/rooms", { params: { query: { limit: 100, status } } }));
    renderRooms(page.items);
    if (open !== null) await loadRoom(open.id, false);
    byId("refreshed").textContent = `refreshed ${new Date().toLocaleTimeString()}`;
  });
}

function renderRooms(rooms: AdminRoom[]): void {
  byId("no-rooms").hidden = rooms.length > 0;
  const rows = rooms.map((room) =>
    h(
      "tr",
      { "data-testid": "room-row", "data-room-id": room.id, "data-status": room.status, "data-streams": room.streams },
      h("td", {}, h("strong", {}, room.name), " ", h("code", {}, room.code)),
      h("td", { "data-testid": "room-ruleset" }, room.ruleset, room.game > 0 ? ` · game ${room.game}` : ""),
      h("td", { "data-testid": "room-status" }, where(room)),
      h("td", { "data-testid": "room-players" }, String(room.players.length)),
      h("td", { "data-testid": "room-streams" }, String(room.streams)),
      h("td", { "data-testid": "room-spectators" }, String(room.spectator_count)),
      h("td", { "data-testid": "room-last-event" }, time(room.last_event_at)),
      h("td", {}, h("button", { type: "button", class: "quiet", "data-testid": "open-room", "data-room-id": room.id }, "Open")),
    ),
  );
  fill(byId("room-list"), ...rows);
}

// One room.

async function readEvents(roomId: string, after: number): Promise<AdminEvent[]> {
  const events: AdminEvent[] = [];
  for (let next: number | null = after; next !== null; ) {
    const page: AdminEventPage = unwrap(
      await client.GET("/admin/api/rooms/{room_id}/events", {
        params: { path: { room_id: roomId }, query: { after: next, limit: 1000 } },
      }),
    );
    events.push(...page.items);
    next = page.next_after;
  }
  return events;
}

async function readReplay(roomId: string, game: number): Promise<AdminReplay | null> {
  if (game < 1) return null;
  return unwrap(
    await client.GET("/admin/api/rooms/{room_id}/replay", { params: { path: { room_id: roomId }, query: { game } } }),
  );
}

/** Show a room: on opening, everything; on a refresh, its state and the events since. */
async function loadRoom(roomId: string, opening: boolean): Promise<void> {
  const detail = unwrap(await client.GET("/admin/api/rooms/{room_id}", { params: { path: { room_id: roomId } } }));
  if (opening || open === null || open.id !== roomId) {
    const events = await readEvents(roomId, 0);
    const replay = await readReplay(roomId, detail.room.game);
    open = { id: roomId, detail, events, replay, step: 0 };
    confirming = false;
    renderGames(detail.room.game);
    renderReplay();
  } else {
    const last = open.events.at(-1)?.seq ?? 0;
    if (detail.room.last_seq > last) open.events.push(...(await readEvents(roomId, last)));
    if (detail.room.game !== open.detail.room.game) {
      renderGames(detail.room.game); // a rematch: its game becomes one more to replay
    }
    open.detail = detail;
  }
  roomsSection.hidden = true;
  roomSection.hidden = false;
  renderRoom();
}

function roleBadges(player: { role?: string | null; team?: string | null; alive: boolean }): HTMLElement[] {
  const badges: HTMLElement[] = [];
  if (player.role) badges.push(h("span", { class: `badge role-${player.role}` }, player.role));
  if (player.team) badges.push(h("span", { class: "badge" }, player.team));
  if (!player.alive) badges.push(h("span", { class: "badge" }, "dead"));
  return badges;
}

function renderRoom(): void {
  if (open === null) return;
  const { room } = open.detail;
  roomSection.dataset.roomId = room.id;
  roomSection.dataset.status = room.status;
  byId("room-title").textContent = `${room.name} (${room.code})`;
  byId("room-facts").textContent =
    `${room.ruleset} · ${where(room)} · ${room.streams} streams · ${room.spectator_count} spectators · seq ${room.last_seq}`;
  byId("close-room").hidden = room.status === "closed" || confirming;
  byId("close-room-confirm").hidden = room.status === "closed" || !confirming;
  fill(
    byId("detail-players"),
    ...room.players.map((p: Player) =>
      h(
        "li",
        {
          "data-testid": "detail-player",
          "data-player-id": p.id,
          "data-role": p.role ?? "",
          "data-alive": String(p.alive),
          class: p.alive ? "" : "dead",
        },
        h("span", { class: "nick" }, p.nickname),
        p.is_host ? h("span", { class: "badge host" }, "host") : null,
        ...roleBadges(p),
        p.connected ? h("span", { class: "badge" }, "connected") : null,
      ),
    ),
  );
  const log = byId("event-log");
  const shown = log.children.length;
  const fresh = log.dataset.roomId !== room.id || shown > open.events.length;
  if (fresh) {
    log.replaceChildren();
    log.dataset.roomId = room.id;
  }
  log.append(...open.events.slice(fresh ? 0 : shown).map(eventLine));
}

function eventLine(event: AdminEvent): HTMLElement {
  const audience = event.hidden ? `${event.visibility}${event.audience ? `: ${event.audience}` : ""}` : "";
  return h(
    "li",
    {
      "data-testid": "event",
      "data-seq": event.seq,
      "data-type": event.type,
      "data-hidden": String(event.hidden),
      "data-visibility": event.visibility,
    },
    h("span", { class: "muted" }, `#${event.seq}`, " ", time(event.at)),
    h(
      "span",
      {},
      h("strong", {}, event.type),
      event.hidden ? h("span", { class: "badge hidden-info", "data-testid": "hidden-badge", title: audience }, "hidden") : null,
    ),
    h("code", {}, JSON.stringify(event.data)),
  );
}

function renderGames(games: number): void {
  const options = [];
  for (let game = games; game >= 1; game -= 1) {
    options.push(h("option", { value: game }, `${game}`));
  }
  fill(replayGame, ...options);
}

function renderReplay(): void {
  const replay = open?.replay ?? null;
  byId("replay-empty").hidden = replay !== null;
  byId("replay-body").hidden = replay === null;
  if (open === null || replay === null) return;
  replayGame.value = String(replay.game);
  const total = replay.steps.length;
  const index = Math.min(Math.max(open.step, 0), total - 1);
  open.step = index;
  const step = replay.steps[index];
  if (step === undefined) return;
  byId("replay-position").textContent = `step ${index + 1} of ${total}`;
  const at = byId("replay-step");
  Object.assign(at.dataset, {
    seq: String(step.seq),
    type: step.type,
    status: step.status,
    round: String(step.round),
    phase: step.phase ?? "",
    winner: step.winner ?? "",
    hidden: String(step.hidden),
  });
  fill(
    at,
    h("strong", {}, step.type),
    ` (#${step.seq}) `,
    step.hidden ? h("span", { class: "badge hidden-info" }, "hidden") : null,
    h("br"),
    step.status === "finished"
      ? h("span", { "data-testid": "replay-winner" }, `Finished: ${step.winner ?? "nobody"} won`)
      : `${step.status.replace("_", " ")} · round ${step.round}${step.phase ? ` · ${step.phase}` : ""}`,
  );
  fill(
    byId("replay-players"),
    ...step.players.map((p: ReplayPlayer) =>
      h(
        "li",
        {
          "data-testid": "replay-player",
          "data-player-id": p.id,
          "data-role": p.role ?? "",
          "data-team": p.team ?? "",
          "data-alive": String(p.alive),
          class: p.alive ? "" : "dead",
        },
        h("span", { class: "nick" }, p.nickname),
        ...roleBadges(p),
      ),
    ),
  );
  byId<HTMLButtonElement>("replay-first").disabled = index === 0;
  byId<HTMLButtonElement>("replay-prev").disabled = index === 0;
  byId<HTMLButtonElement>("replay-next").disabled = index === total - 1;
  byId<HTMLButtonElement>("replay-last").disabled = index === total - 1;
}

function stepTo(index: (current: number, total: number) => number): void {
  if (open?.replay) {
    open.step = index(open.step, open.replay.steps.length);
    renderReplay();
  }
}

// Wiring.

tokenForm.addEventListener("submit", (event) => {
  event.preventDefault();
  const input = byId<HTMLInputElement>("token-input");
  sessionStorage.setItem(TOKEN_KEY, input.value.trim());
  input.value = "";
  signedIn();
});
byId("forget-token").addEventListener("click", () => signOut(null));
byId("refresh").addEventListener("click", () => void refresh());
statusFilter.addEventListener("change", () => void refresh());
byId("room-list").addEventListener("click", (event) => {
  const button = (event.target as HTMLElement).closest<HTMLElement>("[data-testid=open-room]");
  const roomId = button?.dataset.roomId;
  if (roomId) void guarded(() => loadRoom(roomId, true));
});
byId("back").addEventListener("click", () => {
  open = null;
  roomSection.hidden = true;
  roomsSection.hidden = false;
  void refresh();
});
byId("close-room").addEventListener("click", () => {
  confirming = true;
  renderRoom();
});
byId("close-room-confirm").addEventListener("click", () => {
  const roomId = open?.id;
  if (!roomId) return;
  void guarded(async () => {
    unwrap(await client.POST("/admin/api/rooms/{room_id}/close", { params: { path: { room_id: roomId } } }));
    confirming = false;
    await loadRoom(roomId, true); // the log and the replay end with room.closed now
  });
});
replayGame.addEventListener("change", () => {
  const roomId = open?.id;
  if (!roomId) return;
  void guarded(async () => {
    const replay = await readReplay(roomId, Number(replayGame.value));
    if (open && open.id === roomId) {
      open.replay = replay;
      open.step = 0;
      renderReplay();
    }
  });
});
byId("replay-first").addEventListener("click", () => stepTo(() => 0));
byId("replay-prev").addEventListener("click", () => stepTo((i) => i - 1));
byId("replay-next").addEventListener("click", () => stepTo((i) => i + 1));
byId("replay-last").addEventListener("click", () => stepTo((_, total) => total - 1));

if (sessionStorage.getItem(TOKEN_KEY)) signedIn();
else signOut(null);
