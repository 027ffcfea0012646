// Around the game: watching a room, quick join, a rematch and each game's rounds; and the two
// things a client's fold of the stream must know about them.
import type { GameStartedEvent } from "./generated/events.js";
import type {
  Player,
  QuickJoinRequest,
  Room,
  RoomSession,
  RoomState,
  RoundList,
  SpectatorSession,
  WatchRoomRequest,
} from "./generated/openapi.js";
import { unwrap, type RoundtableClient } from "./client.js";

/**
 * Join the fullest public lobby of a ruleset with a free seat, or a new one with the caller
 * as its host (`POST /v1/quick-join`, the operation `quickJoin`). Answers as a join does.
 */
export async function quickJoin(client: RoundtableClient, body: QuickJoinRequest): Promise<RoomSession> {
  return unwrap(await client.POST("/v1/quick-join", { body }));
}

/**
 * Watch a room (`POST /v1/rooms/{room_id}/spectators`, the operation `watchRoom`): a public
 * room by its id, a private one with its `code`. The spectator's token reads the state (its
 * `me` is null), the rounds and the streams, and sees only what is public; every command
 * with it is refused with `403 spectator`.
 */
export async function watchRoom(
  client: RoundtableClient,
  roomId: string,
  body: WatchRoomRequest = {},
): Promise<SpectatorSession> {
  return unwrap(await client.POST("/v1/rooms/{room_id}/spectators", { params: { path: { room_id: roomId } }, body }));
}

/**
 * Start another game in the room once its game is finished (host only; `POST
 * /v1/rooms/{room_id}/rematch`, the operation `rematchGame`). The new game's `game.started`
 * comes on the open streams: fold it with `playersForNewGame`.
 */
export async function rematchGame(client: RoundtableClient, roomId: string): Promise<Room> {
  return unwrap(await client.POST("/v1/rooms/{room_id}/rematch", { params: { path: { room_id: roomId } } }));
}

/**
 * The rounds the caller may see (`GET /v1/rooms/{room_id}/rounds`, the operation
 * `listRounds`): of the room's newest game, or of `game` (1 for the first).
 */
export async function listRounds(
  client: RoundtableClient,
  roomId: string,
  options: { game?: number } = {},
): Promise<RoundList> {
  const query = options.game !== undefined ? { game: options.game } : undefined;
  return unwrap(
    await client.GET("/v1/rooms/{room_id}/rounds", {
      params: { path: { room_id: roomId }, ...(query ? { query } : {}) },
    }),
  );
}

/** Whether a state (or a snapshot's `data`) is a spectator's: it has no `me`. */
export function isSpectatorState(state: Pick<RoomState, "me">): boolean {
  return state.me === null;
}

/**
 * Whether `event` starts a game the fold has not seen yet: the first one, or a rematch
 * (its `room.game` is higher than the `game` the fold holds).
 */
export function startsNewGame(event: GameStartedEvent, game: number): boolean {
  return event.data.room.game > game;
}

/**
 * The players as a new game (a rematch's, too) finds them: everyone alive, nobody's role or
 * team known until the new game deals it (`role.assigned`, or the end). The last game's
 * roles are not this one's.
 */
export function playersForNewGame<P extends Pick<Player, "alive" | "role" | "team">>(players: readonly P[]): P[] {
  return players.map((player) => ({ ...player, alive: true, role: null, team: null }));
}
