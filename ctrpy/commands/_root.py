"""The root command as data: its commands, aliases, global options and help text, without Click.

`ctrpy --help` and `ctrpy --version` are answered from here before Click (and typing, inspect, enum...) is
imported: the Click tree in `ctrpy.commands` is built from these same tables, and `fast_help()` renders them
the way Click's HelpFormatter does (tests/test_startup.py compares the two at every width Click uses).
"""

from __future__ import annotations

import os
import sys

from ctrpy.paths import DEFAULT_CONFIG_PATH, DEFAULT_ROOT, DEFAULT_STATE

TYPE_CHECKING = False  # typing costs ~5 ms of start-up: annotations here are never evaluated
if TYPE_CHECKING:
    from typing import Any, NoReturn

# name -> (module:attribute, short help). Keep sorted by group; aliases in ALIASES.
COMMANDS: dict[str, tuple[str, str]] = {
    "images": ("ctrpy.commands.images:images", "Manage images"),
    "containers": ("ctrpy.commands.containers:containers", "Manage containers (metadata)"),
    "tasks": ("ctrpy.commands.tasks:tasks", "Manage tasks (running processes of containers)"),
    "snapshots": ("ctrpy.commands.snapshots:snapshots", "Manage snapshots"),
    "content": ("ctrpy.commands.content:content", "Manage the content store"),
    "namespaces": ("ctrpy.commands.namespaces:namespaces", "Manage namespaces"),
    "leases": ("ctrpy.commands.leases:leases", "Manage leases"),
    "network": ("ctrpy.commands.network:network", "Manage networks"),
    "config": ("ctrpy.commands.config:config", "Show the configuration"),
    "events": ("ctrpy.commands.events:events", "Show recorded events"),
    "plugins": ("ctrpy.commands.plugins:plugins", "List the plugins (snapshotters, runtimes, networks, ...)"),
    "gc": ("ctrpy.commands.gc:gc", "Garbage-collect unreferenced content, snapshots and leftovers"),
    "info": ("ctrpy.commands.system:info", "Show root/state dirs, snapshotters, runtimes, cgroup mode"),
    "version": ("ctrpy.commands.system:version", "Show ctrpy's and the helper's versions"),
    "pull": ("ctrpy.commands.images:pull", "Pull an image from a registry"),
    "save": ("ctrpy.commands.imagetools:save", "Save images to an OCI/docker archive"),
    "load": ("ctrpy.commands.imagetools:load", "Load images from an archive or OCI layout"),
    "import": ("ctrpy.commands.imagetools:import_", "Create an image from a root file system tarball"),
    "export": ("ctrpy.commands.imagetools:export", "Export a container's file system as a tar archive"),
    "rmi": ("ctrpy.commands.imagetools:rmi", "Remove images and free their space"),
    "tag": ("ctrpy.commands.imagetools:tag", "Give an image more names"),
    "history": ("ctrpy.commands.imagetools:history", "Show the history of an image"),
    "system": ("ctrpy.commands.system:system", "Host-level jobs: disk usage (df), prune, boot"),
    "push": ("ctrpy.commands.images:push", "Push an image to a registry"),
    "login": ("ctrpy.commands.registry:login", "Log in to a registry"),
    "logout": ("ctrpy.commands.registry:logout", "Log out from a registry"),
    "run": ("ctrpy.commands.run:run", "Create and start a container"),
    "create": ("ctrpy.commands.run:create", "Create a container without starting it"),
    "ps": ("ctrpy.commands.lifecycle:ps", "List containers"),
    "start": ("ctrpy.commands.lifecycle:start", "Start stopped or created containers"),
    "stop": ("ctrpy.commands.lifecycle:stop", "Stop running containers"),
    "restart": ("ctrpy.commands.lifecycle:restart", "Restart containers"),
    "kill": ("ctrpy.commands.lifecycle:kill", "Send a signal to running containers"),
    "rm": ("ctrpy.commands.lifecycle:rm", "Remove containers"),
    "wait": ("ctrpy.commands.lifecycle:wait", "Wait for containers to stop and print their exit codes"),
    "pause": ("ctrpy.commands.lifecycle:pause", "Pause containers"),
    "unpause": ("ctrpy.commands.lifecycle:unpause", "Unpause containers"),
    "rename": ("ctrpy.commands.lifecycle:rename", "Rename a container"),
    "inspect": ("ctrpy.commands.lifecycle:inspect", "Show docker-shaped JSON of containers, images or volumes"),
    "port": ("ctrpy.commands.lifecycle:port", "List a container's published ports"),
    "top": ("ctrpy.commands.lifecycle:top", "Show the processes of a container"),
    "stats": ("ctrpy.commands.lifecycle:stats", "Show containers' resource usage"),
    "exec": ("ctrpy.commands.lifecycle:exec_", "Run a command in a running container"),
    "attach": ("ctrpy.commands.lifecycle:attach", "Attach to a running container"),
    "logs": ("ctrpy.commands.lifecycle:logs", "Show a container's output"),
    "cp": ("ctrpy.commands.lifecycle:cp", "Copy files between a container and the host"),
    "diff": ("ctrpy.commands.lifecycle:diff", "List a container's changed files"),
    "commit": ("ctrpy.commands.lifecycle:commit", "Create an image from a container's changes"),
    "volume": ("ctrpy.commands.volume:volume", "Manage named volumes"),
    "serve": ("ctrpy.commands.serve:serve", "Serve the Kubernetes CRI (for kubelet, crictl, critest)"),
    "runtime": ("ctrpy.commands.ociruntime:runtime", "The built-in runtime as a runc-compatible command"),
    "completion": ("ctrpy.commands.completion:completion", "Print a shell completion script"),
}

ALIASES: dict[str, str] = {
    "i": "images",
    "image": "images",
    "c": "containers",
    "container": "containers",
    "t": "tasks",
    "task": "tasks",
    "snapshot": "snapshots",
    "ns": "namespaces",
    "namespace": "namespaces",
    "lease": "leases",
    "net": "network",
    "networks": "network",
    "volumes": "volume",
    "plugin": "plugins",
}

ROOT_HELP = """ctrpy: a containerd-class container runtime.

\b
Examples:
  ctrpy pull docker.io/library/busybox:latest
  ctrpy run --rm docker.io/library/busybox:latest demo echo hello
  ctrpy -n k8s.io images ls
"""

# (declarations, click.option keyword arguments), in the order --help lists them.
GLOBAL_OPTIONS: list[tuple[tuple[str, ...], dict]] = [
    (("--root",), {"envvar": "CTRPY_ROOT", "default": None, "metavar": "DIR",
                   "help": f"Root directory for persistent data  [env: CTRPY_ROOT; default: {DEFAULT_ROOT}]"}),
    (("--state",), {"envvar": "CTRPY_STATE", "default": None, "metavar": "DIR",
                    "help": f"State directory for runtime data  [env: CTRPY_STATE; default: {DEFAULT_STATE}]"}),
    (("--namespace", "-n"), {"envvar": "CTRPY_NAMESPACE", "default": "default", "show_default": True,
                             "help": "Namespace to use  [env: CTRPY_NAMESPACE]"}),
    (("--config", "config_path"), {"envvar": "CTRPY_CONFIG", "default": None, "metavar": "FILE",
                                   "help": f"Config file  [env: CTRPY_CONFIG; default: {DEFAULT_CONFIG_PATH}]"}),
    (("--debug",), {"is_flag": True, "envvar": "CTRPY_DEBUG", "help": "Show tracebacks and debug output"}),
]
VERSION_HELP = "Show the version and exit."
HELP_NAMES = ["-h", "--help"]
HELP_HELP = "Show this message and exit."
MAX_CONTENT_WIDTH = 120
USAGE = "Usage: ctrpy [OPTIONS] COMMAND [ARGS]..."


def _option_rows() -> list[tuple[str, str]]:
    rows = []
    for decls, kw in GLOBAL_OPTIONS:
        flags = [d for d in decls if d.startswith("-")]
        flags.sort(key=lambda f: 2 if f.startswith("--") else 1)  # Click lists short forms first
        first = ", ".join(flags)
        if not kw.get("is_flag"):
            first += " " + kw.get("metavar", "TEXT")
        text = kw["help"]
        if kw.get("show_default"):
            text += f"  [default: {kw['default']}]"
        rows.append((first, text))
    rows.append(("--version", VERSION_HELP))
    rows.append((", ".join(HELP_NAMES), HELP_HELP))
    return rows


def _width() -> int:
    # shutil.get_terminal_size's rules (COLUMNS first, then stdout, else 80) without importing shutil.
    try:
        columns = int(os.environ.get("COLUMNS", "0"))
    except ValueError:
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):
            columns = 0
        columns = columns or 80
    return max(min(columns, MAX_CONTENT_WIDTH) - 2, 50)


def _wrapper(width: int, indent: str = "") -> object:
    import textwrap

    class Wrapper(textwrap.TextWrapper):
        # Click's rule for a word longer than the line: cut it where the line ends (no hyphen search).
        def _handle_long_word(self, reversed_chunks: list[str], cur_line: list[str], cur_len: int,
                              width: int) -> None:
            space_left = max(width - cur_len, 1)
            if self.break_long_words:
                last = reversed_chunks[-1]
                cur_line.append(last[:space_left])
                reversed_chunks[-1] = last[space_left:]
            elif not cur_line:
                cur_line.append(reversed_chunks.pop())

    return Wrapper(width, initial_indent=indent, subsequent_indent=indent, replace_whitespace=False)


def _wrap_paragraphs(text: str, width: int, indent: str = "") -> str:
    """click.formatting.wrap_text(preserve_paragraphs=True): `\\b` paragraphs are kept as written."""
    paragraphs: list[tuple[int, bool, str]] = []
    buf: list[str] = []
    lead: int | None = None

    def flush() -> None:
        if buf:
            if buf[0].strip() == "\b":
                paragraphs.append((lead or 0, True, "\n".join(buf[1:])))
            else:
                paragraphs.append((lead or 0, False, " ".join(buf)))
            buf.clear()

    for line in text.expandtabs().splitlines():
        if not line:
            flush()
            lead = None
            continue
        if lead is None:
            stripped = line.lstrip()
            lead = len(line) - len(stripped)
            line = stripped
        buf.append(line)
    flush()
    out = []
    for extra, raw, para in paragraphs:
        pad = indent + " " * extra
        if raw:
            out.append("\n".join(pad + ln for ln in para.splitlines()))
        else:
            out.append(_wrapper(width, pad).fill(para))  # type: ignore[attr-defined]
    return "\n\n".join(out)


def _definitions(rows: list[tuple[str, str]], width: int, indent: int = 2) -> list[str]:
    """click's HelpFormatter.write_dl (col_max 30, spacing 2), inside a section (indent 2)."""
    first_col = min(max(len(first) for first, _ in rows), 30) + 2
    lines = []
    for first, second in rows:
        head = " " * indent + first
        if len(first) <= first_col - 2:
            head += " " * (first_col - len(first))
        else:
            lines.append(head)
            head = " " * (first_col + indent)
        wrapped = _wrap_paragraphs(second, max(width - first_col - 2, 10)).splitlines()
        lines.append(head + (wrapped[0] if wrapped else ""))
        lines.extend(" " * (first_col + indent) + line for line in wrapped[1:])
    return lines


def fast_help(width: int | None = None) -> str:
    """`ctrpy --help` exactly as Click renders it, from the tables above."""
    width = width or _width()
    doc = _wrap_paragraphs(ROOT_HELP.strip("\n"), width, "  ")
    commands = sorted(COMMANDS.items())
    parts = [USAGE, "", doc, "", "Options:", *_definitions(_option_rows(), width), "", "Commands:",
             *_definitions([(name, summary) for name, (_, summary) in commands], width)]
    return "\n".join(parts) + "\n"


def fast_path(argv: list[str]) -> None:
    """Answer `--help`, `--version` and a plain listing (FAST_LEAVES) without Click; returns for anything
    else."""
    if argv in (["--help"], ["-h"]):
        sys.stdout.write(fast_help())
    elif argv == ["--version"]:
        from ctrpy import __version__

        sys.stdout.write(f"ctrpy {__version__}\n")
    else:
        leaf = _fast_leaf(argv)
        if leaf is not None:
            _run_leaf(*leaf)
        return
    sys.stdout.flush()
    raise SystemExit(0)


# ---------------------------------------------------------------------------------------------- run time

class CliContext:
    """What every command receives as ctx.obj: global options plus a lazily built runtime Client."""

    def __init__(self, root: str | None, state: str | None, namespace: str, config_path: str, debug: bool,
                 config_explicit: bool) -> None:
        self.root_opt = root
        self.state_opt = state
        self.namespace = namespace
        self.config_path = config_path
        self.config_explicit = config_explicit
        self.debug = debug
        self._config: Any = None
        self._client: Any = None

    @property
    def config(self) -> Any:
        if self._config is None:
            from ctrpy.runtime.config import load_config

            self._config = load_config(self.config_path, required=self.config_explicit)
            for warning in self._config.warnings:
                sys.stderr.write(f"ctrpy: warning: {warning}\n")
        return self._config

    @property
    def root(self) -> str:
        return self.root_opt or self.config["root"]

    @property
    def state(self) -> str:
        return self.state_opt or self.config["state"]

    def close(self) -> None:
        """Close the metadata database (its WAL is checkpointed): when the command is done, not at the
        interpreter's exit, which `commands.main` skips."""
        if self._client is not None:
            self._client.db.close()

    @property
    def client(self) -> Any:
        """The runtime client; requires root, since every store lives in root-owned directories."""
        if self._client is None:
            from ctrpy.runtime.client import Client, require_root

            require_root("ctrpy")
            self._client = Client(self.root, self.state, self.namespace, self.config)
        return self._client


def exit_for(exc: BaseException, debug: bool) -> NoReturn:
    """The error ladder (for the Click tree and the fast path alike): a message and the exit code."""
    if isinstance(exc, KeyboardInterrupt):
        sys.stderr.write("ctrpy: interrupted\n")
        sys.exit(130)
    if isinstance(exc, BrokenPipeError):
        # The reader went away (`ctrpy images ls | head`): exit quietly, without a second error on flush.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(141)
    if not isinstance(exc, Exception):
        raise exc
    from ctrpy.runtime import errors

    if debug:
        import traceback

        traceback.print_exc()
    if isinstance(exc, errors.CtrpyError):
        message = str(exc)
        while message.startswith("ctrpy: "):  # a runtime's own message may carry the prefix already
            message = message[len("ctrpy: "):]
        sys.stderr.write(f"ctrpy: {message}\n")
        sys.exit(exc.exit_code)
    if errors.is_no_space(exc):
        # A full disk met outside the places that say where (they raise NoSpace themselves).
        where = getattr(exc, "filename", None) or "metadata database"
        sys.stderr.write(f"ctrpy: {errors.no_space('write', where)}\n")
        sys.exit(errors.NoSpace.exit_code)
    if isinstance(exc, OSError):
        wrapped = errors.from_oserror(exc, exc.strerror or "system error")
        sys.stderr.write(f"ctrpy: {exc}\n")
        sys.exit(wrapped.exit_code)
    if not debug:
        sys.stderr.write(f"ctrpy: internal error: {type(exc).__name__}: {exc} (run with --debug for a traceback)\n")
    sys.exit(errors.Internal.exit_code)


# Leaf commands that run without Click when called plainly: (group, verb) -> function of commands._listings
# (and plain `ps [-a] [-q]`: ps_all / ps_running).
FAST_LEAVES = {("images", "ls"): "images_ls", ("containers", "ls"): "containers_ls", ("tasks", "ls"): "tasks_ls"}
_PS_FLAGS = {"-a", "--all", "-q", "--quiet", "-aq", "-qa"}
_VALUED = {"--root": "root", "--state": "state", "--namespace": "namespace", "-n": "namespace",
           "--config": "config_path"}
_ENV = {"root": "CTRPY_ROOT", "state": "CTRPY_STATE", "namespace": "CTRPY_NAMESPACE", "config_path": "CTRPY_CONFIG"}


def _fast_leaf(argv: list[str]) -> tuple[str, dict, bool] | None:
    """(function, global options, quiet) for `[--root R] [--state S] [-n NS] [--config F] [--debug] GROUP ls
    [-q]`; None for anything else (Click then parses it, with its checks and messages)."""
    values: dict = {}
    for key, var in _ENV.items():
        env = os.environ.get(var)
        if env == "":
            return None  # Click's rules for an empty variable: leave them to Click
        values[key] = env
    if "CTRPY_DEBUG" in os.environ:
        return None
    values["debug"] = False
    explicit_config = False
    i = 0
    while i < len(argv) and argv[i].startswith("-"):
        name, eq, value = argv[i].partition("=")
        if name in _VALUED and not (eq and name == "-n"):  # Click reads `-n=x` as the name "=x"
            if not eq:
                if i + 1 >= len(argv):
                    return None
                i += 1
                value = argv[i]
            values[_VALUED[name]] = value
            explicit_config = explicit_config or name == "--config"
        elif argv[i] == "--debug":
            values["debug"] = True
        else:
            return None
        i += 1
    rest = argv[i:]
    values["explicit_config"] = explicit_config
    if rest and rest[0] == "ps" and set(rest[1:]) <= _PS_FLAGS:  # docker's `ps [-a] [-q]`
        flags = set(rest[1:])
        return ("ps_all" if flags & {"-a", "--all", "-aq", "-qa"} else "ps_running"), values, \
            bool(flags & {"-q", "--quiet", "-aq", "-qa"})
    if len(rest) < 2 or rest[1] not in ("ls", "list") or any(a not in ("-q", "--quiet") for a in rest[2:]):
        return None
    function = FAST_LEAVES.get((ALIASES.get(rest[0], rest[0]), "ls"))
    if function is None:
        return None
    return function, values, len(rest) > 2


def _run_leaf(function: str, values: dict, quiet: bool) -> NoReturn:
    try:
        from ctrpy.commands import _listings

        obj = CliContext(values["root"], values["state"], values["namespace"] or "default",
                         values["config_path"] or DEFAULT_CONFIG_PATH, values["debug"],
                         config_explicit=values["explicit_config"])
        getattr(_listings, function)(obj, [], quiet, "table")
        sys.stdout.flush()
    except BaseException as exc:  # noqa: BLE001 - the same ladder as the Click tree's
        if isinstance(exc, SystemExit):
            raise
        exit_for(exc, values["debug"])
    sys.exit(0)
