"""The nickname rules, without a database: NFKC, refused characters, look-alike skeletons."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from backend.domain import lobby, nicknames
from backend.domain.nicknames import (
    NICKNAME_MAX,
    NicknameConfusable,
    NicknameInvalidCharacters,
    NicknameLength,
    NicknameTaken,
    Present,
    check_nickname_free,
    nickname_keys,
    nickname_pattern,
    normalize_nickname,
    skeleton,
)

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("  Alice0  ", "Alice0"),
        ("\uff21lice0", "Alice0"),  # fullwidth A
        ("e\u0301mile", "\u00e9mile"),  # composed
        ("Anne Marie", "Anne Marie"),
        ("Bo\u0301b", "B\u00f3b"),  # NFKC composes, and the name is one character shorter
        ("Zo\u00eb", "Zo\u00eb"),
        ("\u041f\u0451\u0442\u0440", "\u041f\u0451\u0442\u0440"),  # Cyrillic on its own is a name
        ("\U0001face Moose", "\U0001face Moose"),  # an emoji of Unicode 15, past this Python's 14.0
        (
            "\U0001f1eb\U0001f1f7 Zo\u00e9 \U0001f44b\U0001f3fd",
            "\U0001f1eb\U0001f1f7 Zo\u00e9 \U0001f44b\U0001f3fd",
        ),  # a flag, a skin tone
    ],
)
def test_a_nickname_is_shown_in_nfkc_form_trimmed(raw: str, shown: str) -> None:
    assert normalize_nickname(raw) == shown


@pytest.mark.parametrize(
    "raw",
    [
        "Alice0\u200b",  # ZERO WIDTH SPACE (Cf)
        "\u200b",
        "\ufeff",  # ZERO WIDTH NO-BREAK SPACE / BOM (Cf)
        "Alice0\u00ad",  # SOFT HYPHEN (Cf)
        "Al\u200dice",  # ZERO WIDTH JOINER (Cf)
        "\u202eecilA",  # RIGHT-TO-LEFT OVERRIDE (Cf)
        "a\u2060b",  # WORD JOINER (Cf)
        "\u3164",  # HANGUL FILLER (Lo, default ignorable; NFKC makes it U+1160)
        "x\u115fy",  # HANGUL CHOSEONG FILLER (Lo, default ignorable)
        "a\u034fb",  # COMBINING GRAPHEME JOINER (Mn, default ignorable)
        "Bob\ufe0f",  # VARIATION SELECTOR-16 (Mn, default ignorable)
        "a\u0085b",  # NEXT LINE (Cc)
        "a\tb",  # TAB (Cc)
        "a\u2028b",  # LINE SEPARATOR (Zl)
        "a\u2029b",  # PARAGRAPH SEPARATOR (Zp)
        "a\ue000b",  # private use (Co)
        "a\ufdd0b",  # a noncharacter (Cn)
        "a\u0378b",  # unassigned (Cn)
        "a\U000e0041b",  # TAG LATIN CAPITAL LETTER A (Cf)
        "a\u1680b",  # OGHAM SPACE MARK: whitespace, not a space
        "Anne  Marie",  # two spaces in a row
        "\u3000Bob",  # IDEOGRAPHIC SPACE: whitespace, not a space
        "Bob\u00a0",  # NO-BREAK SPACE
        "\u2167",  # ROMAN NUMERAL EIGHT: NFKC spells it VIII, four characters for one
        "\ufb01sh",  # LATIN SMALL LIGATURE FI
        "a\u00a8",  # DIAERESIS: NFKC makes it a space and a combining mark
        "\U00020bb7",  # a CJK extension B ideograph: past the BMP only emoji
    ],
)
def test_invisible_control_and_format_characters_are_refused(raw: str) -> None:
    with pytest.raises(NicknameInvalidCharacters) as refused:
        normalize_nickname(raw)
    assert refused.value.code == "nickname_invalid_characters"
    assert refused.value.status == 422


def test_the_refusal_names_the_character() -> None:
    with pytest.raises(NicknameInvalidCharacters, match="U\\+200B ZERO WIDTH SPACE"):
        normalize_nickname("Alice0\u200b")


def test_the_length_counts_after_normalisation() -> None:
    assert normalize_nickname("x" * 24) == "x" * 24
    with pytest.raises(NicknameLength):
        normalize_nickname("x" * 25)
    # U+01D8 (u, diaeresis, acute) before a combining ogonek: NFKC reorders the marks, the
    # ogonek joins the u and the other two stand alone, 3 characters for 2.
    assert len(normalize_nickname("\u01d8\u0328")) == 3
    with pytest.raises(NicknameLength):
        normalize_nickname("\u01d8\u0328" * 12)
    with pytest.raises(NicknameLength):
        normalize_nickname("   ")  # nothing left once trimmed


def test_the_refusal_of_a_character_nfkc_spells_out_says_what_to_type() -> None:
    with pytest.raises(NicknameInvalidCharacters, match=r"U\+2167 ROMAN NUMERAL EIGHT.*'VIII'"):
        normalize_nickname("\u2167")


PATTERN = re.compile(nickname_pattern())


@settings(max_examples=150, deadline=None)
@given(st.from_regex(PATTERN, fullmatch=True).filter(lambda s: len(s) <= NICKNAME_MAX))
def test_every_nickname_the_spec_pattern_allows_is_accepted(raw: str) -> None:
    # What the schema says is what the server does: a request valid by the spec is not refused
    # for its characters (schemathesis's "positive data acceptance").
    try:
        normalize_nickname(raw)
    except NicknameLength:
        # The one refusal a pattern cannot state: marks NFKC reorders, lengthening the name.
        assert len(nicknames._normalize("NFKC", raw.strip(" "))) > NICKNAME_MAX


@settings(max_examples=400, deadline=None)
@given(st.text(max_size=NICKNAME_MAX))
def test_every_nickname_the_server_accepts_matches_the_spec_pattern(raw: str) -> None:
    try:
        normalize_nickname(raw)
    except (NicknameInvalidCharacters, NicknameLength):
        return
    assert PATTERN.fullmatch(raw), raw


@pytest.mark.parametrize(
    "char", ["\u0085", "\u200b", "\u0378", "\ue000", "\U000e0041", "\ufb01", "\t", "\U00020bb7", "\U0001f10a"]
)
def test_the_pattern_refuses_what_the_rule_refuses(char: str) -> None:
    assert not PATTERN.fullmatch(f"a{char}b")
    with pytest.raises(NicknameInvalidCharacters):
        normalize_nickname(f"a{char}b")


def test_the_spec_states_the_rule() -> None:
    spec = yaml.safe_load((ROOT / "openapi" / "openapi.yaml").read_text(encoding="utf-8"))
    assert spec["components"]["schemas"]["Nickname"]["pattern"] == nickname_pattern(), (
        "run `make nickname-pattern`"
    )


def test_the_skeleton_maps_confusables_to_their_prototypes() -> None:
    # TR39: the skeleton of a Cyrillic small a is the Latin a; m looks like rn; 0 like O.
    assert skeleton("\u0430") == "a"
    assert skeleton("m") == "rn"
    assert skeleton("0") == "O"
    assert skeleton("A\u200bB") == "AB"  # default ignorables vanish
    assert skeleton(skeleton("paypal")) == skeleton("paypal")


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("Alice0", "\u0410lice0"),  # Cyrillic capital A
        ("Alice0", "AIice0"),  # capital I for l
        ("Alice0", "Alice\u041e"),  # Cyrillic capital O for the digit 0
        ("Adam", "Adarn"),  # rn for m
        ("BOB", "\u0412\u041e\u0412"),  # Cyrillic capitals: alike as written, not in lower case
        ("paypal", "\u0440\u0430ypal"),  # Cyrillic small er and a
        ("ALICE", "ALlCE"),  # capital I and small l, as written
    ],
)
def test_look_alikes_are_confusable(a: str, b: str) -> None:
    with pytest.raises(NicknameConfusable) as refused:
        check_nickname_free(b, [Present(a, nickname_keys(a))])
    assert refused.value.code == "nickname_confusable"
    assert a not in refused.value.detail  # the newcomer is not told who is in the room


@pytest.mark.parametrize(("a", "b"), [("Alice0", "alice0"), ("Alice", "ALICE"), ("Straße", "STRASSE")])
def test_the_same_name_in_other_case_is_taken(a: str, b: str) -> None:
    with pytest.raises(NicknameTaken):
        check_nickname_free(b, [Present(a, nickname_keys(a))])


@pytest.mark.parametrize(("a", "b"), [("Alice", "Alicia"), ("Tom", "\u0442\u043e\u043c"), ("Ann", "Anna")])
def test_different_names_are_free(a: str, b: str) -> None:
    check_nickname_free(b, [Present(a, nickname_keys(a))])


def test_the_folded_key_ignores_case_and_the_cased_key_catches_capitals() -> None:
    assert nickname_keys("Alice").folded == nickname_keys("ALICE").folded
    assert nickname_keys("BOB").cased == nickname_keys("\u0412\u041e\u0412").cased
    assert nickname_keys("BOB").folded != nickname_keys("\u0412\u041e\u0412").folded


def test_the_lobby_refuses_a_look_alike_newcomer() -> None:
    present = [lobby.Seated(1, "Alice0")]
    with pytest.raises(nicknames.NicknameConfusable):
        lobby.check_can_join("lobby", {"max_players": 10}, present, "\u0410lice0")
    with pytest.raises(nicknames.NicknameInvalidCharacters):
        lobby.check_can_join("lobby", {"max_players": 10}, present, "Alice0\u200b")
    assert lobby.check_can_join("lobby", {"max_players": 10}, present, "Bob") == 2
