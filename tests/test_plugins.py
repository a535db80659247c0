"""The plugin registry (ctrpy.runtime.plugins) and `ctrpy plugins ls`, with a real out-of-tree plugin.

The out-of-tree test writes a tiny package to a temporary directory, pip-installs it into this venv (its
entry point in group `ctrpy.plugins`), and pulls and runs a container on its snapshotter; it is uninstalled
on teardown. The package also carries a broken entry point, which `plugins ls` must show as an error
without breaking anything else.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ctrpy.runtime import errors, plugins
from ctrpy.runtime.plugins import PluginType, Registration

PKG = "ctrpy-testsnap"
BUILTIN = {
    ("io.containerd.content.v1", "local"),
    ("io.containerd.snapshotter.v1", "native"),
    ("io.containerd.snapshotter.v1", "overlayfs"),
    ("io.containerd.runtime.v2", "builtin"),
    ("io.containerd.runtime.v2", "oci"),
    ("io.ctrpy.network.v1", "bridge"),
    ("io.ctrpy.network.v1", "cni"),
    ("io.ctrpy.network.v1", "host"),
    ("io.ctrpy.network.v1", "none"),
}


# ---------------------------------------------------------------------------------------------- registry

def test_builtins_register_themselves() -> None:
    found = {(str(r.type), r.id) for r in plugins.registrations(entry_points=False)}
    assert BUILTIN <= found
    assert plugins.get(PluginType.SNAPSHOTTER, "native").config == "plugins.snapshotter.native"


def test_unknown_id_names_the_known_ones() -> None:
    with pytest.raises(errors.InvalidArgument) as exc:
        plugins.get(PluginType.SNAPSHOTTER, "no-such-snapshotter")
    assert "native" in str(exc.value) and "overlayfs" in str(exc.value)


def test_duplicate_and_bad_ids_are_refused() -> None:
    with pytest.raises(errors.AlreadyExists):
        plugins.register(Registration(PluginType.SNAPSHOTTER, "native", lambda ic: None))
    with pytest.raises(errors.InvalidArgument):
        plugins.register(Registration(PluginType.SNAPSHOTTER, "a/b", lambda ic: None))


def test_init_gets_its_config_section_and_directory(tmp_path: Path) -> None:
    from ctrpy.runtime.config import default_config

    config = default_config()
    config.data["plugins"]["snapshotter"]["native"] = {"example": 1}
    backend = plugins.init(PluginType.SNAPSHOTTER, "native", tmp_path, tmp_path / "state", config)
    assert backend.root == tmp_path.absolute() / "snapshots" / "native"
    assert backend.options == {"example": 1}
    assert not (tmp_path / "snapshots").exists(), "initialising a snapshotter must not create directories"


def test_network_drivers_come_from_the_registry(tmp_path: Path) -> None:
    from ctrpy.runtime.network.plugin import CNIDriver, NoneDriver

    assert isinstance(plugins.init(PluginType.NETWORK, "cni", tmp_path, tmp_path), CNIDriver)
    assert isinstance(plugins.init(PluginType.NETWORK, "none", tmp_path, tmp_path), NoneDriver)


def test_unknown_runtime_type_is_one_clear_error(tmp_path: Path) -> None:
    from ctrpy.runtime.ociruntime import open_runtime_entry

    with pytest.raises(errors.InvalidArgument, match="unknown type 'wasm'.*'builtin', 'oci'"):
        open_runtime_entry("mine", {"type": "wasm"}, tmp_path)
    runtime = open_runtime_entry("mine", {"type": "oci", "binary": "runc"}, tmp_path)
    assert runtime.name == "mine"


def test_run_path_does_not_scan_entry_points() -> None:
    # Entry point scanning reads every installed distribution's metadata: only an unknown ID may pay for it.
    code = (
        "import sys\n"
        "from ctrpy.runtime import plugins\n"
        "plugins.get(plugins.PluginType.SNAPSHOTTER, 'overlayfs')\n"
        "plugins.get(plugins.PluginType.NETWORK, 'bridge')\n"
        "plugins.get(plugins.PluginType.RUNTIME, 'builtin')\n"
        "assert not plugins._entry_points_loaded\n"
        "assert 'importlib.metadata' not in sys.modules, 'importlib.metadata was imported'\n"
        "assert 'ctrpy.runtime.snapshots.overlay' not in sys.modules, 'lookup imported the implementation'\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_concurrent_first_lookups() -> None:
    # Pull's threads may be the first to ask for a type: none may see it half loaded.
    code = (
        "import threading\n"
        "from ctrpy.runtime import plugins\n"
        "errs = []\n"
        "def look():\n"
        "    try:\n"
        "        plugins.get(plugins.PluginType.SNAPSHOTTER, 'native')\n"
        "        plugins.get(plugins.PluginType.NETWORK, 'none')\n"
        "    except Exception as exc:\n"
        "        errs.append(exc)\n"
        "ts = [threading.Thread(target=look) for _ in range(16)]\n"
        "[t.start() for t in ts]; [t.join() for t in ts]\n"
        "assert not errs, errs\n"
    )
    for _ in range(3):
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr


# ---------------------------------------------------------------------------------------------- CLI

def test_plugins_ls(ctrpy: Any) -> None:
    r = ctrpy("plugins", "ls")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["TYPE", "ID", "PLATFORMS", "STATUS"]
    rows = {(line.split()[0], line.split()[1]): line.split()[3] for line in lines[1:]}
    assert BUILTIN <= set(rows)
    assert rows[("io.containerd.snapshotter.v1", "native")] == "ok"
    data = json.loads(ctrpy("plugin", "ls", "--format", "json").stdout)
    assert {(d["type"], d["id"]) for d in data} == set(rows)
    assert all(d["status"] in ("ok", "skip", "error") for d in data)
    quiet = ctrpy("plugins", "ls", "-q").stdout.split()
    assert "io.containerd.snapshotter.v1.overlayfs" in quiet and len(quiet) == len(rows)


def test_config_section_of_a_runtime_is_probed(ctrpy: Any, dirs: Any) -> None:
    # `plugins ls` initialises each plugin with its config: a runtime binary that is missing is "skip".
    (dirs.root.parent / "config.toml").write_text('[runtimes.runc]\nbinary = "/nonexistent/runc"\n')
    data = json.loads(ctrpy("plugins", "ls", "--format", "json").stdout)
    oci = next(d for d in data if d["id"] == "oci")
    assert oci["status"] == "skip" and "/nonexistent/runc" in oci["error"]


# ---------------------------------------------------------------------------------------------- out of tree

PLUGIN_SOURCE = '''
"""A snapshotter that copies like native and leaves a mark, so a test can see it was used."""

from ctrpy.runtime.plugins import PluginType, Registration, register
from ctrpy.runtime.snapshots.native import NativeBackend


class MarkingBackend(NativeBackend):
    name = "testsnap"

    def create(self, sid, parents, kind):
        super().create(sid, parents, kind)
        (self.root / "created").mkdir(exist_ok=True)
        (self.root / "created" / str(sid)).write_text(self.options.get("mark", "none"))


def _init(ic):
    return MarkingBackend(ic.root, **ic.config)


register(Registration(PluginType.SNAPSHOTTER, "testsnap", _init, config="plugins.snapshotter.testsnap"))
'''


@pytest.fixture(scope="module")
def installed_plugin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    src = tmp_path_factory.mktemp("plugin-src")
    (src / "ctrpy_testsnap").mkdir()
    (src / "ctrpy_testsnap" / "__init__.py").write_text("")
    (src / "ctrpy_testsnap" / "plugin.py").write_text(PLUGIN_SOURCE)
    (src / "ctrpy_testsnap" / "broken.py").write_text("raise ImportError('needs libfoo')\n")
    (src / "pyproject.toml").write_text(textwrap.dedent(f"""
        [build-system]
        requires = ["setuptools>=61"]
        build-backend = "setuptools.build_meta"

        [project]
        name = "{PKG}"
        version = "0.0.1"

        [project.entry-points."ctrpy.plugins"]
        testsnap = "ctrpy_testsnap.plugin"
        broken = "ctrpy_testsnap.broken"

        [tool.setuptools]
        packages = ["ctrpy_testsnap"]
    """))
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    r = subprocess.run(pip + ["install", "--no-deps", str(src)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    try:
        yield
    finally:
        subprocess.run(pip + ["uninstall", "-y", PKG], capture_output=True, text=True, check=True)


def test_out_of_tree_snapshotter(installed_plugin: None, ctrpy: Any, dirs: Any, seeded_registry: Any) -> None:
    (dirs.root.parent / "config.toml").write_text('[plugins.snapshotter.testsnap]\nmark = "from-config"\n')
    data = json.loads(ctrpy("plugins", "ls", "--format", "json").stdout)
    mine = next(d for d in data if d["id"] == "testsnap")
    assert (mine["type"], mine["status"], mine["source"]) == ("io.containerd.snapshotter.v1", "ok", PKG)
    broken = next(d for d in data if d["id"] == "broken")
    assert broken["status"] == "error" and "needs libfoo" in broken["error"]
    assert all(d["status"] == "ok" for d in data if (d["type"], d["id"]) in BUILTIN - {
        ("io.containerd.runtime.v2", "oci")})

    table = ctrpy("plugins", "ls").stdout
    assert any(line.split()[:2] == ["io.containerd.snapshotter.v1", "testsnap"] for line in table.splitlines())
    assert "needs libfoo" in table

    ref = f"{seeded_registry.host}/busybox:latest"
    r = ctrpy("pull", "--snapshotter", "testsnap", ref)
    assert r.returncode == 0, r.stderr
    marks = sorted((dirs.root / "snapshots" / "testsnap" / "created").iterdir())
    assert marks and all(m.read_text() == "from-config" for m in marks)
    r = ctrpy("run", "--rm", "--snapshotter", "testsnap", "--runtime", "runc", ref, "sh", "-c",
              "echo hello > /tmp/f; cat /tmp/f")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "hello\n"
    # The container's own snapshot was made by the plugin too, and removed with --rm.
    assert len(list((dirs.root / "snapshots" / "testsnap" / "created").iterdir())) == len(marks) + 1


def test_unknown_snapshotter_is_one_line(ctrpy: Any, seeded_registry: Any) -> None:
    r = ctrpy("pull", "--snapshotter", "nope", f"{seeded_registry.host}/busybox:latest")
    assert r.returncode == 3, r.stderr
    assert r.stderr.startswith("ctrpy: unknown snapshotter 'nope'") and "native" in r.stderr
    assert len(r.stderr.splitlines()) == 1, "nothing is fetched for a pull that cannot unpack"
    assert ctrpy("images", "ls", "-q").stdout == ""
    assert ctrpy("content", "ls", "-q").stdout == ""
