"""The pure mafia rules, driven by hypothesis through whole random games."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backend.domain.errors import RuleError
from backend.games.mafia import rules as mafia
from backend.games.mafia.rules import (
    Action,
    Ballot,
    Eliminated,
    Fact,
    Finished,
    Game,
    Investigated,
    Phase,
    PhaseBegan,
    Protected,
    Role,
    RoleDealt,
    Seat,
    Team,
    VoteCast,
    VoteClosed,
)
from backend.games.mafia.ruleset import RULESET as MAFIA
from backend.games.projection import Viewer, may_see
from backend.games.protocol import EVERYONE, Audience, Visibility
from backend.games.replay import replay

STRANGER = "stranger"  # an id that is never dealt into a game
NEXT_PHASE = {Phase.night: Phase.day, Phase.day: Phase.vote, Phase.vote: Phase.night}
NIGHT_ACTIONS = {Role.mafia: Action.kill, Role.doctor: Action.protect, Role.detective: Action.investigate}


# The rules as PRODUCT.md states them, written independently of the module under test.


def may_act(phase: Phase | None, role: Role) -> Action | None:
    """Return what a living player of `role` does in `phase`, if anything."""
    if phase is Phase.vote:
        return Action.eliminate
    if phase is Phase.night:
        return NIGHT_ACTIONS.get(role)
    return None


def seat_of(game: Game, player_id: str) -> Seat | None:
    return next((s for s in game.seats if s.player_id == player_id), None)


def alive_of(seats: Sequence[Seat], team: Team) -> int:
    return sum(1 for s in seats if s.alive and (s.role is Role.mafia) == (team is Team.mafia))


def decided(seats: Sequence[Seat]) -> Team | None:
    """Town wins when no mafia is alive; mafia wins when alive mafia ≥ alive town."""
    if alive_of(seats, Team.mafia) == 0:
        return Team.town
    if alive_of(seats, Team.mafia) >= alive_of(seats, Team.town):
        return Team.mafia
    return None


def target_allowed(game: Game, voter: Seat, action: Action, target_id: str) -> bool:
    target = seat_of(game, target_id)
    if target is None or not target.alive:
        return False
    if action is Action.kill:
        return target.role is not Role.mafia
    if action in (Action.investigate, Action.eliminate):
        return target.player_id != voter.player_id
    return True  # the doctor may protect any living player


def vote_refusals(
    game: Game, voter_id: str, target_id: str | None, expected: tuple[int, Phase] | None
) -> set[type[RuleError]]:
    """Return every reason the rules give to refuse this vote; empty when it is legal."""
    if game.winner is not None:
        return {mafia.GameNotInProgress}
    refusals: set[type[RuleError]] = set()
    if expected is not None and expected != (game.round, game.phase):
        refusals.add(mafia.PhaseClosed)
    voter = seat_of(game, voter_id)
    if voter is None:
        refusals.add(mafia.NotAPlayer)
    elif not voter.alive:
        refusals.add(mafia.PlayerDead)
    elif (action := may_act(game.phase, voter.role)) is None:
        refusals.add(mafia.CannotAct)
    elif target_id is not None and not target_allowed(game, voter, action, target_id):
        refusals.add(mafia.InvalidTarget)
    return refusals


def strict_top(ballots: Sequence[Ballot]) -> str | None:
    """Return the target with strictly the most votes; a tie or no votes is nobody."""
    counts = Counter(b.target_id for b in ballots if b.target_id is not None)
    if not counts:
        return None
    most = max(counts.values())
    leaders = [target for target, n in counts.items() if n == most]
    return leaders[0] if len(leaders) == 1 else None


def check_tally(tally: Sequence[tuple[str | None, int]], ballots: Sequence[Ballot]) -> None:
    assert dict(tally) == Counter(b.target_id for b in ballots)
    assert len(tally) == len(dict(tally))
    assert [n for _, n in tally] == sorted((n for _, n in tally), reverse=True)


def check_invariants(game: Game) -> None:
    """Check what must hold of every game a command returns."""
    assert game.finished == (game.winner is not None) == (game.phase is None)
    # The game ends exactly when it is decided, never later, and names the right winner.
    assert game.winner == decided(game.seats) == mafia.winner_of(game.seats)
    for voter_id, ballot in game.ballots.items():
        assert ballot.voter_id == voter_id
        voter = seat_of(game, voter_id)
        assert voter is not None
        assert voter.alive
        assert ballot.action is mafia.action_of(game, voter)
        assert ballot.action is may_act(game.phase, voter.role)
        assert ballot.target_id is None or target_allowed(game, voter, ballot.action, ballot.target_id)
    if game.phase not in (Phase.night, Phase.vote):
        assert not game.ballots
    acting = [s for s in game.seats if s.alive and may_act(game.phase, s.role) is not None]
    assert mafia.everyone_acted(game) == (
        game.phase in (Phase.night, Phase.vote) and all(s.player_id in game.ballots for s in acting)
    )


def check_advance(old: Game, new: Game, facts: Sequence[Fact]) -> None:
    """Check one successful `advance` against the rules of the phase it closed."""
    assert old.phase is not None
    assert [(s.player_id, s.role) for s in new.seats] == [(s.player_id, s.role) for s in old.seats]
    assert new.reveal_on_death == old.reveal_on_death
    assert not new.ballots
    ends = [f for f in facts if isinstance(f, PhaseBegan | Finished)]
    assert len(ends) == 1
    assert facts[-1] == ends[0]

    # Nobody comes back; whoever dies is reported by exactly one Eliminated fact.
    eliminations = [f for f in facts if isinstance(f, Eliminated)]
    assert len(eliminations) <= 1
    before = {s.player_id for s in old.seats if s.alive}
    after = {s.player_id for s in new.seats if s.alive}
    assert after <= before
    assert before - after == {e.player_id for e in eliminations}
    for team in Team:
        lost = sum(1 for e in eliminations if mafia.team_of(e.role) is team)
        assert alive_of(new.seats, team) == alive_of(old.seats, team) - lost

    ballots = list(old.ballots.values())
    if old.phase is Phase.day:
        assert facts == [PhaseBegan(old.round, Phase.vote)]
        assert (new.round, new.phase, new.winner) == (old.round, Phase.vote, None)
        return
    side: list[Fact] = []
    if old.phase is Phase.night:
        counted = [b for b in ballots if b.action is Action.kill]
        protected = {b.target_id for b in ballots if b.action is Action.protect}
        top = strict_top(counted)
        out = top if top not in protected else None
        action, cause = Action.kill, "killed"
        following = PhaseBegan(old.round, Phase.day, out)
        for b in ballots:
            if b.target_id is None:
                continue
            target = seat_of(old, b.target_id)
            assert target is not None
            if b.action is Action.protect:
                side.append(Protected(old.round, b.voter_id, b.target_id))
            if b.action is Action.investigate:
                side.append(Investigated(old.round, b.voter_id, b.target_id, target.team))
    else:
        counted = [b for b in ballots if b.action is Action.eliminate]
        out = strict_top(counted)
        action, cause = Action.eliminate, "voted"
        following = PhaseBegan(old.round + 1, Phase.night)
    if out is not None:
        victim = seat_of(old, out)
        assert victim is not None
        side.append(Eliminated(old.round, out, cause, victim.role, old.reveal_on_death))
    closed = facts[0]
    assert isinstance(closed, VoteClosed)
    assert (closed.round, closed.phase, closed.action, closed.eliminated_player_id) == (
        old.round,
        old.phase,
        action,
        out,
    )
    check_tally(closed.tally, counted)
    assert Counter(facts[1:-1]) == Counter(side)
    winner = decided(new.seats)
    if winner is None:
        assert facts[-1] == following
        assert (new.round, new.phase, new.winner) == (following.round, following.phase, None)
    else:
        assert facts[-1] == Finished(winner)
        assert (new.phase, new.winner) == (None, winner)


def snapshot(game: Game) -> Game:
    """Return an equal game sharing nothing mutable: seats and ballots are frozen, the mapping is not."""
    return replace(game, ballots=dict(game.ballots))


@dataclass
class Run:
    """A game being played: every command is checked against the rules as it is made."""

    player_ids: list[str]
    game: Game
    facts: list[Fact]
    midgame: Game | None = None
    midgame_facts: int = 0
    opened: list[Game] = field(default_factory=list)  # the game after each successful advance

    def refused(self, error: RuleError, refusals: set[type[RuleError]], before: Game) -> None:
        assert type(error) in refusals, f"refused with {error.code} ({error.detail}); expected {refusals}"
        assert error.code
        assert error.code == type(error).code != RuleError.code
        assert self.game == before, "a refused command changed the game"

    def vote(self, voter_id: str, target_id: str | None, expected: tuple[int, Phase] | None = None) -> bool:
        game = self.game
        before = snapshot(game)
        refusals = vote_refusals(game, voter_id, target_id, expected)
        try:
            new, facts = mafia.vote(game, voter_id, target_id, expected=expected)
        except RuleError as error:
            self.refused(error, refusals, before)
            return False
        assert not refusals, f"{voter_id} → {target_id} accepted; expected a refusal: {refusals}"
        assert game == before, "a vote mutated the game it was cast in"
        voter = seat_of(game, voter_id)
        assert voter is not None
        assert game.phase is not None
        action = may_act(game.phase, voter.role)
        assert action is not None
        assert facts == [VoteCast(game.round, game.phase, action, voter_id, target_id)]
        assert new == replace(game, ballots={**game.ballots, voter_id: Ballot(voter_id, action, target_id)})
        check_invariants(new)
        self.game = new
        self.facts += facts
        return True

    def advance(self, expected: tuple[int, Phase] | None = None) -> bool:
        game = self.game
        before = snapshot(game)
        refusals: set[type[RuleError]] = set()
        if game.finished:
            refusals.add(mafia.GameNotInProgress)
        elif expected is not None and expected != (game.round, game.phase):
            refusals.add(mafia.PhaseClosed)
        try:
            new, facts = mafia.advance(game, expected=expected)
        except RuleError as error:
            self.refused(error, refusals, before)
            return False
        assert not refusals, f"advance accepted; expected a refusal: {refusals}"
        assert game == before, "advance mutated the game it closed"
        check_advance(game, new, facts)
        check_invariants(new)
        self.game = new
        self.facts += facts
        self.opened.append(new)
        return True


@st.composite
def deals(draw: st.DrawFn, player_count: int) -> dict[str, int] | None:
    """The default deal (None) or any deal the rules accept for `player_count` players."""
    if draw(st.booleans()):
        return None
    mafia_count = draw(st.integers(1, (player_count - 1) // 2))
    doctor = draw(st.integers(0, min(5, player_count - mafia_count)))
    detective = draw(st.integers(0, min(5, player_count - mafia_count - doctor)))
    return {"mafia": mafia_count, "doctor": doctor, "detective": detective}


player_lists = st.lists(st.uuids().map(str), min_size=4, max_size=20, unique=True)


def guards(game: Game) -> st.SearchStrategy[tuple[int, Phase] | None]:
    """No guard, the right (round, phase), or any nearby one."""
    nearby = st.tuples(st.integers(max(0, game.round - 1), game.round + 1), st.sampled_from(Phase))
    if game.phase is None:
        return st.none() | nearby
    return st.none() | st.just((game.round, game.phase)) | nearby


def random_step(data: st.DataObject, run: Run) -> None:
    """Make one random command: mostly votes by anyone for anyone, sometimes an advance."""
    game = run.game
    guard = data.draw(guards(game), label="expected")
    if data.draw(st.integers(0, 3), label="kind") == 0:
        run.advance(guard)
        return
    everyone = [*run.player_ids, STRANGER]
    acting = [s.player_id for s in game.alive() if may_act(game.phase, s.role) is not None]
    voters = st.sampled_from(acting) | st.sampled_from(everyone) if acting else st.sampled_from(everyone)
    voter = data.draw(voters, label="voter")
    target = data.draw(st.none() | st.just(voter) | st.sampled_from(everyone), label="target")
    run.vote(voter, target, guard)


def finish(run: Run, town_wins: bool) -> None:
    """Play to the end: the mafia kill the first town player; all vote out the first mafia (or town)."""
    for _ in range(100):
        game = run.game
        if game.finished:
            return
        assert game.phase is not None
        alive = game.alive()
        if game.phase is Phase.night:
            prey = next(s for s in alive if s.team is Team.town)
            for seat in alive:
                action = may_act(game.phase, seat.role)
                if action is Action.kill:
                    assert run.vote(seat.player_id, prey.player_id)
                elif action is not None:
                    assert run.vote(seat.player_id, None)
        elif game.phase is Phase.vote:
            suspect = next(s for s in alive if s.team is (Team.mafia if town_wins else Team.town))
            for seat in alive:
                target = None if seat is suspect else suspect.player_id
                assert run.vote(seat.player_id, target, expected=(game.round, game.phase))
        assert run.advance(expected=(game.round, game.phase))
    pytest.fail("the finishing strategy did not end the game")


def play(data: st.DataObject, max_steps: int = 80) -> Run:
    """Deal a random game, make random commands, then play it to its end."""
    player_ids = data.draw(player_lists, label="players")
    counts = data.draw(deals(len(player_ids)), label="counts")
    reveal = data.draw(st.booleans(), label="reveal_on_death")
    rng = random.Random(data.draw(st.integers(0, 2**32), label="seed"))
    game, facts = mafia.start(player_ids, counts, reveal_on_death=reveal, rng=rng)
    check_invariants(game)
    run = Run(player_ids, game, list(facts))
    for _ in range(data.draw(st.integers(0, max_steps), label="steps")):
        random_step(data, run)
    run.midgame, run.midgame_facts = run.game, len(run.facts)
    finish(run, town_wins=data.draw(st.booleans(), label="town_wins"))
    return run


def phase_cycle(count: int) -> list[tuple[int, Phase]]:
    phases = list(NEXT_PHASE)
    return [(1 + i // 3, phases[i % 3]) for i in range(count)]


@settings(max_examples=120, deadline=None)
@given(st.data())
def test_random_games_keep_the_rules_and_end_with_the_right_winner(data: st.DataObject) -> None:
    """Play random commands, then end the game: refusals change nothing and the right team wins."""
    run = play(data)
    game = run.game
    assert game.winner is not None
    mafia_alive, town_alive = alive_of(game.seats, Team.mafia), alive_of(game.seats, Team.town)
    assert (game.winner is Team.town) == (mafia_alive == 0)
    assert (game.winner is Team.mafia) == (mafia_alive > 0 and mafia_alive >= town_alive)

    # One Finished fact, the last, and the game ended at the first elimination that decided it.
    assert [f for f in run.facts if isinstance(f, Finished)] == [Finished(game.winner)]
    assert run.facts[-1] == Finished(game.winner)
    seats = {s.player_id: Seat(s.player_id, s.role) for s in game.seats}
    eliminations = [f for f in run.facts if isinstance(f, Eliminated)]
    assert eliminations
    for i, fact in enumerate(eliminations):
        assert seats[fact.player_id].alive
        seats[fact.player_id] = replace(seats[fact.player_id], alive=False)
        assert (decided(list(seats.values())) is None) == (i < len(eliminations) - 1)
    assert list(seats.values()) == list(game.seats)

    # Phases cycle night → day → vote from round 1; each advance opens one phase or ends the game.
    began = [(f.round, f.phase) for f in run.facts if isinstance(f, PhaseBegan)]
    assert began == phase_cycle(len(began))
    assert len(run.opened) == len(began) - 1 + len([f for f in run.facts if isinstance(f, Finished)])
    assert all(isinstance(f, RoleDealt) for f in run.facts[: len(game.seats)])


@settings(max_examples=200, deadline=None)
@given(player_ids=player_lists, data=st.data(), reveal=st.booleans(), seed=st.integers(0, 2**32))
def test_the_deal_gives_the_requested_roles_and_teammates(
    player_ids: list[str], data: st.DataObject, reveal: bool, seed: int
) -> None:
    """Deal the requested roles (or the default), tell each player theirs, and the mafia each other."""
    n = len(player_ids)
    counts = data.draw(deals(n), label="counts")
    game, facts = mafia.start(player_ids, counts, reveal_on_death=reveal, rng=random.Random(seed))
    wanted = counts or {
        "mafia": max(1, n // 4),
        "doctor": 1 if n >= 5 else 0,
        "detective": 1 if n >= 6 else 0,
    }
    dealt = Counter(s.role for s in game.seats)
    assert dealt[Role.mafia] == wanted["mafia"]
    assert dealt[Role.doctor] == wanted["doctor"]
    assert dealt[Role.detective] == wanted["detective"]
    assert dealt[Role.citizen] == n - sum(wanted.values())
    assert [s.player_id for s in game.seats] == player_ids
    assert all(s.alive for s in game.seats)
    assert (game.round, game.phase, game.winner, game.reveal_on_death) == (1, Phase.night, None, reveal)
    assert not game.ballots

    roles = [f for f in facts if isinstance(f, RoleDealt)]
    assert [f.player_id for f in roles] == player_ids
    assert facts == [*roles, PhaseBegan(1, Phase.night)]
    mafia_ids = {s.player_id for s in game.seats if s.role is Role.mafia}
    for fact, seat in zip(roles, game.seats, strict=True):
        assert fact.role is seat.role
        if seat.role is Role.mafia:
            assert sorted(fact.teammates) == sorted(mafia_ids - {seat.player_id})
        else:
            assert fact.teammates == ()


@settings(max_examples=300, deadline=None)
@given(
    n=st.integers(0, 25),
    counts=st.none()
    | st.fixed_dictionaries(
        {"mafia": st.integers(0, 12), "doctor": st.integers(0, 6), "detective": st.integers(0, 6)}
    ),
)
def test_impossible_deals_are_refused(n: int, counts: dict[str, int] | None) -> None:
    """Refuse 4 > n > 20 players, no mafia, mafia not fewer than town, or specials that do not fit."""
    player_ids = [f"p{i}" for i in range(n)]
    if not 4 <= n <= 20:
        expected: type[RuleError] | None = mafia.NotEnoughPlayers
    elif counts is None:
        expected = None
    elif counts["mafia"] < 1 or counts["mafia"] >= n - counts["mafia"] or sum(counts.values()) > n:
        expected = mafia.InvalidRoles
    else:
        expected = None
    if expected is None:
        game, _ = mafia.start(player_ids, counts, reveal_on_death=True, rng=random.Random(0))
        assert len(game.seats) == n
    else:
        with pytest.raises(expected) as refusal:
            mafia.start(player_ids, counts, reveal_on_death=True, rng=random.Random(0))
        assert refusal.value.code == expected.code


def seers(fact: Fact, seats: Sequence[Seat]) -> tuple[Audience, set[str]]:
    """Return the audience a fact is for, and who among the players and a stranger may see it."""
    everyone = {s.player_id for s in seats} | {STRANGER}
    mafia_ids = {s.player_id for s in seats if s.role is Role.mafia}
    if isinstance(fact, RoleDealt):
        return Audience(Visibility.player, fact.player_id), {fact.player_id}
    if isinstance(fact, VoteCast | VoteClosed) and fact.action is Action.kill:
        return Audience(Visibility.team, "mafia"), mafia_ids
    if isinstance(fact, VoteCast) and fact.action in (Action.protect, Action.investigate):
        return Audience(Visibility.player, fact.voter_id), {fact.voter_id}
    if isinstance(fact, Investigated):
        return Audience(Visibility.player, fact.detective_id), {fact.detective_id}
    if isinstance(fact, Protected):
        return Audience(Visibility.player, fact.doctor_id), {fact.doctor_id}
    return Audience(Visibility.room), everyone


def check_role_sight(game: Game) -> None:
    """Check who may know whose role in this game, for every player and a stranger."""
    viewers = [(s.player_id, s.team.value, s.role is Role.mafia) for s in game.seats]
    for viewer_id, viewer_team, viewer_is_mafia in [*viewers, (STRANGER, None, False)]:
        for seat in game.seats:
            expected = (
                game.finished
                or seat.player_id == viewer_id
                or (not seat.alive and game.reveal_on_death)
                or (viewer_is_mafia and seat.role is Role.mafia)
            )
            assert mafia.may_see_role(viewer_id, viewer_team, seat, game) == expected


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_hidden_facts_reach_only_their_audience(data: st.DataObject) -> None:
    """Show roles to their player, the kill to the mafia, the night's private results to their actor."""
    run = play(data)
    seats = run.game.seats
    viewers = [Viewer(s.player_id, s.team.value) for s in seats] + [Viewer(STRANGER, None)]
    for fact in run.facts:
        audience = mafia.audience_of(fact)
        expected_audience, expected_seers = seers(fact, seats)
        assert audience == expected_audience, fact
        assert {
            v.player_id for v in viewers if may_see(v, audience.visibility, audience.key)
        } == expected_seers
    for game in run.opened:
        check_role_sight(game)


def events_of(player_ids: Sequence[str], facts: Sequence[Fact]) -> list[dict[str, Any]]:
    """Turn a game's facts into log events the way the service does (the ruleset's own events,
    each with its audience), after the lobby's joins."""
    rules = MAFIA

    def event(kind: str, data: dict[str, Any], audience: Audience = EVERYONE) -> dict[str, Any]:
        return {"type": kind, "data": data, "visibility": audience.visibility.value, "audience": audience.key}

    events = [
        event("player.joined", {"player": {"id": pid, "nickname": f"P{seat}", "seat": seat}})
        for seat, pid in enumerate(player_ids, 1)
    ]
    events.append(event("game.started", {}))
    for fact in facts:
        audience = rules.audience(fact)
        if isinstance(fact, Finished):
            events.append(event("game.finished", {"winner": fact.winner.value}))
        for emit in rules.to_events(fact, lambda _: datetime(2026, 1, 1, tzinfo=UTC)):
            events.append(event(emit.type, emit.data.model_dump(mode="json"), audience))
    return events


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_the_event_log_replays_to_the_game(data: st.DataObject) -> None:
    """Fold the log of a random game, midway and at the end, back into the game it tells (the
    platform's one replay, which knows no ruleset)."""
    run = play(data)
    assert run.midgame is not None
    for game, facts in ((run.midgame, run.facts[: run.midgame_facts]), (run.game, run.facts)):
        state = replay(events_of(run.player_ids, facts))
        assert state.status == ("finished" if game.finished else "in_progress")
        assert state.winner == (game.winner.value if game.winner else None)
        assert {p.id: (p.role, p.team, p.alive) for p in state.players} == {
            s.player_id: (s.role.value, mafia.team_of(s.role).value, s.alive) for s in game.seats
        }
        if game.phase is not None:
            assert (state.round, state.phase) == (game.round, game.phase.value)
        else:
            assert state.phase is None


# Examples of the rules on one seven-player table.

ROLES = {
    "m1": Role.mafia,
    "m2": Role.mafia,
    "doc": Role.doctor,
    "det": Role.detective,
    "c1": Role.citizen,
    "c2": Role.citizen,
    "c3": Role.citizen,
}


def table(phase: Phase = Phase.night, *, dead: Sequence[str] = ()) -> Game:
    """A game in round 1: two mafia, a doctor, a detective and three citizens."""
    return Game(
        seats=tuple(Seat(pid, role, alive=pid not in dead) for pid, role in ROLES.items()), phase=phase
    )


def cast(game: Game, *votes: tuple[str, str | None]) -> Game:
    for voter, target in votes:
        game, _ = mafia.vote(game, voter, target)
    return game


def test_a_tie_in_the_vote_phase_eliminates_nobody() -> None:
    """Eliminate nobody when two players tie for the most votes."""
    game = cast(table(Phase.vote), ("c1", "m1"), ("c2", "m1"), ("c3", "m2"), ("doc", "m2"), ("m1", None))
    after, facts = mafia.advance(game)
    assert facts == [
        VoteClosed(1, Phase.vote, Action.eliminate, (("m1", 2), ("m2", 2), (None, 1)), None),
        PhaseBegan(2, Phase.night),
    ]
    assert after.seats == game.seats


def test_all_abstaining_eliminates_nobody() -> None:
    """Eliminate nobody when every player abstains."""
    game = cast(table(Phase.vote), *((pid, None) for pid in ROLES))
    after, facts = mafia.advance(game)
    assert facts == [
        VoteClosed(1, Phase.vote, Action.eliminate, ((None, 7),), None),
        PhaseBegan(2, Phase.night),
    ]
    assert after.seats == game.seats


def test_the_player_with_strictly_the_most_votes_is_eliminated() -> None:
    """Eliminate the one player with strictly the most votes, and reveal their role."""
    game = cast(table(Phase.vote), ("c1", "m1"), ("c2", "m1"), ("c3", "m2"), ("m1", "c3"), ("m2", "c3"))
    game = cast(game, ("doc", "m1"))
    after, facts = mafia.advance(game)
    assert Eliminated(1, "m1", "voted", Role.mafia, True) in facts
    assert facts[-1] == PhaseBegan(2, Phase.night)
    assert [s.player_id for s in after.alive()] == ["m2", "doc", "det", "c1", "c2", "c3"]


@pytest.mark.parametrize(("protected", "survives"), [("c1", True), ("c2", False), (None, False)])
def test_a_protected_kill_target_survives(protected: str | None, survives: bool) -> None:
    """Spare the mafia's target when the doctor protects them, and only then."""
    game = cast(table(), ("m1", "c1"), ("m2", "c1"), ("doc", protected))
    after, facts = mafia.advance(game)
    assert facts[0] == VoteClosed(1, Phase.night, Action.kill, (("c1", 2),), None if survives else "c1")
    assert (Protected(1, "doc", "c1") in facts) == (protected == "c1")
    assert facts[-1] == PhaseBegan(1, Phase.day, None if survives else "c1")
    victim = seat_of(after, "c1")
    assert victim is not None
    assert victim.alive == survives


def test_a_split_mafia_kills_nobody() -> None:
    """Kill nobody when the mafia's votes tie."""
    game = cast(table(), ("m1", "c1"), ("m2", "c2"))
    after, facts = mafia.advance(game)
    assert facts == [
        VoteClosed(1, Phase.night, Action.kill, (("c1", 1), ("c2", 1)), None),
        PhaseBegan(1, Phase.day, None),
    ]
    assert after.seats == game.seats


@pytest.mark.parametrize(("voter", "target"), [("m1", "m2"), ("m1", "m1")])
def test_the_mafia_cannot_target_their_own(voter: str, target: str) -> None:
    """Refuse a mafia kill vote against a mafia member, themselves included."""
    game = table()
    with pytest.raises(mafia.InvalidTarget):
        mafia.vote(game, voter, target)
    assert game == table()


@pytest.mark.parametrize(("target", "team"), [("m2", Team.mafia), ("doc", Team.town), ("c3", Team.town)])
def test_the_detective_learns_the_true_team(target: str, team: Team) -> None:
    """Tell the detective, privately, the team of the player they investigated."""
    game = cast(table(), ("det", target))
    _, facts = mafia.advance(game)
    assert Investigated(1, "det", target, team) in facts
    assert mafia.audience_of(Investigated(1, "det", target, team)) == Audience(Visibility.player, "det")


def test_everyone_acted_once_each_living_player_who_may_act_has_voted() -> None:
    """Count only the living players who may act; an abstention is an act."""
    game = table()
    for voter, target in [("m1", "c1"), ("doc", None), ("m2", "c2")]:
        game = cast(game, (voter, target))
        assert not mafia.everyone_acted(game)
    with pytest.raises(mafia.CannotAct):
        mafia.vote(game, "c1", "c2")
    game = cast(game, ("det", "m1"))
    assert mafia.everyone_acted(game)

    day, _ = mafia.advance(game)
    assert not mafia.everyone_acted(day)

    voting = table(Phase.vote, dead=("c3",))
    for voter in ["m1", "m2", "doc", "det", "c1"]:
        voting = cast(voting, (voter, None))
        assert not mafia.everyone_acted(voting)
    with pytest.raises(mafia.PlayerDead):
        mafia.vote(voting, "c3", None)
    voting = cast(voting, ("c2", "m1"))
    assert mafia.everyone_acted(voting)


def test_a_changed_vote_replaces_the_earlier_one() -> None:
    """Count only a voter's last vote, while each change is still told."""
    game, first = mafia.vote(table(Phase.vote), "c1", "m1")
    game, second = mafia.vote(game, "c1", "m2")
    assert first == [VoteCast(1, Phase.vote, Action.eliminate, "c1", "m1")]
    assert second == [VoteCast(1, Phase.vote, Action.eliminate, "c1", "m2")]
    assert game.ballots == {"c1": Ballot("c1", Action.eliminate, "m2")}
    _, facts = mafia.advance(game)
    assert facts[0] == VoteClosed(1, Phase.vote, Action.eliminate, (("m2", 1),), "m2")


def test_only_the_end_or_a_revealed_death_shows_a_town_player_other_roles() -> None:
    """Show a town player only their own role, the revealed dead, and everything at the end."""
    game = table(Phase.day, dead=("c2", "m2"))
    hidden = replace(game, reveal_on_death=False)

    def sees(viewer: str, team: str, target: str, in_game: Game) -> bool:
        seat = seat_of(in_game, target)
        assert seat is not None
        return mafia.may_see_role(viewer, team, seat, in_game)

    assert sees("c1", "town", "c1", game)
    assert not sees("c1", "town", "m1", game)
    assert not sees("c1", "town", "doc", game)
    assert sees("c1", "town", "m2", game)
    assert not sees("c1", "town", "m2", hidden)
    assert sees("m1", "mafia", "m2", hidden)
    assert not sees("m1", "mafia", "doc", game)
    assert sees("m1", "mafia", "c2", game)
    over = replace(hidden, phase=None, winner=Team.town)
    assert all(sees("c1", "town", s.player_id, over) for s in over.seats)
