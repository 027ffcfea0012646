"""The nesting-depth check measures what the JSON parser would recurse into, nothing else."""

from __future__ import annotations

import json
import time

import pytest

from backend.core.limits import json_too_deep


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize(
    ("text", "too_deep"),
    [
        (nested(32), False),
        (nested(33), True),
        ('{"a": ' + nested(31) + "}", False),
        ('{"a": ' + nested(32) + "}", True),
        ("[" * 33, True),  # never closed: the parser recurses as deep before it fails
        ("[]" * 1000, False),  # wide is not deep
        (json.dumps({"text": "[{" * 100}), False),  # brackets in strings are text
        (json.dumps({"text": '"[' * 100}), False),  # escaped quotes do not end a string
        ('{"a\\\\": ' + nested(40) + "}", True),  # nor does an escaped backslash hide one
        ('"' + "[" * 100, False),  # a string never closed hides what follows, as for the parser
        ('"\\' + "[" * 100, False),
    ],
)
def test_depth_is_counted_outside_strings(text: str, too_deep: bool) -> None:
    assert json_too_deep(text, 32) is too_deep
    assert json_too_deep(text.encode(), 32) is too_deep


@pytest.mark.parametrize("encoding", ["utf-8", "utf-16", "utf-16-le", "utf-32"])
def test_bytes_are_read_in_the_encoding_the_parser_detects(encoding: str) -> None:
    # The parser takes UTF-8, -16 and -32 alike; so does the check.
    assert json_too_deep(nested(33).encode(encoding), 32)
    assert not json_too_deep(nested(32).encode(encoding), 32)
    assert json.loads(nested(2).encode(encoding)) == [[]]


def test_bytes_that_are_not_text_are_left_to_the_parser() -> None:
    assert not json_too_deep(b"\xff\xfe\xff" + b"[" * 40, 32)


def test_hostile_bodies_are_scanned_in_linear_time() -> None:
    """Quotes that never close, or only escaped ones, cost one pass, not one per quote."""
    bodies = ['"\\"' * 21_000, '["' + '\\"' * 32_000, "[" + "[]," * 21_000 + "[]]"]
    started = time.perf_counter()
    for body in bodies:
        assert not json_too_deep(body.encode(), 32)
    assert time.perf_counter() - started < 2.0  # a quadratic scan takes minutes
