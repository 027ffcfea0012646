"""The SDK's bots act only from the options the server lists: their shape, their picks, once per phase."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError
from roundtable.bots import Bot, RandomStrategy, View, action_for
from roundtable.contract import api, events
from roundtable.session import Action, as_action

PLAYERS = [uuid.uuid4() for _ in range(6)]
ROOM = uuid.uuid4()
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def option(
    type_: api.ActionType,
    *,
    targets: list[uuid.UUID] | None = None,
    pick: int = 0,
    abstain: bool = False,
    choices: list[str] | None = None,
) -> api.Option:
    return api.Option(
        type=type_,
        vote_action=None,
        targets=targets or [],
        pick=pick,
        abstain=abstain,
        choices=choices or [],
    )


def test_the_option_alone_gives_the_action_its_shape() -> None:
    """pick 1 sends `target_player_id`, pick > 1 `player_ids`, choices a `choice`: whatever the type."""
    one = action_for(option(api.ActionType.vote, targets=PLAYERS, pick=1, abstain=True), targets=[PLAYERS[2]])
    assert isinstance(one, api.CastVoteAction)
    assert one.target_player_id == PLAYERS[2]
    abstained = action_for(option(api.ActionType.vote, targets=PLAYERS, pick=1, abstain=True))
    assert isinstance(abstained, api.CastVoteAction)
    assert abstained.target_player_id is None
    team = action_for(option(api.ActionType.propose, targets=PLAYERS, pick=3), targets=PLAYERS[:3])
    assert isinstance(team, api.ProposeTeamAction)
    assert team.player_ids == PLAYERS[:3]
    approve = action_for(option(api.ActionType.approve, choices=["approve", "reject"]), choice="reject")
    assert isinstance(approve, api.ApproveTeamAction)
    assert approve.choice is api.ApprovalChoice.reject
    mission = action_for(option(api.ActionType.mission, choices=["success"]), choice="success")
    assert isinstance(mission, api.MissionChoiceAction)


@pytest.mark.parametrize(
    ("offered", "kwargs"),
    [
        (option(api.ActionType.propose, targets=PLAYERS, pick=3), {"targets": PLAYERS[:2]}),
        (option(api.ActionType.propose, targets=PLAYERS[:4], pick=2), {"targets": [PLAYERS[0], PLAYERS[5]]}),
        (option(api.ActionType.propose, targets=PLAYERS, pick=2), {"targets": [PLAYERS[0], PLAYERS[0]]}),
        (option(api.ActionType.propose, targets=PLAYERS, pick=2), {}),
        (option(api.ActionType.mission, choices=["success"]), {"choice": "fail"}),
    ],
)
def test_a_pick_the_option_does_not_offer_is_refused_before_it_is_sent(
    offered: api.Option, kwargs: dict[str, Any]
) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - the message names the option, not a class of error
        action_for(offered, **kwargs)


def test_the_random_strategy_picks_exactly_among_the_options() -> None:
    """Each pick is `pick` distinct players of `targets`, or one of `choices`; abstains only if allowed."""
    strategy = RandomStrategy(seed=3, abstain=0.5)
    view = View(me=PLAYERS[0])
    team = option(api.ActionType.propose, targets=PLAYERS[1:], pick=3)
    vote = option(api.ActionType.vote, targets=PLAYERS[:2], pick=1, abstain=True)
    spy = option(api.ActionType.mission, choices=["success", "fail"])
    seen_choices, abstained, voted = set(), 0, 0
    for _ in range(200):
        proposal = strategy.choose(view, team)
        assert isinstance(proposal, api.ProposeTeamAction)
        assert len(set(proposal.player_ids)) == 3
        assert set(proposal.player_ids) <= set(PLAYERS[1:])
        cast = strategy.choose(view, vote)
        assert isinstance(cast, api.CastVoteAction)
        if cast.target_player_id is None:
            abstained += 1
        else:
            assert cast.target_player_id in PLAYERS[:2]
            voted += 1
        chosen = strategy.choose(view, spy)
        assert isinstance(chosen, api.MissionChoiceAction)
        seen_choices.add(chosen.choice.value)
    assert seen_choices == {"success", "fail"}
    assert abstained
    assert voted


def test_an_action_can_be_written_as_a_dict() -> None:
    assert as_action({"type": "approve", "choice": "approve", "attempt": 2}) == api.ApproveTeamAction(
        type="approve", choice=api.ApprovalChoice.approve, attempt=2
    )
    with pytest.raises(ValidationError):
        as_action({"type": "approve", "choice": "maybe"})


class FakeSession:
    """What a Bot needs of a RoomSession, recording the actions it takes."""

    def __init__(self) -> None:
        self.player_id = PLAYERS[0]
        self.room = type("R", (), {"host_player_id": PLAYERS[1]})()
        self.actions: list[Action] = []

    async def act(self, action: Action, *, idempotency_key: str | None = None) -> None:
        self.actions.append(action)


def started(
    round_: int, phase: api.Phase, attempt: int | None = None, seq: int = 1
) -> events.PhaseStartedEvent:
    data = events.PhaseStartedData(round=round_, phase=phase, ends_at=NOW)
    if attempt is not None:
        data.attempt = attempt
    return events.PhaseStartedEvent(seq=seq, room_id=ROOM, type="phase.started", at=NOW, data=data)


def offered(
    options: list[api.Option], player: uuid.UUID = PLAYERS[0], seq: int = 2
) -> events.OptionsChangedEvent:
    data = events.OptionsChangedData(player_id=player, options=options)
    return events.OptionsChangedEvent(seq=seq, room_id=ROOM, type="options.changed", at=NOW, data=data)


async def test_a_bot_takes_each_offer_once_guarded_by_the_phase_it_was_offered_in() -> None:
    """Options repeated within a phase are taken once; the same options in the next proposal again;
    another player's options never; each action carries the round, phase and attempt it was for."""
    session = FakeSession()
    bot = Bot(session, RandomStrategy(seed=1))  # type: ignore[arg-type]
    approve = [option(api.ActionType.approve, choices=["approve", "reject"])]
    await bot.handle(started(2, api.Phase.approve, attempt=1))
    await bot.handle(offered(approve))
    await bot.handle(offered(approve))
    await bot.handle(offered(approve, player=PLAYERS[3]))
    await bot.handle(offered([]))
    assert len(session.actions) == 1
    await bot.handle(started(2, api.Phase.approve, attempt=2))
    await bot.handle(offered(approve))
    assert [(a.round, a.phase, getattr(a, "attempt", None)) for a in session.actions] == [
        (2, api.Phase.approve, 1),
        (2, api.Phase.approve, 2),
    ]
    await bot.handle(started(2, api.Phase.mission))
    await bot.handle(offered([option(api.ActionType.mission, choices=["success"])]))
    last = session.actions[-1]
    assert isinstance(last, api.MissionChoiceAction)
    assert (last.round, last.phase, last.choice) == (2, api.Phase.mission, api.MissionChoice.success)


async def test_a_bot_without_options_does_nothing_whatever_the_phase() -> None:
    """No option, no action: the bot never infers from its role or the phase that it may act."""
    session = FakeSession()
    bot = Bot(session, RandomStrategy(seed=1))  # type: ignore[arg-type]
    bot.view.role = api.Role.mafia
    for phase in (api.Phase.night, api.Phase.vote, api.Phase.propose, api.Phase.approve, api.Phase.mission):
        await bot.handle(
            started(1, phase, attempt=1 if phase in (api.Phase.propose, api.Phase.approve) else None)
        )
    assert session.actions == []


def room(game: int, status: str = "in_progress") -> api.Room:
    settings = {
        "ruleset": "mafia",
        "max_players": 10,
        "roles": None,
        "night_seconds": 60,
        "day_seconds": 120,
        "vote_seconds": 60,
        "reveal_on_death": True,
        "private": False,
    }
    return api.Room.model_validate(
        {
            "id": str(ROOM),
            "code": "K7QXMB",
            "name": "Rematch",
            "ruleset": "mafia",
            "status": status,
            "settings": settings,
            "host_player_id": str(PLAYERS[1]),
            "player_count": len(PLAYERS),
            "game": game,
            "round": 0,
            "phase": None,
            "phase_ends_at": None,
            "winner": None,
            "created_at": NOW.isoformat(),
        }
    )


async def test_a_rematch_deals_the_bot_a_new_role_and_its_first_night_again() -> None:
    """At a rematch's game.started a bot forgets game 1's role, teammates, deaths and the moves
    it made: game 2's night 1 offer is taken although game 1's night 1 was, and the bot holds
    the role game 2 deals it."""
    session = FakeSession()
    bot = Bot(session, RandomStrategy(seed=1))  # type: ignore[arg-type]
    bot.view.present = set(PLAYERS)
    night = [option(api.ActionType.vote, targets=PLAYERS[1:], pick=1)]

    def game_started(game: int, seq: int) -> events.GameStartedEvent:
        data = events.GameStartedData(room=room(game), roles=None)
        return events.GameStartedEvent(seq=seq, room_id=ROOM, type="game.started", at=NOW, data=data)

    def dealt(role: api.Role, team: api.Team, seq: int) -> events.RoleAssignedEvent:
        data = events.RoleAssignedData(player_id=PLAYERS[0], role=role, team=team, teammates=[PLAYERS[2]])
        return events.RoleAssignedEvent(seq=seq, room_id=ROOM, type="role.assigned", at=NOW, data=data)

    await bot.handle(game_started(1, 1))
    await bot.handle(dealt(api.Role.mafia, api.Team.mafia, 2))
    await bot.handle(started(1, api.Phase.night, seq=3))
    await bot.handle(offered(night, seq=4))
    eliminated = events.PlayerEliminatedData(
        round=1, player_id=PLAYERS[3], cause=events.EliminationCause.killed, role=None
    )
    await bot.handle(
        events.PlayerEliminatedEvent(seq=5, room_id=ROOM, type="player.eliminated", at=NOW, data=eliminated)
    )
    finished = events.GameFinishedData(winner=api.Team.town, players=[], votes=[])
    await bot.handle(
        events.GameFinishedEvent(seq=6, room_id=ROOM, type="game.finished", at=NOW, data=finished)
    )
    assert bot.played == [(api.Role.mafia, api.Team.town)]
    assert PLAYERS[3] not in bot.view.alive

    await bot.handle(game_started(2, 7))
    v = bot.view
    assert (v.game, v.role, v.teammates, v.winner, v.status) == (
        2,
        None,
        set(),
        None,
        api.RoomStatus.in_progress,
    )
    assert v.alive == set(PLAYERS)
    await bot.handle(dealt(api.Role.doctor, api.Team.town, 8))
    await bot.handle(started(1, api.Phase.night, seq=9))
    await bot.handle(offered(night, seq=10))
    assert len(session.actions) == 2
    assert bot.view.role is api.Role.doctor
