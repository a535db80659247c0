"""The standard every command meets, checked by walking the Click tree and running the real console script.

- every command has a one-line summary and an Examples section in its help; `--help` exits 0;
- every list command has -q/--quiet and --format json, every inspect command --format json; on an empty
  store `--format json` prints valid JSON and `-q` prints nothing;
- a failing command prints one `ctrpy: ...` line and exits with its error class's documented code, with no
  traceback unless --debug; a missing argument is a usage error (exit 2);
- output without a terminal, or with NO_COLOR, has no ANSI escapes;
- `ctrpy --help` loads no command group, runtime module or heavy library;
- docs/reference.md is what scripts/gen_docs.py generates from the tree now.

A command added later is checked automatically: the parameters come from the tree, not from a list.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import click
import pytest

from ctrpy.commands.completion import Node, build_tree, walk
from support.tty import run_on_pty as _run_on_pty

REPO = Path(__file__).resolve().parent.parent
CTRPY = str(Path(sys.executable).parent / "ctrpy")
ANSI = re.compile(r"\x1b\[")

TREE = build_tree()
NODES = walk(TREE)
LEAVES = [n for n in NODES if not n.children]

# `ctrpy runtime` speaks runc's command-line contract (its own flags and output), not ctrpy's list style.
FOREIGN = ("runtime",)
LIST_VERBS = {"ls", "list", "ps", "active", ("images", "check")}
INSPECT_VERBS = {"inspect", "info", "metrics", "usage"}


def ident(node: Node) -> str:
    return "-".join(node.path) or "ctrpy"


def by_kind(verbs: set[Any]) -> list[Node]:
    """Leaves whose verb (or whole path, for a tuple) is in `verbs`."""
    return [n for n in LEAVES if n.path and (n.path[-1] in verbs or n.path in verbs) and n.path[0] not in FOREIGN]


def option(node: Node, name: str) -> click.Option | None:
    for param in node.command.params:
        if isinstance(param, click.Option) and name in param.opts + param.secondary_opts:
            return param
    return None


def required_args(node: Node) -> bool:
    return any(isinstance(p, click.Argument) and p.required for p in node.command.params)


def one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one error line, got: {stderr!r}"
    assert lines[0].startswith("ctrpy: "), lines[0]
    return lines[0]


# ---------------------------------------------------------------------------------------------- help

@pytest.mark.parametrize("node", NODES, ids=ident)
def test_one_line_summary(node: Node) -> None:
    text = (node.command.help or "").strip()
    assert text, f"`ctrpy {' '.join(node.path)}` has no help text"
    first = text.split("\n\n", 1)[0]
    assert "\n" not in first.strip(), f"summary is not one line: {first!r}"
    assert len(first) <= 100, f"summary longer than 100 characters: {first!r}"
    assert node.summary and not node.summary.endswith("..."), f"listing shows a cut summary: {node.summary!r}"


@pytest.mark.parametrize("node", NODES, ids=ident)
def test_help_exits_0_with_examples(ctrpy: Any, node: Node) -> None:
    r = ctrpy(*node.path, "--help")
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""
    assert r.stdout.startswith(f"Usage: ctrpy {' '.join(node.path)}".rstrip())
    assert not ANSI.search(r.stdout)
    assert "Examples:" in r.stdout, f"`ctrpy {' '.join(node.path)} --help` has no Examples section"
    block = r.stdout.split("Examples:", 1)[1]
    assert "ctrpy" in block.split("\n\n", 1)[0], "the Examples section shows no ctrpy command line"


@pytest.mark.parametrize("node", [n for n in LEAVES if required_args(n)], ids=ident)
def test_missing_argument_is_a_usage_error(ctrpy: Any, node: Node) -> None:
    r = ctrpy(*node.path)
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert "Usage:" in r.stderr and "Error:" in r.stderr
    assert "Traceback" not in r.stderr
    assert r.stdout == ""


def test_unknown_command_is_a_usage_error(ctrpy: Any) -> None:
    r = ctrpy("no-such-command")
    assert r.returncode == 2
    assert "No such command" in r.stderr and "Traceback" not in r.stderr


# ---------------------------------------------------------------------------------------------- output

@pytest.mark.parametrize("node", by_kind(LIST_VERBS), ids=ident)
def test_list_command_has_quiet_and_json(node: Node) -> None:
    quiet = option(node, "-q")
    assert quiet is not None and quiet.is_flag and "--quiet" in quiet.opts, "no -q/--quiet flag"
    fmt = option(node, "--format")
    assert fmt is not None, "no --format option"
    assert isinstance(fmt.type, click.Choice) and "json" in fmt.type.choices, "--format does not offer json"


@pytest.mark.parametrize("node", by_kind(INSPECT_VERBS), ids=ident)
def test_inspect_command_has_json(node: Node) -> None:
    fmt = option(node, "--format")
    assert fmt is not None, "no --format option (scripts should be able to ask for json everywhere)"
    assert isinstance(fmt.type, click.Choice) and "json" in fmt.type.choices


@pytest.mark.parametrize("node", [n for n in by_kind(LIST_VERBS) if not required_args(n)], ids=ident)
def test_list_on_empty_store(ctrpy: Any, node: Node) -> None:
    if option(node, "--format") is None or option(node, "-q") is None:
        pytest.fail("needs -q and --format (see test_list_command_has_quiet_and_json)")
    r = ctrpy(*node.path, "--format", "json")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert isinstance(data, list), "--format json of a list command prints a JSON array"
    r = ctrpy(*node.path, "-q")
    assert r.returncode == 0, r.stderr
    ids = r.stdout.splitlines()
    # An empty store lists only built-ins (the default namespace, the default bridge network), if anything;
    # `plugins ls` lists the registry, which is never empty.
    assert len(ids) == len(data) <= (len(data) if node.path[0] == "plugins" else 1), (ids, data)
    assert all(i and " " not in i for i in ids)
    r = ctrpy(*node.path, env={"TERM": "xterm-256color"})
    assert r.returncode == 0, r.stderr
    assert not ANSI.search(r.stdout + r.stderr), "escape codes in output that is not a terminal"
    assert not ANSI.search(r.stdout)


def test_quiet_and_json_list_what_exists(ctrpy: Any) -> None:
    for name in ("alpha", "beta"):
        assert ctrpy("namespaces", "create", name).returncode == 0
    r = ctrpy("namespaces", "ls", "-q")
    assert r.returncode == 0
    assert {"alpha", "beta"} <= set(r.stdout.split("\n"))
    assert all(line and " " not in line for line in r.stdout.splitlines())
    names = {item["name"] for item in json.loads(ctrpy("namespaces", "ls", "--format", "json").stdout)}
    assert {"alpha", "beta"} <= names


def _tty_env(dirs: Any, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "FORCE_COLOR") and not k.startswith("CTRPY_")}
    env.update(TERM="xterm-256color", COLUMNS="100", CTRPY_CONFIG=str(dirs.root.parent / "config.toml"))
    env.update(extra)
    return env


def test_no_color_on_a_terminal(ctrpy: Any, dirs: Any) -> None:
    assert ctrpy("namespaces", "create", "alpha", "team=blue").returncode == 0
    argv = [CTRPY, "--root", str(dirs.root), "--state", str(dirs.state), "namespaces", "ls"]
    plain = _run_on_pty(argv, _tty_env(dirs, NO_COLOR="1"))
    assert b"alpha" in plain
    assert not ANSI.search(plain.decode(errors="replace")), plain


def test_tables_fit_the_terminal(ctrpy: Any, dirs: Any) -> None:
    labels = [f"team.example.com/key{i}=some-long-value-{i}" for i in range(4)]
    assert ctrpy("namespaces", "create", "alpha", *labels).returncode == 0
    argv = [CTRPY, "--root", str(dirs.root), "--state", str(dirs.state), "namespaces", "ls"]
    env = _tty_env(dirs, NO_COLOR="1")
    env.pop("COLUMNS")
    out = _run_on_pty(argv, env, columns=60).decode()
    lines = [line for line in out.replace("\r", "").split("\n") if line.strip()]
    assert any("alpha" in line for line in lines)
    assert max(len(line) for line in lines) <= 60, out
    assert len(lines) == 2, out  # cut to fit, never wrapped: one line per row, as copyable as it can be


def test_pull_without_a_terminal_has_no_progress_escapes(ctrpy: Any, seeded_registry: Any) -> None:
    r = ctrpy("pull", "--no-unpack", f"{seeded_registry.host}/busybox:latest")
    assert r.returncode == 0, r.stderr
    assert not ANSI.search(r.stdout + r.stderr)
    assert "\r" not in r.stdout + r.stderr  # no redrawn progress lines in a log file


def test_no_escapes_when_not_a_terminal(ctrpy: Any) -> None:
    assert ctrpy("namespaces", "create", "alpha", "team=blue").returncode == 0
    r = ctrpy("namespaces", "ls", env={"TERM": "xterm-256color"})
    assert r.returncode == 0
    assert "alpha" in r.stdout
    assert not ANSI.search(r.stdout + r.stderr)
    # Plain, aligned columns like ctr's: the header's columns line up with the rows'.
    lines = r.stdout.splitlines()
    header = lines[0]
    row = next(line for line in lines if line.startswith("alpha"))
    second = header.split()[1]
    assert row[header.index(second):].startswith("team=blue")


# ---------------------------------------------------------------------------------------------- errors

NOT_FOUND = [
    ("images", "inspect", "nosuch"),
    ("images", "rm", "nosuch"),
    ("images", "tag", "nosuch", "other"),
    ("containers", "info", "nosuch"),
    ("containers", "rm", "nosuch"),
    ("tasks", "start", "nosuch"),
    ("tasks", "kill", "nosuch"),
    ("tasks", "wait", "nosuch"),
    ("exec", "nosuch", "true"),
    ("logs", "nosuch"),
    ("snapshots", "info", "nosuch"),
    ("snapshots", "rm", "nosuch"),
    ("namespaces", "rm", "nosuch"),
    ("network", "inspect", "nosuch"),
    ("leases", "rm", "nosuch"),
    ("content", "get", "sha256:" + "0" * 64),
]


@pytest.mark.parametrize("argv", NOT_FOUND, ids=lambda a: "-".join(a[:2]))
def test_not_found_is_one_line_and_exit_4(ctrpy: Any, argv: tuple[str, ...]) -> None:
    if not _exists(argv):
        pytest.skip(f"`ctrpy {' '.join(argv[:2])}` does not exist yet")
    r = ctrpy(*argv)
    assert r.returncode == 4, (r.returncode, r.stderr)
    line = one_error_line(r.stderr)
    assert "nosuch" in line or "0000" in line
    assert "Traceback" not in r.stderr


def _exists(argv: tuple[str, ...]) -> bool:
    node = TREE
    for word in argv:
        if not node.children:
            return True
        word = node.aliases.get(word, word)
        if word not in node.children:
            return False
        node = node.children[word]
    return True


def test_debug_shows_the_traceback(ctrpy: Any) -> None:
    r = ctrpy("--debug", "containers", "info", "nosuch")
    assert r.returncode == 4
    assert "Traceback" in r.stderr
    assert r.stderr.rstrip().splitlines()[-1].startswith("ctrpy: ")


@pytest.mark.parametrize("argv, code", [
    (("-n", "bad ns!", "images", "ls"), 3),
    (("--config", "/nonexistent/ctrpy.toml", "images", "ls"), 4),
    (("pull", "Bad Ref"), 3),
    (("containers", "ls", "--format", "yaml"), 2),
], ids=["bad-namespace", "missing-config", "bad-reference", "bad-choice"])
def test_bad_input_exit_codes(ctrpy: Any, argv: tuple[str, ...], code: int) -> None:
    r = ctrpy(*argv)
    assert r.returncode == code, (r.returncode, r.stderr)
    assert "Traceback" not in r.stderr
    if code != 2:
        one_error_line(r.stderr)


def test_every_error_class_has_its_documented_exit_code() -> None:
    """The README's exit-code table and the error classes agree, one distinct code per class."""
    from ctrpy.runtime import errors

    readme = (REPO / "README.md").read_text()
    table = dict(re.findall(r"^\| (\d+) \| ([^|]+) \|$", readme, re.MULTILINE))
    classes = [c for c in vars(errors).values()
               if isinstance(c, type) and issubclass(c, errors.CtrpyError) and c is not errors.CtrpyError]
    codes = [c.exit_code for c in classes]
    assert len(set(codes)) == len(codes), "two error classes share an exit code"
    for cls in classes:
        assert str(cls.exit_code) in table, f"{cls.__name__} (exit {cls.exit_code}) is not in the README table"
        words = cls.kind.split()[0]
        assert words in table[str(cls.exit_code)].lower(), (cls.__name__, table[str(cls.exit_code)])


# ---------------------------------------------------------------------------------------------- speed, docs

def test_help_loads_no_group_or_heavy_module(dirs: Any) -> None:
    env = {**os.environ, "PYTHONPROFILEIMPORTTIME": "1", "CTRPY_CONFIG": str(dirs.root.parent / "config.toml")}
    r = subprocess.run([CTRPY, "--help"], capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 0
    imported = {line.split("|")[-1].strip() for line in r.stderr.splitlines() if line.startswith("import time:")}
    assert "ctrpy.commands" in imported  # the profile works (Click itself is not loaded for --help)
    for module in imported:
        assert not module.startswith(("ctrpy.runtime", "httpx", "rich", "pyroute2", "asyncio")), module
        assert not module.startswith("ctrpy.commands.") or module == "ctrpy.commands._root", \
            f"`ctrpy --help` imported {module}"


def test_reference_docs_are_current() -> None:
    r = subprocess.run([sys.executable, str(REPO / "scripts" / "gen_docs.py"), "--check"], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr + " -- run scripts/gen_docs.py"
    text = (REPO / "docs" / "reference.md").read_text()
    for node in NODES:
        assert f"## {' '.join(('ctrpy',) + node.path)}\n" in text
