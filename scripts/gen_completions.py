#!/usr/bin/env python3
"""Regenerate completions/ctrpy.bash, completions/_ctrpy (zsh) and completions/ctrpy.fish from the Click tree.

    .venv/bin/python scripts/gen_completions.py           # rewrite the files
    .venv/bin/python scripts/gen_completions.py --check   # exit 1 and name the stale files instead

Run it after adding or changing a command, option or argument; tests/test_completion.py fails until you do.
The scripts themselves come from ctrpy.commands.completion (the same text `ctrpy completion SHELL` prints).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from ctrpy.commands.completion import FILENAMES, SHELLS, build_tree, render  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report files that differ")
    parser.add_argument("--out", type=Path, default=REPO / "completions", help="output directory")
    args = parser.parse_args()
    tree = build_tree()
    stale = []
    for shell in SHELLS:
        path = args.out / FILENAMES[shell]
        text = render(shell, tree)
        current = path.read_text() if path.exists() else None
        if current == text:
            continue
        stale.append(path)
        if not args.check:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            print(f"wrote {path.relative_to(REPO) if path.is_relative_to(REPO) else path}")
    if args.check and stale:
        print("stale (run scripts/gen_completions.py): " + " ".join(str(p) for p in stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
