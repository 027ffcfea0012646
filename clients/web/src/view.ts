// Rendering: the room section of index.html, redrawn from the model after every change.
// Static parts (forms, the chat input) are never redrawn, so typing is never interrupted.

import { byId, fill, h } from "./dom.js";
import {
  action,
  isHost,
  me,
  myVote,
  nickname,
  targets,
  type Investigation,
  type LogLine,
  type Model,
} from "./model.js";

/** What the buttons do; main.ts wires them to the API. */
export interface Actions {
  start(): void;
  advance(): void;
  vote(target: string | null): void;
}

// Each panel is redrawn only when what it shows changed, so a click is never lost to a redraw
// caused by someone else's event (a vote, a presence change).
let drawn = new WeakMap<Element, string>();

/** Forget what was drawn, so the next render redraws every panel (a failed click re-enables its button). */
export function invalidate(): void {
  drawn = new WeakMap();
}

function changed(el: Element, ...what: unknown[]): boolean {
  const key = JSON.stringify(what);
  if (drawn.get(el) === key) return false;
  drawn.set(el, key);
  return true;
}

const PROMPTS: Record<string, string> = {
  kill: "Night: choose whom the mafia kills.",
  protect: "Night: choose whom to protect.",
  investigate: "Night: choose whom to investigate.",
  eliminate: "Vote: whom do you eliminate?",
};

export function render(m: Model, investigations: Investigation[], actions: Actions): void {
  const self = me(m);
  const game = byId("game");
  const vote = myVote(m);
  Object.assign(game.dataset, {
    status: m.room.status,
    round: String(m.room.round),
    phase: m.room.phase ?? "",
    meId: m.meId,
    alive: String(self?.alive ?? false),
    role: self?.role ?? "",
    host: String(isHost(m)),
    voted: String(vote !== undefined),
    lastSeq: String(m.lastSeq),
  });

  byId("room-name").textContent = m.room.name;
  byId("room-code").textContent = m.room.code;
  const status = byId("room-status");
  status.textContent = m.room.status.replace("_", " ");
  status.dataset.status = m.room.status;

  // Chat is routed by phase: to the room in the lobby and by day, mafia to mafia at night.
  const chat = byId<HTMLInputElement>("chat-input");
  const asleep = m.room.status === "in_progress" && m.room.phase === "night" && self?.role !== "mafia";
  chat.disabled = asleep;
  chat.placeholder = asleep ? "Night: only the mafia talk" : self?.role === "mafia" && m.room.phase === "night" ? "To the mafia" : "Say something";

  renderPlayers(m);
  renderLobby(m, actions);
  renderPhase(m, actions);
  renderMe(m, investigations);
  renderVotes(m, actions);
  renderFinal(m);
  tick(m);
}

function renderPlayers(m: Model): void {
  const list = byId("player-list");
  if (!changed(list, m.players, m.meId)) return;
  const items = m.players.map((p) => {
    const known = p.role ? h("span", { class: `badge role-${p.role}`, "data-testid": "player-role" }, p.role) : null;
    return h(
      "li",
      {
        class: `player${p.alive ? "" : " dead"}${p.id === m.meId ? " me" : ""}`,
        "data-testid": "player",
        "data-player-id": p.id,
        "data-nickname": p.nickname,
        "data-alive": String(p.alive),
        "data-connected": String(p.connected),
      },
      h("span", {
        class: `presence ${p.connected ? "on" : "off"}`,
        title: p.connected ? "connected" : "not connected",
        "data-testid": "presence",
      }),
      h("span", { class: "nick" }, p.nickname),
      p.id === m.meId ? h("span", { class: "badge you" }, "you") : null,
      p.is_host ? h("span", { class: "badge host" }, "host") : null,
      known,
      p.alive ? null : h("span", { class: "badge dead" }, "dead"),
    );
  });
  fill(list, ...items);
}

function renderLobby(m: Model, actions: Actions): void {
  const panel = byId("lobby-panel");
  panel.hidden = m.room.status !== "lobby";
  if (panel.hidden || !changed(panel, m.players.length, m.room.settings.max_players, m.room.code, isHost(m))) return;
  const count = m.players.length;
  const enough = count >= 4;
  const hint = `${count} of ${m.room.settings.max_players} seats taken; the game needs at least 4 players.`;
  if (isHost(m)) {
    const start = h("button", { type: "button", "data-testid": "start-button", disabled: !enough }, "Start the game");
    start.addEventListener("click", () => {
      start.disabled = true;
      actions.start();
    });
    fill(panel, h("p", {}, `Share the code ${m.room.code} with your friends. ${hint}`), start);
  } else {
    fill(panel, h("p", { "data-testid": "waiting" }, `Waiting for the host to start. ${hint}`));
  }
}

function renderPhase(m: Model, actions: Actions): void {
  const panel = byId("phase-panel");
  panel.hidden = m.room.status !== "in_progress";
  if (panel.hidden || !changed(panel, m.room.round, m.room.phase, isHost(m))) return;
  const phase = m.room.phase ?? "";
  panel.dataset.phase = phase;
  const advance =
    isHost(m) && m.room.phase
      ? h("button", { type: "button", class: "quiet", "data-testid": "advance-button" }, "End this phase now")
      : null;
  advance?.addEventListener("click", () => {
    advance.disabled = true;
    actions.advance();
  });
  fill(
    panel,
    h("span", { class: "round", "data-testid": "round" }, `Round ${m.room.round}`),
    h("span", { class: `phase-name phase-${phase}`, "data-testid": "phase" }, phase),
    h("span", { class: "countdown", "data-testid": "countdown" }),
    advance,
  );
}

function renderMe(m: Model, investigations: Investigation[]): void {
  const panel = byId("me-panel");
  const self = me(m);
  panel.hidden = m.room.status === "lobby" || !self?.role;
  if (panel.hidden || !self?.role) return;
  const mates = m.teammates.map((id) => nickname(m, id));
  if (!changed(panel, self.role, self.team, self.alive, mates, investigations)) return;
  const results = investigations.map((r) =>
    h(
      "li",
      { "data-testid": "night-result", "data-team": r.team },
      `Round ${r.round}: ${nickname(m, r.target_player_id)} is `,
      h("strong", {}, r.team),
    ),
  );
  fill(
    panel,
    h(
      "p",
      {},
      `You are ${/^[aeiou]/.test(self.role) ? "an" : "a"} `,
      h("strong", { "data-testid": "my-role", "data-role": self.role }, self.role),
      ` (${self.team ?? "?"})`,
    ),
    mates.length ? h("p", { "data-testid": "teammates" }, `Your fellow mafia: ${mates.join(", ")}`) : null,
    self.alive ? null : h("p", { class: "dead-note", "data-testid": "spectator" }, "You are dead: you watch the rest of the game."),
    results.length ? h("div", {}, h("h4", {}, "What you learned"), h("ul", { "data-testid": "night-results" }, ...results)) : null,
  );
}

function renderVotes(m: Model, actions: Actions): void {
  const panel = byId("vote-panel");
  panel.hidden = m.room.status !== "in_progress";
  if (panel.hidden) return;
  const act = action(m);
  const mine = myVote(m);
  const visible = m.votes.filter((v) => v.round === m.room.round && v.phase === m.room.phase);
  const options = targets(m).map((p) => [p.id, p.nickname]);
  const names = visible.map((v) => [nickname(m, v.voter_id), v.target_player_id && nickname(m, v.target_player_id)]);
  if (!changed(panel, m.room.round, m.room.phase, act, me(m)?.alive, options, mine, names)) return;
  const cast = visible.length
    ? h(
        "ul",
        { class: "votes", "data-testid": "visible-votes" },
        ...visible.map((v) => h("li", {}, `${nickname(m, v.voter_id)} → ${v.target_player_id ? nickname(m, v.target_player_id) : "abstains"}`)),
      )
    : null;
  if (!act) {
    const self = me(m);
    let text = "Day: talk it over in the chat. The vote comes next.";
    if (!self?.alive) text = "You are dead: you watch.";
    else if (m.room.phase === "night") text = "Night: you sleep while the mafia (and the doctor and detective, if dealt) act.";
    fill(panel, h("p", { "data-testid": "vote-prompt" }, text), cast);
    return;
  }
  const button = (target: string | null, label: string, testid: string): HTMLButtonElement => {
    const pressed = mine !== undefined && mine.target === target;
    const b = h(
      "button",
      { type: "button", class: pressed ? "pressed" : "", "aria-pressed": String(pressed), "data-testid": testid, "data-target-id": target ?? "" },
      label,
    );
    b.addEventListener("click", () => actions.vote(target));
    return b;
  };
  const buttons = targets(m).map((p) => button(p.id, p.id === m.meId ? `${p.nickname} (you)` : p.nickname, "vote-target"));
  buttons.push(button(null, "Abstain", "vote-abstain"));
  const current =
    mine === undefined
      ? "You have not voted yet."
      : `Your vote: ${mine.target ? nickname(m, mine.target) : "abstain"} (you may change it until the phase closes).`;
  fill(
    panel,
    h("p", { "data-testid": "vote-prompt" }, PROMPTS[act] ?? ""),
    h("div", { class: "targets", "data-testid": "vote-targets" }, ...buttons),
    h("p", { "data-testid": "my-vote" }, current),
    cast,
  );
}

function renderFinal(m: Model): void {
  const panel = byId("final-panel");
  panel.hidden = m.final === null;
  if (!m.final || !changed(panel, m.final, m.meId)) return;
  const final = m.final;
  const rows = [...final.players]
    .sort((a, b) => a.seat - b.seat)
    .map((p) =>
      h(
        "tr",
        { "data-testid": "reveal-player", "data-player-id": p.id, "data-role": p.role ?? "", class: p.alive ? "" : "dead" },
        h("td", {}, p.nickname + (p.id === m.meId ? " (you)" : "")),
        h("td", {}, h("span", { class: `badge role-${p.role ?? ""}` }, p.role ?? "?")),
        h("td", {}, p.team ?? "?"),
        h("td", {}, p.alive ? "alive" : "dead"),
      ),
    );
  fill(
    panel,
    h("h3", { "data-testid": "winner", "data-winner": final.winner }, final.winner === "town" ? "The town wins!" : "The mafia wins!"),
    h(
      "table",
      {},
      h("thead", {}, h("tr", {}, h("th", {}, "Player"), h("th", {}, "Role"), h("th", {}, "Team"), h("th", {}, "At the end"))),
      h("tbody", {}, ...rows),
    ),
  );
}

/** Update the countdown to the phase's deadline (called a few times a second). */
export function tick(m: Model | null): void {
  const el = document.querySelector<HTMLElement>("[data-testid=countdown]");
  if (!el || !m?.room.phase_ends_at) return;
  const left = Math.max(0, Math.ceil((Date.parse(m.room.phase_ends_at) - Date.now()) / 1000));
  el.textContent = `${left}s left`;
  el.dataset.seconds = String(left);
}

/** Append history lines to the feed (chat and game events), oldest first. */
export function appendLog(lines: LogLine[]): void {
  const log = byId("event-log");
  for (const line of lines) {
    const item = h(
      "li",
      { class: `line ${line.kind}`, "data-testid": "log-entry", "data-kind": line.kind, "data-seq": line.seq, "data-channel": line.channel },
      line.channel ? h("span", { class: `channel channel-${line.channel}`, "data-testid": "chat-channel" }, line.channel) : null,
      line.text,
    );
    log.append(item);
  }
  log.scrollTop = log.scrollHeight;
}

export function clearLog(): void {
  fill(byId("event-log"));
}
