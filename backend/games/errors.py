"""The refusals every ruleset shares, each with its stable problem code (mapped once to a
problem response by backend.core.problems); a ruleset adds its own beside them."""

from __future__ import annotations

from backend.domain.errors import RuleError


class GameNotInProgress(RuleError):
    code = "game_not_in_progress"


class NotEnoughPlayers(RuleError):
    code = "not_enough_players"


class PhaseClosed(RuleError):
    code = "phase_closed"


class CannotAct(RuleError):
    """Not this player's action now: the wrong phase, role or turn, or another game's action."""

    code = "cannot_act"


class NotAPlayer(RuleError):
    code = "not_a_player"
    status = 403


class InvalidTarget(RuleError):
    code = "invalid_target"
    # The body is well formed; only the game as it stands now (who is alive, this round's team
    # size, the actor's role) makes the pick wrong: a conflict with the state, as `cannot_act`.
    status = 409


class InvalidChoice(RuleError):
    code = "invalid_choice"
    status = 409  # as InvalidTarget: a choice this player may not make now


class GameNotFinished(RuleError):
    """A rematch while the room's game still runs (or before any has been played)."""

    code = "game_not_finished"


class GameNotFound(RuleError):
    """A game number the room has not reached (`/rounds?game=N`, the operators' replay)."""

    code = "game_not_found"
    status = 404
