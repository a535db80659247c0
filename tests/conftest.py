"""Shared fixtures: every test gets its own --root/--state and leaves no mounts behind.

`ctrpy(*args)` runs the real console script (pytest-console-scripts, subprocess mode) with the test's own
root and state directories and returns the completed result (returncode, stdout, stderr).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Callable

import pytest

if TYPE_CHECKING:
    from ctrpy.runtime.client import Client

# Session fixtures for real registries and test images (tests/support/registry.py).
pytest_plugins = ["support.registry"]


def _mounts_under(prefix: str) -> list[str]:
    points = []
    with open("/proc/self/mounts") as f:
        for line in f:
            target = line.split()[1].replace("\\040", " ")
            if target == prefix or target.startswith(prefix.rstrip("/") + "/"):
                points.append(target)
    return points


def unmount_all_under(path: Path) -> None:
    """Unmount everything below `path`, deepest first (lazy, so a busy mount cannot wedge teardown)."""
    for target in sorted(_mounts_under(str(path)), key=len, reverse=True):
        subprocess.run(["umount", "-l", target], check=False, capture_output=True)


@pytest.fixture
def dirs(tmp_path: Path) -> Any:
    """Per-test root and state directories, unmounted on teardown even if the test failed."""

    class Dirs:
        root = tmp_path / "root"
        state = tmp_path / "state"

    Dirs.root.mkdir()
    Dirs.state.mkdir()
    yield Dirs
    unmount_all_under(tmp_path)


@pytest.fixture
def ctrpy(script_runner: Any, dirs: Any) -> Callable[..., Any]:
    """Run `ctrpy --root R --state S ARGS...`; keyword `stdin` feeds input, `env` adds variables."""

    def run(*args: str, stdin: Any = None, env: dict[str, str] | None = None, namespace: str | None = None,
            timeout: float = 120) -> Any:
        argv = ["ctrpy", "--root", str(dirs.root), "--state", str(dirs.state)]
        if namespace:
            argv += ["-n", namespace]
        full_env = dict(os.environ)
        full_env.pop("CTRPY_NAMESPACE", None)
        full_env["CTRPY_CONFIG"] = str(dirs.root.parent / "config.toml")
        # `.venv/bin/python -m pytest` does not put the venv's bin (where the console script is) on PATH.
        full_env["PATH"] = os.path.dirname(os.path.abspath(__import__("sys").executable)) + ":" + full_env.get("PATH", "")
        if env:
            full_env.update(env)
        return script_runner.run(argv + list(args), stdin=stdin, env=full_env, timeout=timeout)

    return run


def pytest_configure(config: pytest.Config) -> None:
    # Tests run the console script as a real subprocess: what a user runs is what is tested.
    config.option.script_launch_mode = "subprocess"


# Two tiers (`make test` runs both, `make test-unit` only the first): unit tests need neither root nor a
# registry and finish in seconds; a test is an integration test when it uses one of these fixtures (the CLI,
# a client on a store, a registry, the built test images), or says so with `pytest.mark.integration`.
INTEGRATION_FIXTURES = frozenset({
    "ctrpy", "script_runner", "client", "registry", "registry_tls", "registry_token", "seeded_registry",
    "token_issuer", "test_images", "fault_proxy",
})


# Modules whose every test needs root or a real runtime (namespaces, mounts, cgroups, the C helper, runc),
# whatever fixtures they use; and pure modules too slow for the unit tier (property tests).
INTEGRATION_MODULES = frozenset({
    "test_archive", "test_builtin_runtime", "test_cgroup2_guest", "test_cgroups", "test_full_disk", "test_helper",
    "test_imagearchive", "test_network", "test_network_cni", "test_pull", "test_runtime_devices",
    "test_runtime_hooks", "test_runtime_lifecycle", "test_runtime_namespaces", "test_runtime_parity",
    "test_runtime_process", "test_runtime_propagation", "test_runtime_seccomp", "test_runtime_spec_fields",
    "test_runtime_userns", "test_snapshots", "test_startup", "test_supervisor_peer", "test_unpack",
})
SLOW_MODULES = frozenset({"test_fuzz"})


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        module = item.module.__name__.rpartition(".")[2] if item.module is not None else ""
        if module in INTEGRATION_MODULES or INTEGRATION_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)
        if module in SLOW_MODULES:
            item.add_marker(pytest.mark.slow)


@pytest.fixture
def client(dirs: Any) -> Iterator[Client]:
    """A Client on the test's own root and state (closed afterwards)."""
    from ctrpy.runtime.client import Client

    c = Client(dirs.root, dirs.state)
    yield c
    c.db.close()


@pytest.fixture(scope="session", autouse=True)
def _remove_test_cgroup_parents() -> Any:
    """Remove the empty parent cgroups the suite's containers were placed under, once the session ends."""
    yield
    import glob

    for parent in glob.glob("/sys/fs/cgroup/*/ctrpy-test") + glob.glob("/sys/fs/cgroup/ctrpy-test"):
        try:
            os.rmdir(parent)
        except OSError:
            pass  # still in use (a leak a test will have reported) or not ours to remove


@pytest.fixture(scope="session", autouse=True)
def _remove_default_bridge_if_the_suite_made_it() -> Any:
    """Tests that `run` with the default config get the default bridge (ctrpy0, like docker0, which ctrpy keeps
    between runs); if the suite created it, it goes when the suite ends."""
    default_bridge = "/sys/class/net/ctrpy0"
    existed = os.path.exists(default_bridge)
    yield
    if not existed and os.path.exists(default_bridge):
        subprocess.run(["ip", "link", "del", "ctrpy0"], check=False, capture_output=True)
