"""Completion kinds declared on parameters (ctrpy.commands._kinds): the generated scripts and Click's own
completion read the same declaration."""

from __future__ import annotations

from typing import Any

import click

from ctrpy.commands._kinds import DIR, Kind, kind, tokens_of
from ctrpy.commands.completion import build_tree, walk


def test_declared_kinds_reach_the_generated_tree() -> None:
    nodes = {n.path: n for n in walk(build_tree())}
    assert nodes[("network", "check")].positions == [["@container"]]
    assert nodes[("snapshots", "mounts")].positions == [[DIR], ["@snapshot"]]
    assert nodes[("namespaces", "create")].positions[0] == []
    declared = [p for n in nodes.values() for p in n.command.params if tokens_of(p) is not None]
    assert len(declared) >= 7


def test_tokens_of_an_undeclared_parameter_is_none() -> None:
    assert tokens_of(click.Argument(["x"])) is None
    assert tokens_of(click.Argument(["x"], shell_complete=kind("a", "b"))) == ["a", "b"]


def test_literal_and_path_tokens() -> None:
    ctx = click.Context(click.Command("x"))
    items = Kind("always", "never", DIR)(ctx, None, "al")
    assert [(i.value, i.type) for i in items] == [("always", "plain"), ("al", "dir")]


def test_click_completion_answers_from_the_store(ctrpy: Any, dirs: Any, tmp_path: Any) -> None:
    rootfs = tmp_path / "rootfs"
    rootfs.mkdir()
    assert ctrpy("containers", "create", "--rootfs", str(rootfs), "box1", "/bin/true").returncode == 0
    assert ctrpy("containers", "create", "--rootfs", str(rootfs), "other", "/bin/true").returncode == 0
    words = f"ctrpy --root {dirs.root} --state {dirs.state} network check b"
    r = ctrpy(env={"_CTRPY_COMPLETE": "bash_complete", "COMP_WORDS": words, "COMP_CWORD": "7"})
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["plain,box1"]
