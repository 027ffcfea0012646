"""Print the contract diff from a git revision to the working tree; fail on unversioned breaking changes.

Exit status: 0 when nothing breaks or each spec with a breaking change raised its major version,
1 otherwise, 2 when the revision asked for does not exist.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from tests.tools.specdiff.contract import diff
from tests.tools.specdiff.report import release_notes, report, unversioned
from tests.tools.specdiff.specs import Specs

ROOT = Path(__file__).resolve().parents[3]


def git(root: Path, *args: str) -> str | None:
    """Return what `git args` prints in `root`, or None when it fails."""
    done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=False)
    return done.stdout.strip() if done.returncode == 0 else None


def default_base(root: Path) -> tuple[str, str] | None:
    """Return the revision to compare with and how to call it: the merge base with main, else HEAD~1."""
    head = git(root, "rev-parse", "HEAD")
    for main in ("main", "origin/main"):
        base = git(root, "merge-base", "HEAD", main)
        if base and base != head:
            return base, f"the merge base with `{main}`"
        if base:
            break  # on main: the previous commit
    previous = git(root, "rev-parse", "--verify", "--quiet", "HEAD~1^{commit}")
    return (previous, "the previous commit `HEAD~1`") if previous else None


def main(argv: list[str] | None = None) -> int:
    """Print the report (or release notes) and return the exit status."""
    parser = argparse.ArgumentParser(prog="python -m tests.tools.specdiff", description=__doc__)
    parser.add_argument("--base", help="git revision (default: merge base with main, or HEAD~1)")
    parser.add_argument("--root", type=Path, default=ROOT, help="the repository (default: this one)")
    parser.add_argument("--release-notes", action="store_true", help="draft CHANGELOG.md entries instead")
    parser.add_argument("--report-only", action="store_true", help="exit 0 on breaking changes too (CI)")
    args = parser.parse_args(argv)
    root: Path = args.root
    if args.base:
        commit = git(root, "rev-parse", "--verify", "--quiet", f"{args.base}^{{commit}}")
        chosen = (commit, f"`{args.base}`") if commit else None
    else:
        chosen = default_base(root)
    if chosen is None:
        print(f"spec-diff: no revision {args.base or 'HEAD~1'} to compare with", file=sys.stderr)
        return 0 if args.report_only or not args.base else 2
    commit, name = chosen
    old, new = Specs.at_revision(root, commit), Specs.in_directory(root)
    changes = diff(old, new)
    label = name if commit.startswith(name.strip("`")) else f"{name} ({commit[:7]})"
    print(release_notes(changes, old, new, label) if args.release_notes else report(changes, old, new, label))
    if args.report_only or args.release_notes:
        return 0
    return 1 if unversioned(changes, old, new) else 0


if __name__ == "__main__":
    sys.exit(main())
