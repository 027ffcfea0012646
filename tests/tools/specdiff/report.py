"""The Markdown a reviewer reads: the classified changes, the version verdict, release notes."""

from __future__ import annotations

from dataclasses import dataclass, replace

from tests.tools.specdiff.rules import RULES, Change
from tests.tools.specdiff.specs import ASYNCAPI, OPENAPI, Specs

TITLES = {"openapi": ("OpenAPI", OPENAPI), "asyncapi": ("AsyncAPI", ASYNCAPI)}
UNCOMPARED = "descriptions, summaries, examples, tags, servers, AsyncAPI security"


@dataclass(frozen=True)
class Row:
    """Changes that read the same, wherever a client meets them."""

    change: Change
    wheres: tuple[str, ...]

    @property
    def text(self) -> str:
        """Return the change in words."""
        said = f"{self.change.subject} {RULES[self.change.rule].says}"
        return f"{said}: {self.change.detail}" if self.change.detail else said


def rows(changes: list[Change]) -> list[Row]:
    """Return `changes` merged by what they say, breaking ones first."""
    merged: dict[Change, list[str]] = {}
    for change in changes:
        wheres = merged.setdefault(replace(change, where=""), [])
        if change.where not in wheres:
            wheres.append(change.where)
    ordered = sorted(merged.items(), key=lambda item: (not item[0].breaking, item[0].spec != "openapi"))
    return [Row(change, tuple(wheres)) for change, wheres in ordered]


def major(version: str | None) -> int | None:
    """Return the major number of a version such as `1.4.0`."""
    try:
        return int(str(version).split(".")[0])
    except ValueError:
        return None


def unversioned(changes: list[Change], old: Specs, new: Specs) -> list[str]:
    """Return the specs with a breaking change whose `info.version` major was not raised."""
    blocked = []
    for spec, (_, path) in TITLES.items():
        was, now = major(old.version(path)), major(new.version(path))
        raised = was is not None and now is not None and now > was
        if not raised and any(c.breaking for c in changes if c.spec == spec):
            blocked.append(spec)
    return blocked


def _versions(old: Specs, new: Specs, path: str) -> str:
    was, now = old.version(path) or "none", new.version(path) or "none"
    return was if was == now else f"{was} → {now}"


def report(changes: list[Change], old: Specs, new: Specs, base: str) -> str:
    """Return the Markdown report of `changes` from `base` to the working tree."""
    merged = rows(changes)
    lines = [f"## Contract diff: {base} → working tree", ""]
    lines += ["| contract | version | breaking | non-breaking |", "|---|---|---|---|"]
    for spec, (title, path) in TITLES.items():
        mine = [r for r in merged if r.change.spec == spec]
        breaking = sum(r.change.breaking for r in mine)
        counts = f"{breaking} | {len(mine) - breaking}"
        lines.append(f"| {title} `{path}` | {_versions(old, new, path)} | {counts} |")
    lines.append("")
    blocked = unversioned(changes, old, new)
    if blocked:
        names = " and ".join(TITLES[s][0] for s in blocked)
        lines.append(
            f"**Breaking changes without a new major version: {names}.** "
            "Raise the major of `info.version` in each, or make the change compatible."
        )
    elif any(c.breaking for c in changes):
        lines.append("Breaking changes, each under a new major version.")
    else:
        lines.append("No breaking change." if changes else "No change to what clients send or receive.")
    for spec, (title, path) in TITLES.items():
        if old.document(path) != new.document(path) and not any(c.spec == spec for c in changes):
            lines.append(f"{title}: changed only where this diff does not look ({UNCOMPARED}).")
    for spec, (title, _) in TITLES.items():
        for breaking in (True, False):
            mine = [r for r in merged if r.change.spec == spec and r.change.breaking == breaking]
            if not mine:
                continue
            lines += ["", f"### {title}: {'breaking' if breaking else 'non-breaking'}", ""]
            lines += ["| change | rule | where |", "|---|---|---|"]
            for row in mine:
                rule = f"`{row.change.rule}` ({row.change.direction})"
                where = "" if row.wheres == (row.change.subject,) else ", ".join(row.wheres)
                text = row.text.replace("|", "\\|")  # a pipe in a pattern would end the cell
                lines.append(f"| {text} | {rule} | {where} |")
    return "\n".join(lines) + "\n"


def release_notes(changes: list[Change], old: Specs, new: Specs, base: str) -> str:
    """Return a draft CHANGELOG.md entry for `changes` since `base`."""
    versions = " · ".join(f"{title} {new.version(path) or 'none'}" for title, path in TITLES.values())
    lines = [f"## {versions} — unreleased (since {base})"]
    blocked = unversioned(changes, old, new)
    if blocked:
        names = " and ".join(TITLES[s][0] for s in blocked)
        lines += ["", f"> Draft: raise the major version of {names} before releasing these breaking changes."]
    sections: dict[str, list[str]] = {"Breaking": [], "Added": [], "Changed": []}
    for row in rows(changes):
        section = "Added" if "added" in row.change.rule.split("-") else "Changed"
        more = f" and {len(row.wheres) - 2} more" if len(row.wheres) > 2 else ""
        where = "" if row.wheres == (row.change.subject,) else f" ({', '.join(row.wheres[:2])}{more})"
        sections["Breaking" if row.change.breaking else section].append(
            f"- {TITLES[row.change.spec][0]}: {row.text}{where}"
        )
    for section, entries in sections.items():
        if entries:
            lines += ["", f"### {section}", "", *entries]
    if not changes:
        lines += ["", "No contract change."]
    return "\n".join(lines) + "\n"
