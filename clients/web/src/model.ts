// The page's model of one room as this player (or a spectator) sees it: built from a snapshot
// (or GET /state), then moved forward by each event in seq order. Pure: no DOM, no network.
//
// A spectator's state has no `me` (meId is null): it sees only what is public, and has no
// options. A rematch comes as a new `game.started` (its `room.game` one higher): the last
// game's roles, teams, deaths and reveal are dropped there, and the new deal comes as events.
//
// It knows no game's rules: what this player may do now is the server's `options` (the state's,
// then each `options.changed`), and a missions game's public state is the server's `board`, moved
// on by the events that tell its changes.

import {
  playersForNewGame,
  startsNewGame,
  type ActionRequest,
  type MissionsBoard,
  type Option,
  type Player,
  type Room,
  type RoomEvent,
  type RoomState,
} from "@roundtable/client";

export type Vote = RoomState["votes"][number];
export type Phase = NonNullable<Room["phase"]>;
export type Team = NonNullable<Player["team"]>;
type EventOf<T extends RoomEvent["type"]> = Extract<RoomEvent, { type: T }>;
/** What the detective learned: in which round, about whom, which team. */
export type Investigation = Pick<EventOf<"night.result">["data"], "round" | "target_player_id" | "team">;
export type Final = EventOf<"game.finished">["data"];
export type ApprovalResult = EventOf<"approval.closed">["data"];

/** One line of the room's history: chat, or something that happened. */
export interface LogLine {
  seq: number;
  kind:
    | "chat"
    | "join"
    | "leave"
    | "game"
    | "phase"
    | "death"
    | "vote"
    | "result"
    | "finish"
    | "leader"
    | "proposal"
    | "approval"
    | "mission";
  text: string;
  /** Chat only: who hears it (`room` or `mafia`). */
  channel?: string;
}

/** An action this page sent and the server accepted, with the opening of the phase it was for. */
export interface Sent {
  key: string;
  action: ActionRequest;
}

export interface Model {
  room: Room;
  /** Present players by seat. */
  players: Player[];
  /** This player's id; null for a spectator, who watches and never acts. */
  meId: string | null;
  teammates: string[];
  /** The votes of the open phase this player may see. */
  votes: Vote[];
  /** What this player may do now, as the server lists it. */
  options: Option[];
  /** A missions game's public state; null for mafia and in the lobby. */
  board: MissionsBoard | null;
  /** The newest closed approval this page saw live (the history keeps every one). */
  approval: ApprovalResult | null;
  /**
   * What this player sent in the open phase: a sealed vote is never streamed back, so the page
   * remembers its own.
   */
  sent: Sent | null;
  /** The seq of the newest event this model reflects. */
  lastSeq: number;
  investigations: Investigation[];
  final: Final | null;
  /** Set when this player is no longer in the room (left or kicked). */
  removed: boolean;
}

/** Build the model from the caller's state (a snapshot's data, or GET /state). */
export function fromState(state: RoomState, sent: Sent | null = null): Model {
  const players = [...state.players].sort((a, b) => a.seat - b.seat);
  const finished = state.room.status === "finished" && state.room.winner != null;
  const m: Model = {
    room: state.room,
    players,
    meId: state.me?.id ?? null,
    teammates: [...state.teammates],
    votes: [...state.votes],
    options: [...state.options],
    board: state.board ? structuredClone(state.board) : null,
    approval: null,
    sent: null,
    lastSeq: state.last_seq,
    investigations: [],
    final: finished ? { winner: state.room.winner as Team, players, votes: [] } : null,
    removed: false,
  };
  if (sent && sent.key === phaseKey(m)) m.sent = sent;
  return m;
}

/** The open phase's key: its round, phase and (missions) proposal; "" when no phase is open. */
export function phaseKey(m: Model): string {
  if (m.room.status !== "in_progress" || !m.room.phase) return "";
  return `${m.room.round}:${m.room.phase}:${m.board?.attempt ?? 1}`;
}

export function me(m: Model): Player | undefined {
  return m.meId === null ? undefined : m.players.find((p) => p.id === m.meId);
}

/** Whether the page watches the room as a spectator (no seat, no action, no chat). */
export function spectating(m: Model): boolean {
  return m.meId === null;
}

export function nickname(m: Model, id: string | null | undefined): string {
  if (id == null) return "nobody";
  return m.players.find((p) => p.id === id)?.nickname ?? "a former player";
}

export function isHost(m: Model): boolean {
  return m.meId !== null && m.room.host_player_id === m.meId;
}

/** True in a game that needs a board the model lacks (it started after the snapshot): read the state again. */
export function needsBoard(m: Model): boolean {
  return m.room.ruleset === "missions" && m.room.status === "in_progress" && m.board === null;
}

/** What this player did in the open phase: their vote as the stream showed it, or what the page sent. */
export function myAction(m: Model): ActionRequest | undefined {
  const key = phaseKey(m);
  if (!key) return undefined;
  if (m.meId === null) return undefined;
  const vote = m.votes.find((v) => v.voter_id === m.meId && v.round === m.room.round && v.phase === m.room.phase);
  if (vote && vote.choice === undefined) return { type: "vote", target_player_id: vote.target_player_id };
  return m.sent?.key === key ? m.sent.action : undefined;
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
  approve: "Approved",
};

function names(m: Model, ids: readonly string[]): string {
  return ids.map((id) => nickname(m, id)).join(", ");
}

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
      const dealt = r ? ` (${r.mafia} mafia, ${r.doctor} doctor, ${r.detective} detective)` : "";
      const which = event.data.room.game > 1 ? `Game ${event.data.room.game} started` : "The game started";
      return { seq, kind: "game", text: `${which}${dealt}` };
    }
    case "role.assigned":
      return { seq, kind: "game", text: `You are ${article(event.data.role)} ${event.data.role}` };
    case "phase.started": {
      const d = event.data;
      let text = `Round ${d.round}: ${d.phase}`;
      if (d.attempt !== undefined && d.attempt > 1) text += ` (proposal ${d.attempt})`;
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
    case "leader.changed": {
      const d = event.data;
      return { seq, kind: "leader", text: `${nickname(m, d.leader_id)} leads (round ${d.round}, proposal ${d.attempt})` };
    }
    case "team.proposed": {
      const d = event.data;
      return { seq, kind: "proposal", text: `${nickname(m, d.leader_id)} proposes ${names(m, d.player_ids)}` };
    }
    case "approval.closed": {
      const d = event.data;
      const yes = d.votes.filter((v) => v.choice === "approve").length;
      const every = d.votes.map((v) => `${nickname(m, v.voter_id)} ${v.choice}s`).join(", ");
      const result = d.approved ? "approved" : `rejected (${d.rejections} rejected this round)`;
      return { seq, kind: "approval", text: `Team ${result}, ${yes} of ${d.votes.length} approving: ${every}` };
    }
    case "mission.closed": {
      const d = event.data;
      const fails = `${d.fails} fail${d.fails === 1 ? "" : "s"}`;
      return { seq, kind: "mission", text: `Mission ${d.round} ${d.succeeded ? "succeeded" : "failed"}: ${fails}` };
    }
    case "game.finished":
      return { seq, kind: "finish", text: `Game over: ${event.data.winner} wins` };
    case "room.closed": {
      const why =
        event.data.reason === "idle"
          ? "nobody was here"
          : event.data.reason === "operator"
            ? "an operator closed it"
            : "everyone had left the game";
      return { seq, kind: "finish", text: `The room closed: ${why}` };
    }
    default:
      return null;
  }
}

function article(word: string): string {
  return /^[aeiou]/.test(word) ? "an" : "a";
}

/** Move the board on by an event that tells one of its changes. */
function applyToBoard(m: Model, board: MissionsBoard, event: RoomEvent): void {
  switch (event.type) {
    case "leader.changed": {
      const d = event.data;
      if (d.round !== m.room.round) {
        // A new mission: its own team size, and no rejection yet ("in this round so far").
        board.team_size = board.team_sizes[d.round - 1] ?? board.team_size;
        board.rejections = 0;
      }
      board.leader_player_id = d.leader_id;
      board.attempt = d.attempt;
      board.proposal = null;
      break;
    }
    case "team.proposed":
      board.proposal = [...event.data.player_ids];
      break;
    case "approval.closed":
      board.rejections = event.data.rejections;
      if (!event.data.approved) board.proposal = null;
      break;
    case "mission.closed": {
      const { round, team, fails, succeeded } = event.data;
      board.missions = [...board.missions.filter((r) => r.round !== round), { round, team: [...team], fails, succeeded }];
      board.proposal = null;
      break;
    }
    case "phase.started":
      if (event.data.attempt !== undefined) board.attempt = event.data.attempt;
      break;
    default:
      break;
  }
}

/** Move the model forward by one event (the caller skips events it has already applied). */
export function apply(m: Model, event: RoomEvent): void {
  m.lastSeq = Math.max(m.lastSeq, event.seq);
  if (m.board) applyToBoard(m, m.board, event);
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
      for (const id of d.teammates) patchPlayer(m, id, { team: d.team });
      break;
    }
    case "game.started":
      if (startsNewGame(event, m.room.game) && m.room.game > 0) {
        // A rematch: nobody's role of the last game holds in this one, everyone lives again.
        m.players = playersForNewGame(m.players);
        m.teammates = [];
        m.final = null;
        m.approval = null;
        m.board = null; // a missions board is dealt anew: read with the state (needsBoard)
        m.investigations = [];
      }
      m.room = event.data.room;
      m.votes = [];
      m.options = [];
      m.sent = null;
      break;
    case "phase.started": {
      const d = event.data;
      m.room = { ...m.room, status: "in_progress", round: d.round, phase: d.phase, phase_ends_at: d.ends_at };
      m.votes = [];
      // The options of the phase that closed are void; the server's options.changed for the new
      // one follows in the same commit.
      m.options = [];
      break;
    }
    case "options.changed":
      if (event.data.player_id === m.meId) m.options = [...event.data.options];
      break;
    case "vote.cast": {
      const d = event.data;
      m.votes = m.votes.filter((v) => !(v.voter_id === d.voter_id && v.round === d.round && v.phase === d.phase));
      m.votes.push({ ...d });
      break;
    }
    case "approval.closed":
      m.approval = event.data;
      break;
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
      m.options = [];
      break;
    }
    case "room.closed":
      m.room = event.data.room;
      for (const p of m.players) p.is_host = false;
      m.votes = [];
      m.options = [];
      break;
    default:
      break;
  }
}
