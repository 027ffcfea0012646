// The page's model of one room as this player sees it: built from a snapshot (or GET /state),
// then moved forward by each event in seq order. Pure: no DOM, no network.

import type { Player, Room, RoomEvent, RoomState } from "@roundtable/client";

export type Vote = RoomState["votes"][number];
export type Phase = NonNullable<Room["phase"]>;
export type Team = NonNullable<Player["team"]>;
type EventOf<T extends RoomEvent["type"]> = Extract<RoomEvent, { type: T }>;
/** What the detective learned: in which round, about whom, which team. */
export type Investigation = Pick<EventOf<"night.result">["data"], "round" | "target_player_id" | "team">;
export type Final = EventOf<"game.finished">["data"];

/** One line of the room's history: chat, or something that happened. */
export interface LogLine {
  seq: number;
  kind: "chat" | "join" | "leave" | "game" | "phase" | "death" | "vote" | "result" | "finish";
  text: string;
  /** Chat only: who hears it (`room` or `mafia`). */
  channel?: string;
}

export interface Model {
  room: Room;
  /** Present players by seat. */
  players: Player[];
  meId: string;
  teammates: string[];
  /** The votes of the open phase this player may see. */
  votes: Vote[];
  /** The seq of the newest event this model reflects. */
  lastSeq: number;
  investigations: Investigation[];
  final: Final | null;
  /** Set when this player is no longer in the room (left or kicked). */
  removed: boolean;
}

/** Build the model from the caller's state (a snapshot's data, or GET /state). */
export function fromState(state: RoomState): Model {
  const players = [...state.players].sort((a, b) => a.seat - b.seat);
  const finished = state.room.status === "finished" && state.room.winner != null;
  return {
    room: state.room,
    players,
    meId: state.me.id,
    teammates: [...state.teammates],
    votes: [...state.votes],
    lastSeq: state.last_seq,
    investigations: [],
    final: finished ? { winner: state.room.winner as Team, players, votes: [] } : null,
    removed: false,
  };
}

export function me(m: Model): Player | undefined {
  return m.players.find((p) => p.id === m.meId);
}

export function nickname(m: Model, id: string | null | undefined): string {
  if (id == null) return "nobody";
  return m.players.find((p) => p.id === id)?.nickname ?? "a former player";
}

export function isHost(m: Model): boolean {
  return m.room.host_player_id === m.meId;
}

/** What this player's vote does in the open phase, or null when they have nothing to vote on. */
export function action(m: Model): Vote["action"] | null {
  const self = me(m);
  if (!self || !self.alive || m.room.status !== "in_progress") return null;
  if (m.room.phase === "vote") return "eliminate";
  if (m.room.phase === "night") {
    if (self.role === "mafia") return "kill";
    if (self.role === "doctor") return "protect";
    if (self.role === "detective") return "investigate";
  }
  return null;
}

/** The legal targets of this player's vote in the open phase (abstaining is always legal too). */
export function targets(m: Model): Player[] {
  const act = action(m);
  const alive = m.players.filter((p) => p.alive);
  switch (act) {
    case "kill":
      return alive.filter((p) => p.id !== m.meId && !m.teammates.includes(p.id) && p.role !== "mafia");
    case "protect":
      return alive;
    case "investigate":
    case "eliminate":
      return alive.filter((p) => p.id !== m.meId);
    default:
      return [];
  }
}

/** This player's current vote in the open phase, if cast: the target's id, or null to abstain. */
export function myVote(m: Model): { target: string | null } | undefined {
  const vote = m.votes.find(
    (v) => v.voter_id === m.meId && v.round === m.room.round && v.phase === m.room.phase,
  );
  return vote ? { target: vote.target_player_id } : undefined;
}

function upsertPlayer(m: Model, player: Player): void {
  const i = m.players.findIndex((p) => p.id === player.id);
  if (i >= 0) m.players[i] = player;
  else m.players.push(player);
  m.players.sort((a, b) => a.seat - b.seat);
}

function patchPlayer(m: Model, id: string, patch: Partial<Player>): void {
  const i = m.players.findIndex((p) => p.id === id);
  const found = m.players[i];
  if (found) m.players[i] = { ...found, ...patch };
}

const ACTION_WORDS: Record<Vote["action"], string> = {
  kill: "The mafia's choice",
  protect: "Protected",
  investigate: "Investigated",
  eliminate: "Voted out",
};

/** The history line an event adds, read against the model as it was just before the event. */
export function describe(m: Model, event: RoomEvent): LogLine | null {
  const seq = event.seq;
  switch (event.type) {
    case "player.joined":
      return { seq, kind: "join", text: `${event.data.player.nickname} joined` };
    case "player.left": {
      const how = event.data.reason === "kicked" ? "was kicked" : "left";
      return { seq, kind: "leave", text: `${nickname(m, event.data.player_id)} ${how}` };
    }
    case "chat.message":
      return {
        seq,
        kind: "chat",
        channel: event.data.channel,
        text: `${nickname(m, event.data.player_id)}: ${event.data.text}`,
      };
    case "game.started": {
      const r = event.data.roles;
      const dealt = `${r.mafia} mafia, ${r.doctor} doctor, ${r.detective} detective`;
      return { seq, kind: "game", text: `The game started (${dealt})` };
    }
    case "role.assigned":
      return { seq, kind: "game", text: `You are ${article(event.data.role)} ${event.data.role}` };
    case "phase.started": {
      const d = event.data;
      let text = `Round ${d.round}: ${d.phase}`;
      if (d.phase === "day" && d.killed_player_id === null) text += " (nobody died in the night)";
      return { seq, kind: "phase", text };
    }
    case "vote.closed": {
      const d = event.data;
      if (d.action !== "kill" && d.action !== "eliminate") return null;
      const counts = d.tally
        .map((t) => `${t.target_player_id ? nickname(m, t.target_player_id) : "abstained"} ${t.votes}`)
        .join(", ");
      const who = d.eliminated_player_id ? nickname(m, d.eliminated_player_id) : "nobody";
      return { seq, kind: "vote", text: `${ACTION_WORDS[d.action]}: ${who} (${counts || "no votes"})` };
    }
    case "night.result": {
      const d = event.data;
      return { seq, kind: "result", text: `Your investigation: ${nickname(m, d.target_player_id)} is ${d.team}` };
    }
    case "player.eliminated": {
      const d = event.data;
      const how = d.cause === "killed" ? "was killed in the night" : "was voted out";
      const role = d.role ? ` (${d.role})` : "";
      return { seq, kind: "death", text: `${nickname(m, d.player_id)} ${how}${role}` };
    }
    case "game.finished":
      return { seq, kind: "finish", text: `Game over: ${event.data.winner} wins` };
    case "room.closed": {
      const why = event.data.reason === "idle" ? "nobody was here" : "everyone had left the game";
      return { seq, kind: "finish", text: `The room closed: ${why}` };
    }
    default:
      return null;
  }
}

function article(word: string): string {
  return /^[aeiou]/.test(word) ? "an" : "a";
}

/** Move the model forward by one event (the caller skips events it has already applied). */
export function apply(m: Model, event: RoomEvent): void {
  m.lastSeq = Math.max(m.lastSeq, event.seq);
  switch (event.type) {
    case "player.joined":
      upsertPlayer(m, event.data.player);
      m.room = { ...m.room, player_count: m.players.length };
      break;
    case "player.left":
      m.players = m.players.filter((p) => p.id !== event.data.player_id);
      m.room = { ...m.room, player_count: m.players.length };
      if (event.data.player_id === m.meId) m.removed = true;
      break;
    case "room.updated":
      m.room = event.data.room;
      for (const p of m.players) p.is_host = p.id === m.room.host_player_id;
      break;
    case "presence.changed":
      patchPlayer(m, event.data.player_id, { connected: event.data.connected });
      break;
    case "role.assigned": {
      const d = event.data;
      patchPlayer(m, d.player_id, { role: d.role, team: d.team });
      m.teammates = [...d.teammates];
      // Mafia members learn each other.
      if (d.role === "mafia") for (const id of d.teammates) patchPlayer(m, id, { team: d.team, role: "mafia" });
      break;
    }
    case "game.started":
      m.room = event.data.room;
      m.votes = [];
      break;
    case "phase.started": {
      const d = event.data;
      m.room = { ...m.room, status: "in_progress", round: d.round, phase: d.phase, phase_ends_at: d.ends_at };
      m.votes = [];
      break;
    }
    case "vote.cast": {
      const d = event.data;
      m.votes = m.votes.filter((v) => !(v.voter_id === d.voter_id && v.round === d.round && v.phase === d.phase));
      m.votes.push({ ...d });
      break;
    }
    case "night.result":
      m.investigations.push(event.data);
      break;
    case "player.eliminated":
      patchPlayer(m, event.data.player_id, event.data.role ? { alive: false, role: event.data.role } : { alive: false });
      break;
    case "game.finished": {
      const d = event.data;
      m.final = d;
      for (const p of d.players) upsertPlayer(m, p);
      m.room = { ...m.room, status: "finished", winner: d.winner, phase: null, phase_ends_at: null };
      m.votes = [];
      break;
    }
    case "room.closed":
      m.room = event.data.room;
      for (const p of m.players) p.is_host = false;
      m.votes = [];
      break;
    default:
      break;
  }
}
