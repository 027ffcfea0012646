"""The rulesets the server plays, by the name a room stores: the one line a new game adds."""

from __future__ import annotations

from typing import Any

from backend.games.mafia.ruleset import RULESET as MAFIA
from backend.games.missions.ruleset import RULESET as MISSIONS
from backend.games.protocol import Ruleset

RULESETS: dict[str, Ruleset[Any, Any]] = {
    MAFIA.name: MAFIA,
    MISSIONS.name: MISSIONS,
}


def ruleset(name: str) -> Ruleset[Any, Any]:
    """Return the ruleset a room plays."""
    return RULESETS[name]
