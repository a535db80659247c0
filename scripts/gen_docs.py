#!/usr/bin/env python3
"""Generate docs/reference.md, the command reference, from the Click tree.

    .venv/bin/python scripts/gen_docs.py           # rewrite docs/reference.md
    .venv/bin/python scripts/gen_docs.py --check   # exit 1 if it is stale

Every command gets a section: its summary, aliases, and its `--help` text (usage, description, examples,
options) rendered at a fixed width, so the file does not depend on the terminal it was generated in.
tests/test_cli_standards.py fails when the committed file drifts from the commands.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import click  # noqa: E402

from ctrpy.commands.completion import Node, build_tree, walk  # noqa: E402

WIDTH = 100
OUTPUT = REPO / "docs" / "reference.md"

INTRO = """\
# ctrpy command reference

Generated from the Click tree by `scripts/gen_docs.py`; do not edit by hand (the test suite checks it is
current). `ctrpy COMMAND --help` prints the same text. Global options go before the command
(`ctrpy -n k8s.io images ls`); exit codes are listed in the README ("Exit codes"), shell completion is
described there too ("Shell completion").
"""


def anchor(title: str) -> str:
    """GitHub's heading anchor for `title`."""
    return re.sub(r"[^a-z0-9 -]", "", title.lower()).replace(" ", "-")


def help_text(node: Node, ctx: click.Context) -> str:
    return node.command.get_help(ctx).rstrip()


def contexts(tree: Node) -> dict[tuple[str, ...], click.Context]:
    """A context per command path with a fixed width, so help wraps the same everywhere."""
    out: dict[tuple[str, ...], click.Context] = {}

    def visit(node: Node, parent: click.Context | None) -> None:
        name = node.path[-1] if node.path else "ctrpy"
        settings = dict(node.command.context_settings)
        settings.update(terminal_width=WIDTH, max_content_width=WIDTH)
        ctx = click.Context(node.command, info_name=name, parent=parent, **settings)
        out[node.path] = ctx
        for child in node.children.values():
            visit(child, ctx)

    visit(tree, None)
    return out


def render(tree: Node | None = None) -> str:
    tree = tree or build_tree()
    ctxs = contexts(tree)
    nodes = walk(tree)
    aliases: dict[tuple[str, ...], list[str]] = {}
    for node in nodes:
        for alias, target in node.aliases.items():
            aliases.setdefault(node.path + (target,), []).append(alias)
    lines = [INTRO, "## Commands", "", "| command | summary |", "|---|---|"]
    for node in nodes:
        title = " ".join(("ctrpy",) + node.path)
        summary = node.summary.replace("|", "\\|")
        lines.append(f"| [`{title}`](#{anchor(title)}) | {summary} |")
    for node in nodes:
        title = " ".join(("ctrpy",) + node.path)
        lines += ["", f"## {title}", ""]
        if node.path:
            lines += [node.summary, ""]
        if aliases.get(node.path):
            names = ", ".join(f"`{' '.join(('ctrpy',) + node.path[:-1] + (a,))}`" for a in aliases[node.path])
            lines += [f"Aliases: {names}", ""]
        lines += ["```text", help_text(node, ctxs[node.path]), "```"]
        if node.children:
            lines += ["", "Subcommands: " + ", ".join(
                f"[`{name}`](#{anchor(' '.join(('ctrpy',) + node.path + (name,)))})" for name in node.children)]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report whether the file is stale")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args()
    text = render()
    current = args.output.read_text() if args.output.exists() else None
    if current == text:
        return 0
    if args.check:
        print(f"stale: {args.output} (run scripts/gen_docs.py)", file=sys.stderr)
        return 1
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
