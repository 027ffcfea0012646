// Rendering: the room section of index.html, redrawn from the model after every change.
// Static parts (forms, the chat input) are never redrawn, so typing is never interrupted.
//
// The action panel shows the server's options and nothing else: one control per option (pick
// `pick` players among its `targets`, abstain when it allows, or one of its `choices`).

import type { ActionRequest, Option, Ruleset } from "@roundtable/client";

import { byId, fill, h } from "./dom.js";
import {
  isHost,
  me,
  myAction,
  nickname,
  phaseKey,
  spectating,
  type Investigation,
  type LogLine,
  type Model,
} from "./model.js";

/** The player's answer to an option, as `actionFor` takes it. */
export type Answer = { targets: string[] } | { abstain: true } | { choice: string };

/** What the buttons do; main.ts wires them to the API. */
export interface Actions {
  start(): void;
  advance(): void;
  act(option: Option, answer: Answer): void;
  /** Start another game in the room (host, once the game is finished). */
  rematch(): void;
  /** Draw again (a local change: a player picked or unpicked for a team). */
  redraw(): void;
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

// The lobby's hint and its Start button: how many players a ruleset's game needs. Only a hint:
// the server decides when the host starts (and says why it refuses).
const MIN_PLAYERS: Record<Ruleset, number> = { mafia: 4, missions: 5 };

const VOTE_PROMPTS: Record<string, string> = {
  kill: "Night: choose whom the mafia kills.",
  protect: "Night: choose whom to protect.",
  investigate: "Night: choose whom to investigate.",
  eliminate: "Vote: whom do you eliminate?",
};

const WINNERS: Record<string, string> = {
  town: "The town wins!",
  mafia: "The mafia wins!",
  crew: "The crew wins!",
  spies: "The spies win!",
};

// The players picked so far for an option that takes several, by the phase's key and option type.
let picking: { key: string; ids: string[] } = { key: "", ids: [] };

export function render(m: Model, investigations: Investigation[], actions: Actions): void {
  const self = me(m);
  const game = byId("game");
  const mine = myAction(m);
  Object.assign(game.dataset, {
    ruleset: m.room.ruleset,
    status: m.room.status,
    round: String(m.room.round),
    phase: m.room.phase ?? "",
    attempt: String(m.board?.attempt ?? ""),
    meId: m.meId ?? "",
    spectating: String(spectating(m)),
    game: String(m.room.game),
    alive: String(self?.alive ?? false),
    role: self?.role ?? "",
    host: String(isHost(m)),
    leader: String(m.board?.leader_player_id === m.meId),
    options: m.options.map((o) => o.type).join(" "),
    voted: String(mine !== undefined),
    lastSeq: String(m.lastSeq),
  });

  byId("room-name").textContent = m.room.name;
  byId("room-code").textContent = m.room.code;
  byId("room-ruleset").textContent = m.room.ruleset;
  const status = byId("room-status");
  status.textContent = m.room.status.replace("_", " ");
  status.dataset.status = m.room.status;

  // A spectator watches: no chat (the server refuses it), a badge instead of a seat.
  const watching = spectating(m);
  byId("chat-form").hidden = watching;
  byId("spectating").hidden = !watching;
  byId("leave-button").textContent = watching ? "Stop watching" : "Leave";

  // Mafia chat at night goes mafia to mafia; the rest of the town sleeps (the server refuses them).
  const chat = byId<HTMLInputElement>("chat-input");
  const asleep = m.room.status === "in_progress" && m.room.phase === "night" && self?.role !== "mafia";
  chat.disabled = asleep;
  chat.placeholder = asleep ? "Night: only the mafia talk" : self?.role === "mafia" && m.room.phase === "night" ? "To the mafia" : "Say something";

  renderPlayers(m);
  renderLobby(m, actions);
  renderPhase(m, actions);
  renderBoard(m);
  renderMe(m, investigations);
  renderActions(m, actions);
  renderFinal(m, actions);
  tick(m);
}

function renderPlayers(m: Model): void {
  const list = byId("player-list");
  // The leader and the team on the table, while the game runs.
  const board = m.room.status === "in_progress" ? m.board : null;
  if (!changed(list, m.players, m.meId, board?.leader_player_id, board?.proposal)) return;
  const items = m.players.map((p) => {
    // A role where the server shows it; else a team this player knows (a teammate's).
    const known = p.role ?? p.team;
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
      board?.leader_player_id === p.id ? h("span", { class: "badge leader", "data-testid": "leader-badge" }, "leader") : null,
      board?.proposal?.includes(p.id) ? h("span", { class: "badge team", "data-testid": "team-badge" }, "on the team") : null,
      known ? h("span", { class: `badge role-${known}`, "data-testid": "player-role" }, known) : null,
      p.alive ? null : h("span", { class: "badge dead" }, "dead"),
    );
  });
  fill(list, ...items);
}

function renderLobby(m: Model, actions: Actions): void {
  const panel = byId("lobby-panel");
  panel.hidden = m.room.status !== "lobby";
  const least = MIN_PLAYERS[m.room.ruleset];
  if (panel.hidden || !changed(panel, m.players.length, m.room.settings.max_players, m.room.code, m.room.ruleset, isHost(m))) return;
  const count = m.players.length;
  const hint = `A ${m.room.ruleset} game. ${count} of ${m.room.settings.max_players} seats taken; the game needs at least ${least} players.`;
  if (isHost(m)) {
    const start = h("button", { type: "button", "data-testid": "start-button", disabled: count < least }, "Start the game");
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
  if (panel.hidden || !changed(panel, m.room.round, m.room.phase, m.board?.attempt, isHost(m))) return;
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
  const attempt = m.board && m.board.attempt > 1 ? `proposal ${m.board.attempt}` : "";
  fill(
    panel,
    h("span", { class: "round", "data-testid": "round" }, `Round ${m.room.round}`),
    h("span", { class: `phase-name phase-${phase}`, "data-testid": "phase" }, phase),
    attempt ? h("span", { class: "attempt", "data-testid": "attempt" }, attempt) : null,
    h("span", { class: "countdown", "data-testid": "countdown" }),
    advance,
  );
}

/** A missions game's board: the leader, the mission track, the proposal, the rejections, the results. */
function renderBoard(m: Model): void {
  const panel = byId("board-panel");
  const board = m.board;
  panel.hidden = board === null;
  if (!board || !changed(panel, board, m.room.round, m.room.status, m.players, m.approval)) return;
  const track = board.team_sizes.map((size, i) => {
    const round = i + 1;
    const result = board.missions.find((r) => r.round === round);
    const state = result ? (result.succeeded ? "success" : "fail") : round === m.room.round && m.room.status === "in_progress" ? "current" : "later";
    return h(
      "li",
      {
        class: `mission ${state}`,
        "data-testid": "mission-track",
        "data-round": round,
        "data-size": size,
        "data-state": state,
      },
      h("span", { class: "mission-round" }, `Mission ${round}`),
      h("span", { class: "mission-size" }, `${size} players`),
      result ? h("span", { class: "mission-fails" }, `${result.fails} fail${result.fails === 1 ? "" : "s"}`) : null,
    );
  });
  const results = board.missions.map((r) =>
    h(
      "li",
      { "data-testid": "mission-result", "data-round": r.round, "data-fails": r.fails, "data-succeeded": String(r.succeeded) },
      `Mission ${r.round} ${r.succeeded ? "succeeded" : "failed"} with ${r.fails} fail${r.fails === 1 ? "" : "s"} (team: ${r.team.map((id) => nickname(m, id)).join(", ")})`,
    ),
  );
  const approval = m.approval;
  const running = m.room.status === "in_progress";
  fill(
    panel,
    h("h3", {}, "Missions"),
    h("ol", { class: "track" }, ...track),
    running
      ? h(
          "p",
          { "data-testid": "board-leader", "data-leader-id": board.leader_player_id },
          "Leader: ",
          h("strong", {}, nickname(m, board.leader_player_id)),
          ` · proposal ${board.attempt} of round ${m.room.round} · team of ${board.team_size}`,
        )
      : null,
    running
      ? h(
          "p",
          { "data-testid": "board-proposal", "data-player-ids": (board.proposal ?? []).join(" ") },
          board.proposal ? `Proposed team: ${board.proposal.map((id) => nickname(m, id)).join(", ")}` : "No team proposed yet.",
        )
      : null,
    h("p", { "data-testid": "board-rejections", "data-count": board.rejections }, `Rejected proposals this round: ${board.rejections}`),
    approval
      ? h(
          "div",
          { "data-testid": "approval-result", "data-approved": String(approval.approved), "data-round": approval.round, "data-attempt": approval.attempt },
          h("h4", {}, `Proposal ${approval.attempt} of round ${approval.round}: ${approval.approved ? "approved" : "rejected"}`),
          h(
            "ul",
            { class: "votes" },
            ...approval.votes.map((v) =>
              h("li", { "data-testid": "approval-vote", "data-voter-id": v.voter_id, "data-choice": v.choice }, `${nickname(m, v.voter_id)}: ${v.choice}`),
            ),
          ),
        )
      : null,
    results.length ? h("ul", { class: "results", "data-testid": "mission-results" }, ...results) : null,
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
    mates.length ? h("p", { "data-testid": "teammates" }, `Your fellow ${self.team ?? "teammates"}: ${mates.join(", ")}`) : null,
    self.alive ? null : h("p", { class: "dead-note", "data-testid": "spectator" }, "You are dead: you watch the rest of the game."),
    results.length ? h("div", {}, h("h4", {}, "What you learned"), h("ul", { "data-testid": "night-results" }, ...results)) : null,
  );
}

/** What the player did in this phase, in words. */
function describeMine(m: Model, mine: ActionRequest | undefined): string {
  if (mine === undefined) return "You have not acted yet.";
  const note = " (you may change it until the phase closes)";
  switch (mine.type) {
    case "vote":
      return `Your vote: ${mine.target_player_id ? nickname(m, mine.target_player_id) : "abstain"}${note}.`;
    case "propose":
      return `You proposed ${mine.player_ids.map((id) => nickname(m, id)).join(", ")}.`;
    case "approve":
    case "mission":
      return `Your choice: ${mine.choice}${note}.`;
  }
}

/** What to say when the server lists nothing for this player to do. */
function idleText(m: Model): string {
  const self = me(m);
  if (self && !self.alive) return "You are dead: you watch.";
  const leader = m.board ? nickname(m, m.board.leader_player_id) : "";
  switch (m.room.phase) {
    case "day":
      return "Day: talk it over in the chat. The vote comes next.";
    case "night":
      return "Night: you sleep while the others act.";
    case "propose":
      return `Waiting for ${leader} to propose a team of ${m.board?.team_size ?? "?"}.`;
    case "mission":
      return "The team is on its mission.";
    default:
      return "Nothing for you to do right now.";
  }
}

function optionPrompt(m: Model, option: Option): string {
  switch (option.type) {
    case "vote":
      return VOTE_PROMPTS[option.vote_action ?? ""] ?? "Vote.";
    case "propose":
      return `You lead: choose ${option.pick} players for mission ${m.room.round}.`;
    case "approve": {
      const team = m.board?.proposal?.map((id) => nickname(m, id)).join(", ") ?? "the proposed team";
      return `Do you approve this team: ${team}? Nobody sees your vote until everyone has voted.`;
    }
    case "mission":
      return "You are on the mission: choose its outcome. Only the number of fails is ever shown.";
  }
}

function renderActions(m: Model, actions: Actions): void {
  const panel = byId("action-panel");
  // A spectator has nothing to do: no prompt, no buttons.
  panel.hidden = m.room.status !== "in_progress" || spectating(m);
  if (panel.hidden) return;
  const key = phaseKey(m);
  if (picking.key !== key) picking = { key, ids: [] };
  const mine = myAction(m);
  const visible = m.votes.filter((v) => v.round === m.room.round && v.phase === m.room.phase);
  const seen = visible.map((v) => [nickname(m, v.voter_id), v.target_player_id && nickname(m, v.target_player_id)]);
  const who = m.players.map((p) => [p.id, p.nickname]);
  if (!changed(panel, key, m.options, me(m)?.alive, mine, seen, who, picking.ids, m.board?.proposal)) return;
  const cast = visible.length
    ? h(
        "ul",
        { class: "votes", "data-testid": "visible-votes" },
        ...visible.map((v) => h("li", {}, `${nickname(m, v.voter_id)} → ${v.target_player_id ? nickname(m, v.target_player_id) : "abstains"}`)),
      )
    : null;
  if (m.options.length === 0) {
    fill(
      panel,
      h("p", { "data-testid": "vote-prompt" }, idleText(m)),
      mine ? h("p", { "data-testid": "my-vote" }, describeMine(m, mine)) : null,
      cast,
    );
    return;
  }
  const blocks = m.options.map((option) => optionBlock(m, option, mine, actions));
  fill(panel, ...blocks, h("p", { "data-testid": "my-vote" }, describeMine(m, mine)), cast);
}

function optionBlock(m: Model, option: Option, mine: ActionRequest | undefined, actions: Actions): HTMLElement {
  const type = option.type;
  const label = (id: string): string => (id === m.meId ? `${nickname(m, id)} (you)` : nickname(m, id));
  const controls: HTMLElement[] = [];
  if (option.pick === 1) {
    // One click acts; the pressed button is the current vote.
    const current = mine?.type === "vote" ? mine.target_player_id : undefined;
    const button = (target: string | null, text: string, testid: string): HTMLButtonElement => {
      const pressed = current !== undefined && current === target;
      const b = h(
        "button",
        { type: "button", class: pressed ? "pressed" : "", "aria-pressed": String(pressed), "data-testid": testid, "data-target-id": target ?? "" },
        text,
      );
      b.addEventListener("click", () => actions.act(option, target === null ? { abstain: true } : { targets: [target] }));
      return b;
    };
    controls.push(...option.targets.map((id) => button(id, label(id), `${type}-target`)));
    if (option.abstain) controls.push(button(null, "Abstain", `${type}-abstain`));
  } else if (option.pick > 1) {
    // Toggle exactly `pick` players, then send them together.
    const chosen = picking.ids.filter((id) => option.targets.includes(id));
    const submit = h(
      "button",
      { type: "button", "data-testid": `${type}-submit`, disabled: chosen.length !== option.pick },
      `${type === "propose" ? "Propose this team" : "Send"} (${chosen.length} of ${option.pick})`,
    );
    submit.addEventListener("click", () => {
      submit.disabled = true;
      actions.act(option, { targets: [...chosen] });
    });
    for (const id of option.targets) {
      const on = chosen.includes(id);
      const b = h(
        "button",
        { type: "button", class: on ? "pressed" : "", "aria-pressed": String(on), "data-testid": `${type}-target`, "data-target-id": id },
        label(id),
      );
      b.addEventListener("click", () => {
        picking = { key: picking.key, ids: on ? picking.ids.filter((x) => x !== id) : [...picking.ids, id] };
        actions.redraw();
      });
      controls.push(b);
    }
    if (option.abstain) {
      const b = h("button", { type: "button", "data-testid": `${type}-abstain` }, "Abstain");
      b.addEventListener("click", () => actions.act(option, { abstain: true }));
      controls.push(b);
    }
    controls.push(submit);
  }
  const current = mine && "choice" in mine ? mine.choice : undefined;
  for (const choice of option.choices) {
    const pressed = current === choice;
    const b = h(
      "button",
      { type: "button", class: `choice choice-${choice}${pressed ? " pressed" : ""}`, "aria-pressed": String(pressed), "data-testid": `${type}-choice`, "data-choice": choice },
      choice,
    );
    b.addEventListener("click", () => actions.act(option, { choice }));
    controls.push(b);
  }
  return h(
    "div",
    { class: "option", "data-testid": "option", "data-type": type, "data-pick": option.pick },
    h("p", { "data-testid": "vote-prompt" }, optionPrompt(m, option)),
    h("div", { class: "targets", "data-testid": type === "vote" ? "vote-targets" : `${type}-controls` }, ...controls),
  );
}

function renderFinal(m: Model, actions: Actions): void {
  const panel = byId("final-panel");
  panel.hidden = m.final === null;
  if (!m.final || !changed(panel, m.final, m.meId, isHost(m), m.room.status)) return;
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
    h("h3", { "data-testid": "winner", "data-winner": final.winner }, WINNERS[final.winner] ?? `${final.winner} wins!`),
    h(
      "table",
      {},
      h("thead", {}, h("tr", {}, h("th", {}, "Player"), h("th", {}, "Role"), h("th", {}, "Team"), h("th", {}, "At the end"))),
      h("tbody", {}, ...rows),
    ),
    playAgain(m, actions),
  );
}

/** The host's "Play again" (a rematch with the players present); the others wait for it. */
function playAgain(m: Model, actions: Actions): HTMLElement | null {
  if (m.room.status !== "finished") return null;
  if (!isHost(m)) {
    const who = spectating(m) ? "The host may start another game." : "Waiting for the host to play again.";
    return h("p", { "data-testid": "rematch-waiting" }, who);
  }
  const again = h("button", { type: "button", "data-testid": "play-again" }, "Play again");
  again.addEventListener("click", () => {
    again.disabled = true;
    actions.rematch();
  });
  return again;
}

/** "Watching N": how many spectators have the room open (from GET /v1/rooms/{id}). */
export function renderWatching(count: number | null): void {
  const el = byId("watching");
  el.hidden = count === null || count === 0;
  el.textContent = count ? `Watching ${count}` : "";
  el.dataset.count = String(count ?? 0);
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
