"""The ctrpy command line: a Click tree whose groups load lazily.

`COMMANDS` maps each top-level name to "module:attribute" plus a static one-line summary, so `ctrpy --help`
and shell completion never import the runtime or the other groups. Aliases follow ctr.
"""

from __future__ import annotations

import os
import sys

# Shell completion asks for IDs on every <Tab>: answer from the metadata file before Click and typing load
# (see ctrpy.commands._complete). Only the console script's own argv triggers this.
if sys.argv[1:2] == ["__complete"]:
    from ctrpy.commands._complete import fast_main

    fast_main(sys.argv[2:])

# `ctrpy --help` / `--version` and plain listings: answered before Click loads (see _root.py).
if len(sys.argv) > 1 and sys.argv[0].endswith(("ctrpy", "__main__.py")):
    from ctrpy.commands._root import fast_path

    fast_path(sys.argv[1:])

import importlib  # noqa: E402
from typing import Any  # noqa: E402

import click  # noqa: E402

from ctrpy import __version__  # noqa: E402
from ctrpy.commands._root import (  # noqa: E402
    ALIASES, COMMANDS, GLOBAL_OPTIONS, HELP_NAMES, MAX_CONTENT_WIDTH, ROOT_HELP, VERSION_HELP, CliContext, exit_for,
)

class LazyGroup(click.Group):
    """A group whose subcommands are imported only when invoked (or when their help is shown)."""

    def __init__(self, *args: Any, lazy: dict[str, tuple[str, str]], aliases: dict[str, str], **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.lazy = lazy
        self.aliases = aliases

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(self.lazy))

    def resolve_command(self, ctx: click.Context, args: list[str]) -> Any:
        name = args[0] if args else ""
        if name and not name.startswith("-") and self.get_command(ctx, name) is None:
            import difflib

            known = sorted(set(self.lazy) | set(self.aliases) | set(self.commands))
            close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
            hint = f" Did you mean '{self.aliases.get(close[0], close[0])}'?" if close else ""
            ctx.fail(f"No such command '{name}'.{hint} (`ctrpy --help` lists the commands)")
        return super().resolve_command(ctx, args)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        name = self.aliases.get(name, name)
        if name in self.commands:
            return self.commands[name]
        if name not in self.lazy:
            return None
        module_name, attr = self.lazy[name][0].split(":")
        command = getattr(importlib.import_module(module_name), attr)
        if not isinstance(command, click.Command):
            raise TypeError(f"{module_name}:{attr} is not a click command")
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # Static summaries: listing help must not import every group.
        rows = [(name, self.lazy[name][1]) for name in self.list_commands(ctx) if name in self.lazy]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


def _with_global_options(fn: Any) -> Any:
    for decls, kwargs in reversed(GLOBAL_OPTIONS):
        fn = click.option(*decls, **kwargs)(fn)
    return fn


@click.group(
    cls=LazyGroup,
    lazy=COMMANDS,
    aliases=ALIASES,
    help=ROOT_HELP,
    context_settings={"help_option_names": HELP_NAMES, "max_content_width": MAX_CONTENT_WIDTH},
)
@_with_global_options
@click.version_option(__version__, "--version", prog_name="ctrpy", message="%(prog)s %(version)s",
                      help=VERSION_HELP)
@click.pass_context
def cli(ctx: click.Context, root: str | None, state: str | None, namespace: str, config_path: str | None,
        debug: bool) -> None:
    from ctrpy.paths import DEFAULT_CONFIG_PATH

    # A --config named on the command line must exist; the default path or CTRPY_CONFIG may be absent.
    explicit = ctx.get_parameter_source("config_path") == click.core.ParameterSource.COMMANDLINE
    ctx.obj = CliContext(root, state, namespace, config_path or DEFAULT_CONFIG_PATH, debug,
                         config_explicit=explicit)
    ctx.call_on_close(ctx.obj.close)


def main(argv: list[str] | None = None) -> None:
    """Console entry point: the one place where errors become messages and exit codes."""
    try:
        _main(argv)
    except SystemExit as exc:
        if argv is not None or not _may_skip_finalization():
            raise  # called in-process (tests, embedding), or someone waits for the interpreter's exit
        _exit_now(exc.code)


def _may_skip_finalization() -> bool:
    """Nothing waits for the interpreter's own exit: no atexit handler (coverage), no profiler or tracer
    (pyinstrument and cProfile report after the program), no thread still running."""
    import atexit

    threading = sys.modules.get("threading")
    return (getattr(atexit, "_ncallbacks", lambda: 1)() == 0 and sys.gettrace() is None
            and sys.getprofile() is None and not {"pyinstrument", "cProfile", "profile"} & sys.modules.keys()
            and (threading is None or threading.active_count() == 1))


def _exit_now(code: Any) -> None:
    """Exit without the interpreter's finalization, which tears down every imported module: 10-15 ms of
    CPU after a `run` (measured on the run path's modules), as much as some commands' own work. What ctrpy
    needs done at exit is done by then (files closed, the database closed by the context); Python's
    buffered streams are flushed here."""
    if code is None:
        status = 0
    elif isinstance(code, int):
        status = code
    else:
        sys.stderr.write(f"{code}\n")
        status = 1
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass  # a reader that went away: nothing more can reach it
    os._exit(status & 0xFF)


def _main(argv: list[str] | None) -> None:
    if argv is not None and argv[:1] == ["__complete"]:
        from ctrpy.commands._complete import fast_main

        fast_main(argv[1:])
    debug = os.environ.get("CTRPY_DEBUG", "").lower() in ("1", "true", "yes") or "--debug" in (argv or sys.argv)
    try:
        code = cli.main(args=argv, prog_name="ctrpy", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("ctrpy: interrupted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except BaseException as exc:  # the error ladder: interrupts, a closed stdout, every other exception
        if isinstance(exc, SystemExit):
            raise
        exit_for(exc, debug)
    sys.exit(code if isinstance(code, int) else 0)
