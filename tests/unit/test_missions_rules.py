"""The pure missions rules, driven by hypothesis through whole random games."""

from __future__ import annotations

import itertools
import json
import random
from collections.abc import Sequence
from dataclasses import dataclass, field, fields, replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backend.domain.errors import RuleError
from backend.games.missions import rules
from backend.games.missions.rules import (
    Action,
    ApprovalCast,
    ApprovalClosed,
    Approve,
    Choose,
    Fact,
    Finished,
    Game,
    LeaderChosen,
    MissionChosen,
    MissionClosed,
    Phase,
    PhaseBegan,
    Propose,
    Role,
    RoleDealt,
    Team,
    TeamProposed,
)

STRANGER = "stranger"  # an id that is never dealt into a game

# The rules as PRODUCT.md states them, written independently of the module under test.
SPY_COUNT = {5: 2, 6: 2, 7: 3, 8: 3, 9: 3, 10: 4}
SIZES = {5: [2, 3, 2, 3, 3], 6: [2, 3, 4, 3, 4], 7: [2, 3, 3, 4, 4]} | {
    n: [3, 4, 4, 5, 5] for n in (8, 9, 10)
}


def fails_to_fail(n: int, round_: int) -> int:
    return 2 if round_ == 4 and n >= 7 else 1


def ids_of(game: Game) -> list[str]:
    return [s.player_id for s in game.seats]


def role_of(game: Game, player_id: str) -> Role | None:
    return next((s.role for s in game.seats if s.player_id == player_id), None)


def refusal(game: Game, actor: str, action: Action) -> type[RuleError] | None:
    """Return the refusal the rules give (the first of: not running, stranger, cannot act, invalid)."""
    if game.winner is not None:
        return rules.GameNotInProgress
    role = role_of(game, actor)
    if role is None:
        return rules.NotAPlayer
    team = game.proposal or ()
    if isinstance(action, Propose):
        if game.phase is not Phase.propose or actor != ids_of(game)[game.leader]:
            return rules.CannotAct
        picked = action.player_ids
        size = SIZES[len(game.seats)][game.round - 1]
        if len(set(picked)) != len(picked) or not set(picked) <= set(ids_of(game)) or len(picked) != size:
            return rules.InvalidTarget
    elif isinstance(action, Approve):
        if game.phase is not Phase.approve:
            return rules.CannotAct
    elif game.phase is not Phase.mission or actor not in team:
        return rules.CannotAct
    elif not action.success and role is Role.crew:
        return rules.InvalidChoice
    return None


def listed(options: Sequence[rules.Option], action: Action) -> bool:
    """Return whether the options offer this action."""
    for option in options:
        if isinstance(action, Propose) and option.type == "propose":
            picked = action.player_ids
            return len(set(picked)) == len(picked) == option.pick and set(picked) <= set(option.targets)
        if isinstance(action, Approve) and option.type == "approve":
            return ("approve" if action.approve else "reject") in option.choices
        if isinstance(action, Choose) and option.type == "mission":
            return ("success" if action.success else "fail") in option.choices
    return False


Step = tuple[Game, list[Fact]]


def expect_pass(game: Game, round_: int, attempt: int, rejections: int) -> Step:
    leader = (game.leader + 1) % len(game.seats)
    new = replace(game, round=round_, phase=Phase.propose, attempt=attempt, leader=leader)
    new = replace(new, proposal=None, approvals={}, choices={}, rejections=rejections)
    return new, [
        LeaderChosen(round_, attempt, ids_of(game)[leader]),
        PhaseBegan(round_, Phase.propose, attempt),
    ]


def expect_end(game: Game, winner: Team, reason: str) -> Step:
    new = replace(game, phase=None, proposal=None, approvals={}, choices={}, winner=winner)
    return new, [Finished(winner, reason)]


def expect_approval_close(game: Game) -> Step:
    votes = tuple((pid, game.approvals.get(pid) is True) for pid in ids_of(game))
    approved = sum(yes for _, yes in votes) > len(votes) / 2
    rejections = game.rejections + (not approved)
    closed = ApprovalClosed(game.round, game.attempt, votes, approved, rejections)
    if approved:
        new = replace(game, phase=Phase.mission, approvals={})
        return new, [closed, PhaseBegan(game.round, Phase.mission, game.attempt)]
    if rejections == 5:
        new, facts = expect_end(replace(game, rejections=5), Team.spies, "rejections")
    else:
        new, facts = expect_pass(game, game.round, game.attempt + 1, rejections)
    return new, [closed, *facts]


def expect_mission_close(game: Game) -> Step:
    team = game.proposal or ()
    fails = sum(1 for pid in team if game.choices.get(pid) is False)
    ok = fails < fails_to_fail(len(game.seats), game.round)
    game = replace(game, results=(*game.results, rules.MissionResult(game.round, team, fails, ok)))
    outcomes = [r.succeeded for r in game.results]
    if outcomes.count(True) == 3:
        new, facts = expect_end(game, Team.crew, "missions")
    elif outcomes.count(False) == 3:
        new, facts = expect_end(game, Team.spies, "missions")
    else:
        new, facts = expect_pass(game, game.round + 1, 1, 0)
    return new, [MissionClosed(game.round, team, fails, ok), *facts]


def expect_act(game: Game, actor: str, action: Action) -> Step:
    if isinstance(action, Propose):
        new = replace(game, phase=Phase.approve, proposal=action.player_ids)
        return new, [
            TeamProposed(game.round, game.attempt, actor, action.player_ids),
            PhaseBegan(game.round, Phase.approve, game.attempt),
        ]
    if isinstance(action, Approve):
        game = replace(game, approvals={**game.approvals, actor: action.approve})
        cast: Fact = ApprovalCast(game.round, game.attempt, actor, action.approve)
        if set(game.approvals) != set(ids_of(game)):
            return game, [cast]
        new, facts = expect_approval_close(game)
        return new, [cast, *facts]
    game = replace(game, choices={**game.choices, actor: action.success})
    chosen: Fact = MissionChosen(game.round, actor, action.success)
    if set(game.choices) != set(game.proposal or ()):
        return game, [chosen]
    new, facts = expect_mission_close(game)
    return new, [chosen, *facts]


def expect_deadline(game: Game) -> Step:
    if game.phase is Phase.approve:
        return expect_approval_close(game)
    if game.phase is Phase.mission:
        return expect_mission_close(game)
    return expect_pass(game, game.round, game.attempt + 1, game.rejections)  # a lapse is no rejection


def check_invariants(game: Game) -> None:
    """Check what must hold of every game a command returns, and that it survives dump/load as JSON."""
    assert game.finished == (game.winner is not None) == (game.phase is None)
    assert (game.proposal is not None) == (game.phase in (Phase.approve, Phase.mission))
    assert not game.approvals or game.phase is Phase.approve
    assert set(game.choices) <= set(game.proposal or ()) if game.phase is Phase.mission else not game.choices
    assert 1 <= game.round <= 5
    assert 0 <= game.leader < len(game.seats)
    # A round's result is recorded when its mission closes, so it is there only when missions ended it.
    by_missions = game.finished and game.rejections < 5
    assert len(game.results) == game.round - (0 if by_missions else 1)
    assert game.rejections < 5 or game.winner is Team.spies
    assert game.team_size == SIZES[len(game.seats)][game.round - 1]
    assert rules.load(json.loads(json.dumps(rules.dump(game)))) == game


def check_action(game: Game, actor: str, action: Action) -> Step | None:
    """Take an action, checked: refused (game untouched) exactly when not offered, else as expected."""
    before = replace(game, approvals=dict(game.approvals), choices=dict(game.choices))
    expected = refusal(game, actor, action)
    assert listed(rules.options(game, actor), action) == (expected is None), (actor, action)
    if expected is not None:
        with pytest.raises(RuleError) as refused:
            rules.apply(game, actor, action)
        assert type(refused.value) is expected, f"refused with {refused.value.code}; expected {expected}"
        assert refused.value.code == expected.code != RuleError.code
        assert game == before, "a refused action changed the game"
        return None
    new, facts = rules.apply(game, actor, action)
    assert game == before, "an action mutated the game it was taken in"
    assert (new, facts) == expect_act(game, actor, action)
    check_invariants(new)
    return new, facts


def probes(game: Game) -> list[Action]:
    """A sample of actions: the right team, wrong ones (duplicate, stranger, size), every vote and choice."""
    ids, size = ids_of(game), game.team_size
    teams = [ids[:size], ids[-size:], [ids[0], *ids[: size - 1]], [*ids[: size - 1], STRANGER]]
    teams.append(ids[: size + 1])
    return [*(Propose(tuple(t)) for t in teams), Approve(True), Approve(False), Choose(True), Choose(False)]


@dataclass
class Run:
    """A game being played: every command is checked against the rules as it is made."""

    seed: int
    game: Game
    facts: list[Fact]
    commands: list[tuple[str, Action] | None] = field(default_factory=list)  # None: a deadline
    games: list[Game] = field(default_factory=list)

    def act(self, actor: str, action: Action) -> bool:
        step = check_action(self.game, actor, action)
        if step is not None:
            self.record(*step, (actor, action))
        return step is not None

    def deadline(self) -> bool:
        game = self.game
        if game.finished:
            with pytest.raises(rules.GameNotInProgress):
                rules.on_deadline(game)
            return False
        new, facts = rules.on_deadline(game)
        assert (new, facts) == expect_deadline(game)
        check_invariants(new)
        self.record(new, facts, None)
        return True

    def record(self, new: Game, facts: list[Fact], command: tuple[str, Action] | None) -> None:
        self.game = new
        self.facts += facts
        self.commands.append(command)
        self.games.append(new)


def actions(game: Game) -> st.SearchStrategy[Action]:
    """Any action: teams of any size (duplicates, strangers), either vote, either choice."""
    ids = [*ids_of(game), STRANGER]
    right = st.permutations(ids_of(game)).map(lambda p: tuple(p[: game.team_size]))
    doubled = right.map(lambda team: (team[-1], *team[1:]))
    teams = right | doubled | st.lists(st.sampled_from(ids), max_size=6).map(tuple)
    return teams.map(Propose) | st.builds(Approve, st.booleans()) | st.builds(Choose, st.booleans())


def random_step(data: st.DataObject, run: Run) -> None:
    """Make one random command: a deadline, an offered action, or anything by anyone."""
    game = run.game
    kind = data.draw(st.integers(0, 5), label="kind")
    offered = [pid for pid in ids_of(game) if rules.options(game, pid)]
    if kind == 0:
        run.deadline()
    elif kind < 4 and offered:
        actor = data.draw(st.sampled_from(offered), label="actor")
        [option] = rules.options(game, actor)
        if option.type == "propose":
            team = data.draw(st.permutations(option.targets), label="team")[: option.pick]
            assert run.act(actor, Propose(tuple(team)))
        else:
            choice = data.draw(st.sampled_from(option.choices), label="choice")
            action: Action = (
                Approve(choice == "approve") if option.type == "approve" else Choose(choice == "success")
            )
            assert run.act(actor, action)
    else:
        actor = data.draw(st.sampled_from([*ids_of(game), STRANGER]), label="anyone")
        run.act(actor, data.draw(actions(game), label="action"))


def finish(data: st.DataObject, run: Run, plan: str, lazy: bool) -> None:
    """Play to the end: `crew` approves and succeeds, `spies` sends spies (who may fail), or all reject."""
    for _ in range(100):
        game = run.game
        if game.finished:
            return
        ids = ids_of(game)
        if game.phase is Phase.propose:
            crew_first = sorted(ids, key=lambda pid: (role_of(game, pid) is Role.spy) == (plan == "crew"))
            assert run.act(ids[game.leader], Propose(tuple(crew_first[: game.team_size])))
        elif game.phase is Phase.approve:
            if plan == "rejections" and lazy:
                assert run.deadline()  # missing votes count as reject
                continue
            # Those who voted already change their vote first: the last new vote closes the phase.
            for pid in sorted(ids, key=lambda pid: pid not in game.approvals):
                assert run.act(pid, Approve(plan != "rejections"))
        elif plan == "crew" and lazy:
            assert run.deadline()  # missing choices count as success
        else:
            for pid in sorted(game.proposal or (), key=lambda pid: pid not in game.choices):
                success = plan != "spies" or role_of(game, pid) is Role.crew or data.draw(st.booleans())
                assert run.act(pid, Choose(success))
    pytest.fail("the finishing strategy did not end the game")


def play(data: st.DataObject, max_steps: int = 60) -> Run:
    """Deal a random game, make random commands, then play it to its end by a plan."""
    n = data.draw(st.integers(5, 10), label="players")
    player_ids = data.draw(st.lists(st.uuids().map(str), min_size=n, max_size=n, unique=True), label="ids")
    seed = data.draw(st.integers(0, 2**32), label="seed")
    game, facts = rules.setup(player_ids, random.Random(seed))
    check_invariants(game)
    run = Run(seed, game, list(facts), games=[game])
    for _ in range(data.draw(st.integers(0, max_steps), label="steps")):
        random_step(data, run)
    fresh = run.game.phase is Phase.propose  # from a fresh proposal these plans win as they mean to
    plan = data.draw(st.sampled_from(["crew", "spies", "rejections"]), label="plan")
    finish(data, run, plan, data.draw(st.booleans(), label="lazy"))
    if fresh and plan != "spies":
        want = (Team.crew, "missions") if plan == "crew" else (Team.spies, "rejections")
        assert run.facts[-1] == Finished(*want)
    return run


def check_deal(ids: Sequence[str], facts: Sequence[Fact]) -> set[str]:
    """Check the deal's facts: a role each in seat order, the count's spies, spies see spies; return them."""
    dealt = [f for f in facts[: len(ids)] if isinstance(f, RoleDealt)]
    assert [f.player_id for f in dealt] == list(ids)
    spies = {f.player_id for f in dealt if f.role is Role.spy}
    assert len(spies) == SPY_COUNT[len(ids)]
    for f in dealt:
        assert set(f.teammates) == (spies - {f.player_id} if f.role is Role.spy else set())
        assert len(f.teammates) == len(set(f.teammates))
    return spies


def check_log(game: Game, facts: Sequence[Fact]) -> None:
    """Check a whole game's facts against PRODUCT.md, from the log alone."""
    ids, n = ids_of(game), len(game.seats)
    spies = check_deal(ids, facts)
    leaders = [f for f in facts if isinstance(f, LeaderChosen)]
    for before, after in itertools.pairwise(leaders):
        assert ids.index(after.leader_id) == (ids.index(before.leader_id) + 1) % n  # the next seat
    casts: dict[str, bool] = {}
    choices: dict[str, bool] = {}
    sealed: tuple[int, int] | None = None  # the open approve phase, which casts must belong to
    for i, fact in enumerate(facts):
        match fact:
            case PhaseBegan(round=round_, phase=Phase.approve, attempt=attempt):
                casts, sealed = {}, (round_, attempt)
            case PhaseBegan(phase=Phase.mission):
                choices = {}
            case TeamProposed(round=round_, player_ids=team):
                assert len(team) == len(set(team)) == SIZES[n][round_ - 1]
            case ApprovalCast(round=round_, attempt=attempt, voter_id=voter, approve=approve):
                assert sealed == (round_, attempt)  # every cast comes before its phase's close
                casts[voter] = approve
            case ApprovalClosed(round=round_, attempt=attempt, votes=votes, rejections=rejections):
                assert sealed == (round_, attempt)
                sealed = None
                assert votes == tuple((pid, casts.get(pid, False)) for pid in ids)
                assert rejections < 5 or facts[i + 1] == Finished(Team.spies, "rejections")
            case MissionChosen(player_id=pid, success=success):
                assert success or pid in spies
                choices[pid] = success
            case MissionClosed(round=round_, team=team, fails=fails, succeeded=succeeded):
                assert fails == sum(1 for pid in team if choices.get(pid) is False)
                assert succeeded == (fails < fails_to_fail(n, round_))
    # A closed mission tells the count only: no field could say who failed.
    assert [f.name for f in fields(MissionClosed)] == ["round", "team", "fails", "succeeded"]
    ends = [f for f in facts if isinstance(f, Finished)]
    assert ends == [facts[-1]]
    assert ends[0].winner is game.winner
    outcomes = [f.succeeded for f in facts if isinstance(f, MissionClosed)]
    if ends[0].reason == "missions":
        assert outcomes.count(game.winner is Team.crew) == 3 > outcomes.count(game.winner is not Team.crew)
    else:
        assert game.winner is Team.spies
        assert max(outcomes.count(True), outcomes.count(False)) < 3


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_random_games_keep_the_rules_and_end_with_the_right_winner(data: st.DataObject) -> None:
    """Play random commands (each checked, listed options accepted, others refused), then end the game."""
    run = play(data)
    check_log(run.game, run.facts)
    # In each phase that opened (and at the end), for all: what is offered is accepted, the rest refused.
    opened = {(g.round, g.phase, g.attempt): g for g in reversed(run.games)}  # the first game of each
    for game in opened.values():
        for pid in [*ids_of(game), STRANGER]:
            for action in probes(game):
                check_action(game, pid, action)
        assert rules.options(game, STRANGER) == []


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_a_seed_and_the_same_commands_make_the_same_game(data: st.DataObject) -> None:
    """Replay a random game's commands on a fresh deal from the same seed: the same facts follow."""
    run = play(data, max_steps=30)
    game, facts = rules.setup(ids_of(run.game), random.Random(run.seed))
    for command in run.commands:
        game, more = rules.on_deadline(game) if command is None else rules.apply(game, *command)
        facts += more
    assert (game, facts) == (run.game, run.facts)


@settings(max_examples=100, deadline=None)
@given(n=st.integers(0, 14), seed=st.integers(0, 2**32))
def test_the_deal_gives_each_count_its_spies_and_a_random_leader(n: int, seed: int) -> None:
    """Deal the spies per count, tell spies each other and crew nothing; refuse outside 5 to 10 players."""
    player_ids = [f"p{i}" for i in range(n)]
    if not 5 <= n <= 10:
        with pytest.raises(rules.NotEnoughPlayers) as refused:
            rules.setup(player_ids, random.Random(seed))
        assert refused.value.code == "not_enough_players"
        return
    game, facts = rules.setup(player_ids, random.Random(seed))
    assert ids_of(game) == player_ids
    assert sum(s.role is Role.spy for s in game.seats) == SPY_COUNT[n]
    assert all(s.team is (Team.spies if s.role is Role.spy else Team.crew) for s in game.seats)
    assert facts[n:] == [LeaderChosen(1, 1, game.leader_id), PhaseBegan(1, Phase.propose, 1)]
    assert (game.round, game.attempt, game.phase) == (1, 1, Phase.propose)
    assert (game.proposal, game.results, game.winner) == (None, (), None)
    assert check_deal(player_ids, facts) == {s.player_id for s in game.seats if s.role is Role.spy}


# Examples on one seven-player table: spies s1, s2, s3; the leader sits at seat 0.

SEVEN = ("s1", "c1", "s2", "c2", "c3", "s3", "c4")


def table(round_: int = 1, phase: Phase = Phase.propose, proposal: tuple[str, ...] | None = None) -> Game:
    seats = tuple(rules.Seat(pid, Role.spy if pid.startswith("s") else Role.crew) for pid in SEVEN)
    results = tuple(rules.MissionResult(r, ("c1", "c2"), 0, True) for r in range(1, round_))[:2]
    results += tuple(rules.MissionResult(r, ("s1", "c2"), 1, False) for r in range(3, round_))
    return Game(seats=seats, round=round_, phase=phase, proposal=proposal, results=results)


@pytest.mark.parametrize(("fails", "succeeded"), [(0, True), (1, True), (2, False), (3, False)])
def test_round_four_with_seven_players_needs_two_fails(fails: int, succeeded: bool) -> None:
    """Let one fail pass in round 4 with seven players; two fail it."""
    game = table(4, Phase.mission, ("s1", "s2", "s3", "c1"))
    for pid, success in zip(("s1", "s2", "s3", "c1"), [False] * fails + [True] * 4, strict=False):
        game, facts = rules.apply(game, pid, Choose(success))
    assert facts[:2] == [
        MissionChosen(4, "c1", True),
        MissionClosed(4, ("s1", "s2", "s3", "c1"), fails, succeeded),
    ]
    # Two missions succeeded before: success ends the game, a failure opens round 5.
    next_round = [LeaderChosen(5, 1, "c1"), PhaseBegan(5, Phase.propose, 1)]
    assert facts[2:] == ([Finished(Team.crew, "missions")] if succeeded else next_round)


def test_the_fifth_rejection_in_a_round_makes_the_spies_win_and_a_lapse_is_no_rejection() -> None:
    """Count four rejections and a lapsed proposal as no end; the fifth rejection ends the game."""
    game = table()
    for attempt in range(1, 7):
        if attempt == 3:
            game, facts = rules.on_deadline(game)  # nobody proposed: the next seat leads
            assert facts == [LeaderChosen(1, 4, SEVEN[3]), PhaseBegan(1, Phase.propose, 4)]
            continue
        game, _ = rules.apply(game, game.leader_id, Propose(("c1", "c2")))
        game, _ = rules.apply(game, "s1", Approve(True))
        game, facts = rules.on_deadline(game)  # the six silent voters count as reject
        rejected = attempt - (attempt > 3)
        assert facts[0] == ApprovalClosed(1, attempt, tuple((p, p == "s1") for p in SEVEN), False, rejected)
    assert facts[1:] == [Finished(Team.spies, "rejections")]
    assert (game.winner, game.phase, game.proposal, dict(game.approvals)) == (Team.spies, None, None, {})


def test_the_first_leader_is_drawn_at_random() -> None:
    """Draw the first leader from every seat across seeds, the same one for the same seed."""
    ids = [f"p{i}" for i in range(6)]
    assert {rules.setup(ids, random.Random(seed))[0].leader for seed in range(60)} == set(range(6))
    assert rules.setup(ids, random.Random(7)) == rules.setup(ids, random.Random(7))
