"""Every registered ruleset keeps the protocol's promises in random games (hypothesis), and
each deliberately broken copy of a real one fails the check meant to catch it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backend.games.registry import RULESETS
from tests.rulesets.broken import BROKEN
from tests.rulesets.conformance import (
    Draw,
    RandomDraw,
    Run,
    check_all,
    check_hidden_choices_do_not_interfere,
    check_nobody,
    check_options,
    check_roles,
    check_sealed,
    check_spectator,
    play,
)


class DataDraw(Draw):
    """Choices drawn by hypothesis, so a failing game shrinks to a short one."""

    def __init__(self, data: st.DataObject) -> None:
        self.data = data

    def integer(self, low: int, high: int, label: str) -> int:
        return self.data.draw(st.integers(low, high), label=label)


@pytest.mark.parametrize("name", sorted(RULESETS))
@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
@given(data=st.data())
def test_random_games_of_every_ruleset_keep_the_protocols_promises(name: str, data: st.DataObject) -> None:
    check_all(play(RULESETS[name], DataDraw(data)))


# Up to this many games long enough to reach the moments each breakage shows in (a mission
# with two spies on it, a death in mafia).
SEEDS = range(12)

# Each broken copy, the check meant to catch it, and the prefix of that check's messages.
CAUGHT_BY: dict[str, tuple[Callable[[Run], Any], str]] = {
    "approve votes shown": (check_sealed, "sealed:"),
    "approve votes sealed too short": (check_sealed, "sealed:"),
    "mission choices shown": (check_nobody, "nobody:"),
    "failers named": (check_hidden_choices_do_not_interfere, "hidden:"),
    "fail offered to crew": (check_options, "option:"),
    "dead targets offered": (check_options, "option:"),
    "town sees every role": (check_roles, "role:"),
    "spectators see every role": (check_spectator, "spectator:"),
    "night votes on the spectators' board": (check_spectator, "spectator:"),
}


def test_every_broken_copy_has_its_check() -> None:
    assert set(CAUGHT_BY) == set(BROKEN)


def test_the_checks_of_what_players_are_shown_judge_the_spectator_too() -> None:
    # A view that shows every role to a viewer with no seat is caught by the role check too,
    # not only by check_spectator: the spectator is one of the viewers every check goes over.
    run = play(BROKEN["spectators see every role"], RandomDraw(0), max_prefix=300, probing=False)
    with pytest.raises(AssertionError, match=f"^role: view shows {run.spectator} the roles"):
        check_roles(run)


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_a_broken_copy_fails_the_check_meant_for_it(case: str) -> None:
    broken, (check, prefix) = BROKEN[case], CAUGHT_BY[case]
    probing = check is check_options  # only that check reads the probes; they cost the most

    def caught() -> None:
        for seed in SEEDS:
            seeds.append(seed)
            check(play(broken, RandomDraw(seed), max_prefix=300, probing=probing))

    seeds: list[int] = []
    with pytest.raises(AssertionError, match=f"^{prefix}"):
        caught()
    # The real ruleset's game from the same draws passes: what failed is the breakage.
    answer = check(play(RULESETS[broken.name], RandomDraw(seeds[-1]), max_prefix=300, probing=probing))
    if check is check_hidden_choices_do_not_interfere:
        assert answer > 0, "the real game swapped no hidden choices: the check was not exercised"
