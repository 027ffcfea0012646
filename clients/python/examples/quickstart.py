"""Create a room, let three bots join, start, and print what the host sees until the end.

python clients/python/examples/quickstart.py http://127.0.0.1:8000
"""

from __future__ import annotations

import asyncio
import sys

from roundtable import Bot, RandomStrategy, RoomSession
from roundtable.contract import api, events


async def main(url: str) -> None:
    settings = api.MafiaSettingsInput(night_seconds=3, day_seconds=3, vote_seconds=3)
    host = await RoomSession.create(url, name="Quickstart", nickname="Ada", settings=settings)
    guests = [await RoomSession.join(url, nickname=name, code=host.room.code) for name in ("Bo", "Cy", "Di")]
    bots = [asyncio.create_task(Bot(g, RandomStrategy(seed=i)).run()) for i, g in enumerate(guests)]
    me = Bot(host, RandomStrategy(seed=42))
    await host.start()
    async for event in host.events():
        await me.handle(event)
        if isinstance(event, events.PhaseStartedEvent):
            print(f"round {event.data.round}: {event.data.phase.value} until {event.data.ends_at:%H:%M:%S}")
        elif isinstance(event, events.PlayerEliminatedEvent):
            print(f"  {me.name(event.data.player_id)} is out ({event.data.cause.value})")
        elif isinstance(event, events.GameFinishedEvent):
            print(f"{event.data.winner.value} wins")
            break
    await asyncio.gather(*bots)
    for session in [host, *guests]:
        await session.aclose()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8000"))
