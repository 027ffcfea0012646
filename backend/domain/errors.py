"""The one base of every refusal a game rule makes; mapped once to a problem response."""

from __future__ import annotations


class RuleError(Exception):
    """A rule refused the command; `code` is the stable problem code, `status` its HTTP status."""

    code = "rule_error"
    status = 409

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail
