"""Completion kinds declared on the parameter itself, so a parameter and its completion live in one place.

`@click.argument("name", shell_complete=kind())` (nothing to offer) or `shell_complete=kind("@container")`
gives Click a working `shell_complete` callable and gives ctrpy.commands.completion the tokens it writes
into the generated scripts. The scripts keep the fast path: at <Tab> they ask `ctrpy __complete KIND`
(ctrpy.commands._complete), which answers before Click loads; Click's own completion (`_CTRPY_COMPLETE`)
answers through the same KINDS table.

Tokens: "@KIND" names stored objects of a kind (see _complete.KINDS), ":file"/":dir" complete paths, any
other token is a literal word. No tokens: nothing to complete (a new name, a remote reference).
"""

from __future__ import annotations

from typing import Any

FILE, DIR = ":file", ":dir"


class Kind:
    """A Click `shell_complete` callable carrying its completion tokens."""

    def __init__(self, *tokens: str) -> None:
        self.tokens = list(tokens)

    def __repr__(self) -> str:
        return f"kind({', '.join(map(repr, self.tokens))})"

    def __call__(self, ctx: Any, param: Any, incomplete: str) -> list[Any]:
        from click.shell_completion import CompletionItem

        out: list[Any] = []
        for token in self.tokens:
            if token in (FILE, DIR):
                out.append(CompletionItem(incomplete, type="file" if token == FILE else "dir"))
            elif token.startswith("@"):
                from ctrpy.commands import _complete

                names = _complete.KINDS[token[1:]](_where(ctx))
                out.extend(CompletionItem(name) for name in names if name.startswith(incomplete))
            elif token.startswith(incomplete):
                out.append(CompletionItem(token))
        return out


def kind(*tokens: str) -> Kind:
    """The shell_complete of a parameter whose values are `tokens` (see the module doc)."""
    return Kind(*tokens)


def tokens_of(param: Any) -> list[str] | None:
    """The tokens a parameter declared with `kind()`, or None when it declared none."""
    declared = getattr(param, "_custom_shell_complete", None)
    return list(declared.tokens) if isinstance(declared, Kind) else None


def _where(ctx: Any) -> Any:
    """The global options of the command line being completed, as `__complete` takes them."""
    from ctrpy.commands._complete import Where

    where = Where()
    root_ctx = ctx.find_root()
    params = root_ctx.params
    where.root, where.state = params.get("root"), params.get("state")
    where.namespace, where.config = params.get("namespace"), params.get("config_path")
    where.snapshotter = ctx.params.get("snapshotter") or None
    return where
