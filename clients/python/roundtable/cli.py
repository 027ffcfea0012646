"""`roundtable-bots`: fill a room with bots (or create one) and play a game to the end, and
with `--rematch N` N more games in the same room."""

from __future__ import annotations

import argparse
import asyncio
import sys
import uuid
from typing import Any

from roundtable.bots import STRATEGIES, Bot
from roundtable.contract import api
from roundtable.errors import RoundtableError
from roundtable.session import RoomSession


def parse(argv: list[str] | None) -> argparse.Namespace:
    """Read the command line."""
    parser = argparse.ArgumentParser(prog="roundtable-bots", description=__doc__)
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="the server (default %(default)s)")
    parser.add_argument("--room", help="join the room with this code; without it the bots create one")
    parser.add_argument("--count", type=int, required=True, help="how many bots")
    parser.add_argument(
        "--ruleset",
        choices=[r.value for r in api.Ruleset],
        default=api.Ruleset.mafia.value,
        help="the game of a room the bots create (default %(default)s); a joined room has its own",
    )
    parser.add_argument("--strategy", choices=sorted(STRATEGIES), default="random")
    parser.add_argument("--phase-seconds", type=int, default=5, help="phase length of a room the bots create")
    parser.add_argument("--seed", type=int, default=None, help="make the strategies repeatable")
    parser.add_argument(
        "--rematch",
        type=int,
        default=0,
        metavar="N",
        help="play N more games in the same room after the first (the room's host starts each)",
    )
    args = parser.parse_args(argv)
    # What a room of each ruleset holds; the server refuses the rest, this only says it sooner.
    least, most = {"mafia": (4, 20), "missions": (5, 10)}[args.ruleset]
    if args.count < 1 or (args.room is None and not least <= args.count <= most):
        parser.error(
            f"a {args.ruleset} room holds {least}-{most} players: --count of {least}-{most} without --room,"
            " at least 1 with it"
        )
    if not 1 <= args.phase_seconds <= 3600:
        parser.error("--phase-seconds must be 1-3600")
    if not 0 <= args.rematch <= 100:
        parser.error("--rematch must be 0-100")
    return args


async def play(args: argparse.Namespace) -> list[api.Team]:
    """Create or join, start when everyone is in (as host), play to the end (and the
    rematches); return each game's winner."""
    tag = uuid.uuid4().hex[:4]
    sessions: list[RoomSession] = []
    try:
        if args.room is None:
            seconds = args.phase_seconds
            settings: api.MafiaSettingsInput | api.MissionsSettingsInput
            if args.ruleset == api.Ruleset.missions.value:
                settings = api.MissionsSettingsInput(
                    max_players=args.count,
                    propose_seconds=seconds,
                    approve_seconds=seconds,
                    mission_seconds=seconds,
                )
            else:
                settings = api.MafiaSettingsInput(
                    max_players=args.count,
                    night_seconds=seconds,
                    day_seconds=seconds,
                    vote_seconds=seconds,
                )
            host = await RoomSession.create(
                args.url, name=f"Bots {tag}", nickname=f"bot-{tag}-1", settings=settings
            )
            sessions.append(host)
            print(f"created room {host.room.code} ({host.room_id}) for {args.ruleset}", flush=True)
            for i in range(2, args.count + 1):
                sessions.append(
                    await RoomSession.join(args.url, nickname=f"bot-{tag}-{i}", room_id=host.room_id)
                )
        else:
            for i in range(1, args.count + 1):
                sessions.append(await RoomSession.join(args.url, nickname=f"bot-{tag}-{i}", code=args.room))
            print(f"joined room {args.room} with {args.count} bots", flush=True)
        make = STRATEGIES[args.strategy]
        bots = [
            Bot(s, make(None if args.seed is None else args.seed + i), on_progress=print if i == 0 else None)
            for i, s in enumerate(sessions)
        ]
        games = [asyncio.create_task(bot.run(games=1 + args.rematch)) for bot in bots]
        if args.room is None:
            # Start only when every bot is listening, or a slow stream misses the first night.
            await until_ready(bots, games)
            await sessions[0].start()
        await asyncio.gather(*games)
        return [winner for _, winner in bots[0].played]
    finally:
        for s in sessions:
            await s.aclose()


async def until_ready(bots: list[Bot], games: list[asyncio.Task[api.Team]]) -> None:
    """Wait until every bot's stream has delivered its first item; raise if a bot failed first."""
    ready: asyncio.Future[Any] = asyncio.ensure_future(asyncio.gather(*(bot.ready.wait() for bot in bots)))
    waiting: list[asyncio.Future[Any]] = [ready, *games]
    done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
    if ready not in done:
        ready.cancel()
        for game in done:
            game.result()  # a bot's stream was refused: raise its error


def main(argv: list[str] | None = None) -> int:
    """Run the bots; exit 0 with each game's winner printed, 1 when the server refused."""
    args = parse(argv)
    try:
        winners = asyncio.run(play(args))
    except RoundtableError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    for winner in winners:
        print(f"winner: {winner.value}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
