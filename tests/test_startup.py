"""Start-up (issue 17): `--help` and `--version` are answered before Click loads, exactly as Click would
answer them; a leaf command imports only its own group; an install ships bytecode."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import click

from ctrpy.commands import cli
from ctrpy.commands._root import fast_help

CTRPY = str(Path(sys.executable).parent / "ctrpy")
ROOT = Path(__file__).resolve().parent.parent


def test_fast_help_is_clicks_help_at_every_width() -> None:
    for width in range(50, 119):  # Click's range: terminal columns clamped to 120, minus 2, at least 50
        ctx = click.Context(cli, info_name="ctrpy", terminal_width=width, **cli.context_settings)
        assert fast_help(width) == cli.get_help(ctx) + "\n", width


def _modules(*args: str, columns: str = "80") -> tuple[str, set[str]]:
    """What the console script prints and which modules it imported (python -X importtime)."""
    env = {**os.environ, "COLUMNS": columns}
    r = subprocess.run([sys.executable, "-X", "importtime", CTRPY, *args], capture_output=True, text=True,
                       env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    mods = {line.rsplit("|", 1)[1].strip() for line in r.stderr.splitlines() if line.startswith("import time:")}
    return r.stdout, mods


def test_help_and_version_never_import_click_or_the_runtime() -> None:
    for columns in ("60", "80", "200"):
        fast, mods = _modules("--help", columns=columns)
        assert "click" not in mods and "typing" not in mods and not any(m.startswith("ctrpy.runtime") for m in mods)
        # Through Click (any other argument takes the normal path) the page is the same.
        slow = subprocess.run([CTRPY, "--debug", "--help"], capture_output=True, text=True, timeout=60,
                              env={**os.environ, "COLUMNS": columns}).stdout
        assert fast == slow
    out, mods = _modules("--version")
    assert out.startswith("ctrpy ") and "click" not in mods


def test_a_leaf_command_imports_only_its_group(dirs: object) -> None:
    out, mods = _modules("--root", str(dirs.root), "--state", str(dirs.state), "images", "ls")  # type: ignore[attr-defined]
    assert out.split() == ["REF", "TYPE", "DIGEST", "SIZE", "PLATFORMS", "LABELS"]
    others = {m for m in mods if m.startswith("ctrpy.commands.") and m not in (
        "ctrpy.commands.images", "ctrpy.commands._output", "ctrpy.commands._root")}
    assert others == set()
    assert not {"httpx", "rich", "pyroute2", "ctrpy.runtime.images", "shutil"} & mods
