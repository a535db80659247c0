"""The CLI root: global options and their env vars, exit codes, the non-root error, --debug, version, info."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

CTRPY = str(Path(sys.executable).parent / "ctrpy")
BAD_DIGEST = "sha256:nothex"


def test_help_lists_the_groups(ctrpy: Any) -> None:
    r = ctrpy("--help")
    assert r.returncode == 0
    for name in ("content", "namespaces", "leases", "events", "config", "info", "version"):
        assert f"\n  {name} " in r.stdout
    for option in ("--root", "--state", "--namespace", "-n", "--config", "--debug"):
        assert option in r.stdout
    r = ctrpy("content", "-h")
    assert r.returncode == 0
    for verb in ("ls", "get", "ingest", "active", "rm", "label"):
        assert f"\n  {verb} " in r.stdout


def test_usage_errors_exit_2(ctrpy: Any) -> None:
    r = ctrpy("no-such-command")
    assert r.returncode == 2 and "No such command" in r.stderr
    r = ctrpy("content", "ls", "--format", "yaml")
    assert r.returncode == 2


def test_version(ctrpy: Any) -> None:
    from ctrpy._helper import ffi, lib

    import ctrpy as pkg

    helper = ffi.string(lib.ctrpy_helper_version()).decode()
    r = ctrpy("version")
    assert r.returncode == 0
    assert r.stdout.splitlines() == [f"ctrpy: {pkg.__version__}", f"helper: {helper}"]
    assert json.loads(ctrpy("version", "--format", "json").stdout) == {"version": pkg.__version__,
                                                                      "helper_version": helper}
    assert ctrpy("--version").stdout.strip() == f"ctrpy {pkg.__version__}"


def _expected_cgroup_mode() -> str:
    def fstype(path: str) -> str:
        r = subprocess.run(["stat", "-f", "-c", "%T", path], capture_output=True, text=True)
        return r.stdout.strip()

    if fstype("/sys/fs/cgroup") == "cgroup2fs":
        return "v2"
    if os.path.isdir("/sys/fs/cgroup/unified") and fstype("/sys/fs/cgroup/unified") == "cgroup2fs":
        return "hybrid"
    return "v1"


def test_info_json_and_table(ctrpy: Any, dirs: Any) -> None:
    r = ctrpy("-n", "infons", "info", "--format", "json")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert (info["root"], info["state"], info["namespace"]) == (str(dirs.root), str(dirs.state), "infons")
    assert info["cgroup_mode"] == _expected_cgroup_mode()
    assert {s["name"] for s in info["snapshotters"]} == {"overlayfs", "native"}
    assert [s["name"] for s in info["snapshotters"] if s["default"]] == ["overlayfs"]
    runtimes = {rt["name"]: rt for rt in info["runtimes"]}
    assert set(runtimes) == {"ctrpy", "runc", "crun"}
    for name in ("runc", "crun"):
        assert runtimes[name]["found"] == (shutil.which(name) is not None)
        assert runtimes[name]["path"] == shutil.which(name)
    assert runtimes["ctrpy"]["found"] and runtimes["ctrpy"]["default"]

    lines = ctrpy("info").stdout.splitlines()
    assert lines[0].split() == ["KEY", "VALUE"]
    rows = {ln[:25].strip(): ln[25:].strip() for ln in lines[1:]}
    assert rows["Root"] == str(dirs.root) and rows["Cgroup mode"] == _expected_cgroup_mode()
    assert rows["Runtime runc"].startswith(shutil.which("runc") or "missing")


def test_missing_runtime_binary_is_reported(ctrpy: Any, dirs: Any) -> None:
    (dirs.root.parent / "config.toml").write_text('[runtimes.ghost]\ntype = "oci"\nbinary = "no-such-runtime"\n')
    info = json.loads(ctrpy("info", "--format", "json").stdout)
    ghost = [rt for rt in info["runtimes"] if rt["name"] == "ghost"][0]
    assert (ghost["found"], ghost["path"]) == (False, None)
    assert "Runtime ghost            missing" in ctrpy("info").stdout


@pytest.mark.parametrize("text,mode", [
    ("25 1 0:22 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n", "v2"),
    ("25 1 0:22 / /sys/fs/cgroup ro - tmpfs tmpfs ro\n"
     "26 25 0:23 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n"
     "27 25 0:24 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n", "hybrid"),
    ("25 1 0:22 / /sys/fs/cgroup ro - tmpfs tmpfs ro\n"
     "27 25 0:24 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n", "v1"),
])
def test_cgroup_mode_detection(tmp_path: Path, text: str, mode: str) -> None:
    from ctrpy.runtime.system import cgroup_mode

    path = tmp_path / "mountinfo"
    path.write_text(text)
    assert cgroup_mode(str(path)) == mode


def test_global_options_from_environment(script_runner: Any, tmp_path: Path) -> None:
    env = dict(os.environ, CTRPY_ROOT=str(tmp_path / "r"), CTRPY_STATE=str(tmp_path / "s"),
               CTRPY_NAMESPACE="envns", CTRPY_CONFIG=str(tmp_path / "none.toml"),
               PATH=f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}")
    info = json.loads(script_runner.run(["ctrpy", "info", "--format", "json"], env=env).stdout)
    assert (info["root"], info["state"], info["namespace"]) == (str(tmp_path / "r"), str(tmp_path / "s"), "envns")
    # Command-line options win over the environment.
    info = json.loads(script_runner.run(["ctrpy", "--root", str(tmp_path / "r2"), "-n", "cli", "info",
                                         "--format", "json"], env=env).stdout)
    assert (info["root"], info["namespace"]) == (str(tmp_path / "r2"), "cli")
    assert script_runner.run(["ctrpy", "namespaces", "create", "x"], env=env).returncode == 0
    assert (tmp_path / "r" / "meta.db").is_file()


@pytest.mark.parametrize("args,code", [
    (("content", "get", BAD_DIGEST), 3),                       # InvalidArgument
    (("content", "get", "sha256:" + "0" * 64), 4),             # NotFound
    (("namespaces", "create", "default"), 5),                  # AlreadyExists (created first below)
    (("namespaces", "rm", "default"), 6),                      # FailedPrecondition (not empty)
])
def test_exit_codes_per_error_class(ctrpy: Any, args: tuple[str, ...], code: int) -> None:
    import io

    assert ctrpy("content", "ingest", "r", stdin=io.StringIO("x")).returncode == 0
    r = ctrpy(*args)
    assert r.returncode == code
    assert len(r.stderr.splitlines()) == 1 and r.stderr.startswith("ctrpy: ")
    assert "Traceback" not in r.stderr


def test_debug_shows_traceback(ctrpy: Any) -> None:
    r = ctrpy("content", "get", BAD_DIGEST)
    assert r.returncode == 3 and "Traceback" not in r.stderr
    for extra_args, env in ((("--debug",), None), ((), {"CTRPY_DEBUG": "1"})):
        r = ctrpy(*extra_args, "content", "get", BAD_DIGEST, env=env)
        assert r.returncode == 3
        assert "Traceback (most recent call last)" in r.stderr
        assert "parse_digest" in r.stderr
        assert r.stderr.splitlines()[-1].startswith("ctrpy: invalid digest")


def _nobody_can_run_ctrpy() -> bool:
    r = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", sys.executable, "-c",
                        "import ctrpy.commands"], capture_output=True, cwd="/")
    return r.returncode == 0


# As the user `nobody` (setpriv), and, for checkouts `nobody` cannot read (a clone under /root), in a user
# namespace without a uid mapping, where the process is nobody but still reaches root-owned files.
@pytest.mark.integration
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to switch to nobody")
@pytest.mark.parametrize("switch", ["setpriv", "unshare"])
def test_not_root_is_a_one_line_error(dirs: Any, switch: str) -> None:
    if switch == "setpriv":
        if not _nobody_can_run_ctrpy():
            pytest.skip("user nobody cannot read this checkout; the unshare variant covers it")
        prefix = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
    else:
        prefix = ["unshare", "--user"]
    root = dirs.root / "nonroot"
    argv = prefix + [CTRPY, "--root", str(root), "--state", str(dirs.state)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("CTRPY_")}
    for args in (["content", "ls"], ["namespaces", "create", "x"], ["leases", "ls"], ["events"]):
        r = subprocess.run(argv + args, capture_output=True, text=True, env=env, cwd="/")
        assert r.returncode == 8, r.stderr
        assert r.stderr == "ctrpy: ctrpy must be run as root (try sudo)\n"
        assert r.stdout == ""
    assert not root.exists()
    # Commands that need no root state still work.
    r = subprocess.run(argv + ["version"], capture_output=True, text=True, env=env, cwd="/")
    assert r.returncode == 0 and r.stdout.startswith("ctrpy: ")


def test_group_aliases_resolve_like_ctr(ctrpy: Any) -> None:
    from ctrpy.commands import ALIASES

    checked = 0
    for alias, target in sorted(ALIASES.items()):
        full = ctrpy(target, "--help")
        if full.returncode != 0:
            continue  # that group is not built yet
        short = ctrpy(alias, "--help")
        assert short.returncode == 0, alias
        assert short.stdout.replace(f"ctrpy {alias} ", f"ctrpy {target} ", 1) == full.stdout
        checked += 1
    assert checked >= 4  # at least ns/namespace/lease and whatever groups exist
