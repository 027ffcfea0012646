"""TRUSTED_PROXIES: the forms docs/deploy.md shows are read, anything else is refused at start
(uvicorn alone would take a typo for a name no peer ever has, and trust nobody silently)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from backend.core.config import Settings


@pytest.mark.parametrize(
    ("value", "read"),
    [
        ("", []),
        ("10.0.0.5", ["10.0.0.5"]),
        ("10.0.0.5, 10.0.0.6", ["10.0.0.5", "10.0.0.6"]),
        ("10.0.0.0/28,::1,fd00::/64", ["10.0.0.0/28", "::1", "fd00::/64"]),
        ('["127.0.0.1", "192.168.1.0/24"]', ["127.0.0.1", "192.168.1.0/24"]),
        ("*", ["*"]),
    ],
)
def test_addresses_and_networks_are_read(
    monkeypatch: pytest.MonkeyPatch, value: str, read: list[str]
) -> None:
    monkeypatch.setenv("TRUSTED_PROXIES", value)
    assert Settings().trusted_proxies == read


def test_nobody_is_trusted_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TRUSTED_PROXIES", raising=False)
    assert Settings(_env_file=None).trusted_proxies == []


@pytest.mark.parametrize("value", ["nginx", "10.0.0.300", "10.0.0.0/33", "10.0.0.5;10.0.0.6"])
def test_anything_else_is_refused(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("TRUSTED_PROXIES", value)
    with pytest.raises(ValidationError, match="not an IP address or network"):
        Settings()
