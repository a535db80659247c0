"""Start-up (issue 17): `--help` and `--version` are answered before Click loads, exactly as Click would
answer them; a leaf command imports only its own group; an install ships bytecode."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

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


def test_plain_listings_run_without_click(dirs: Any) -> None:
    base = ["--root", str(dirs.root), "--state", str(dirs.state)]
    out, mods = _modules(*base, "images", "ls")
    assert out.split() == ["REF", "TYPE", "DIGEST", "SIZE", "PLATFORMS", "LABELS"]
    assert not {"click", "httpx", "rich", "pyroute2", "ctrpy.commands.images", "ctrpy.runtime.images",
                "shutil"} & mods
    for extra in (["c", "list", "-q"], ["-n", "other", "--debug", "containers", "ls"],
                  ["--namespace=other", "i", "ls", "--quiet"], ["t", "ls"], ["tasks", "list", "-q"], ["ps"],
                  ["ps", "-aq"], ["-n", "other", "ps", "--all", "--quiet"]):
        _, mods = _modules(*base, *extra)
        assert "click" not in mods, extra
    # Nor the standard library's heavy modules (issue 17: they were most of an empty `images ls`): the path
    # through config, client, metadata.db and metadata.listing imports none of them.
    heavy = {"typing", "dataclasses", "inspect", "pathlib", "re", "json", "copy", "ctrpy.runtime.metadata.images",
             "ctrpy.runtime.metadata.containers", "ctrpy.runtime.content", "ctrpy.runtime.filters"}
    for extra in (["images", "ls"], ["containers", "ls"], ["c", "ls", "-q"], ["i", "ls", "-q"]):
        _, mods = _modules(*base, *extra)
        assert not heavy & mods, (extra, sorted(heavy & mods))
    # Anything else goes through Click (here an unknown option, with Click's usage error).
    r = subprocess.run([CTRPY, *base, "images", "ls", "-x"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "No such option" in r.stderr


def _both(*args: str) -> tuple[subprocess.CompletedProcess, subprocess.CompletedProcess]:
    """The fast path's answer and Click's (--debug is left to Click only when passed as CTRPY_DEBUG)."""
    fast = subprocess.run([CTRPY, *args], capture_output=True, text=True, timeout=60)
    slow = subprocess.run([CTRPY, *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "CTRPY_DEBUG": "0"})
    return fast, slow


def test_fast_listings_print_what_click_prints(seeded_registry: Any, dirs: Any) -> None:
    base = ["--root", str(dirs.root), "--state", str(dirs.state)]
    r = subprocess.run([CTRPY, *base, "pull", "--no-unpack", "-q", f"{seeded_registry.host}/layered:latest"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    from ctrpy.runtime.client import Client
    from ctrpy.runtime.metadata.containers import Container

    client = Client(dirs.root, dirs.state)
    for k in range(3):
        client.containers.create(Container(id=f"c{k}", runtime_name="ctrpy", image="x", spec={"a": [k]},
                                           labels={"k": str(k)}))
    for args in (["images", "ls"], ["images", "ls", "-q"], ["i", "list"], ["containers", "ls"],
                 ["containers", "ls", "--quiet"], ["-n", "other", "containers", "ls"],
                 ["--namespace=bad ns", "containers", "ls"], ["tasks", "ls"], ["t", "ls", "-q"], ["ps"], ["ps", "-a"],
                 ["ps", "-a", "-q"], ["ps", "-qa"], ["ps", "--all"], ["--namespace=bad ns", "ps", "-a"]):
        fast, slow = _both(*base, *args)
        # The two runs may straddle a second (and an age's width moves the columns after it).
        ages = re.compile(r"(\d+ \w+|Less than a second|About an? \w+) ago")

        def same(text: str) -> str:
            return re.sub(r" +", " ", ages.sub("AGE", text))

        assert (fast.returncode, same(fast.stdout), fast.stderr) == \
            (slow.returncode, same(slow.stdout), slow.stderr), args
    assert "layered:latest" in _both(*base, "images", "ls")[0].stdout
    # A plain `containers ls` reads plain tuples (metadata.listing); a filtered one the store's records
    # (ContainerStore.summaries): with a filter every container matches, they print the same.
    plain = subprocess.run([CTRPY, *base, "containers", "ls"], capture_output=True, text=True, timeout=60)
    for flt in (["id~=c"], ["-q", "id~=c"]):
        filtered = subprocess.run([CTRPY, *base, "containers", "ls", *flt], capture_output=True, text=True,
                                  timeout=60)
        quiet = subprocess.run([CTRPY, *base, "containers", "ls", "-q"], capture_output=True, text=True, timeout=60)
        want = quiet.stdout if "-q" in flt else plain.stdout
        assert (filtered.returncode, re.sub(r" +", " ", ages.sub("AGE", filtered.stdout))) == \
            (0, re.sub(r" +", " ", ages.sub("AGE", want))), flt
    assert plain.stdout.split("\n")[1].split()[:3] == ["c0", "x", "ctrpy"]
    assert _both(*base, "--namespace=bad ns", "containers", "ls")[0].returncode == 3


def test_listing_ages_are_human_age_of_each_row(monkeypatch: Any) -> None:
    # human_ages() parses one stamp per second of creation: the text must be human_age()'s for every row,
    # also where a row's fraction of a second decides it (near a unit's edge) and for stamps in other forms.
    from ctrpy.commands import _text
    from ctrpy.runtime import timefmt

    now = 1_800_000_000.25
    monkeypatch.setattr(_text.time, "time", lambda: now)
    stamps: list[str | None] = [None, "", "2027-01-15T08:00:00Z", "2027-01-15T09:00:00+01:00",
                                "2027-01-15T07:59:59.9Z", "2027-01-15T08:00:00.000000001Z"]
    for back in (0, 0.1, 0.3, 0.9, 1, 59, 59.2, 59.3, 60, 60.2, 61, 3599.25, 3600.2, 3600.3, 86399.3, 86400.2,
                 86400.26, 2 * 86400 + 0.25, 400 * 86400):
        for frac in (0, 123456789, 250000000, 250000001, 999999999):
            stamps.append(timefmt.format_ns(int(now - back) * 1_000_000_000 + frac))
    ages = _text.human_ages(stamps)
    assert ages == [_text.human_age(s) for s in stamps]
    # Different texts within one second of creation: the per-second shortcut cannot have hidden an edge.
    assert len(set(ages)) > 10 and {"1 minute ago", "59 seconds ago", "1 day ago"} <= set(ages)
