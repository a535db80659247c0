"""Walk README's exit-code table and make the real CLI exit with every code in it, for a real reason.

Each row of the table (parsed from README.md, so a new row without a trigger here fails) gets a command that a
user could type and the situation that makes it fail that way: the tests' own registry on 127.0.0.1 lies,
stalls or refuses; a store on a full tmpfs; a corrupt metadata file; a runtime that fails. Every failure is
one `ctrpy:` line on stderr.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from support.fulldisk import CTRPY, TmpfsRoot, tmpfs_root  # noqa: F401 - fixture
from support.hostile import HostileRegistry, send, slow_drip, wrong_type
from support.registry import free_port
from support.testimages import LayerBuilder
from test_errors import readme_exit_codes


@pytest.fixture(scope="module")
def hostile() -> Iterator[HostileRegistry]:
    reg = HostileRegistry()
    try:
        yield reg
    finally:
        reg.stop()


@pytest.fixture(scope="module")
def rootfs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("rootfs")
    (root / "bin").mkdir()
    (root / "bin" / "busybox").write_bytes(Path("/bin/busybox").read_bytes())
    (root / "bin" / "busybox").chmod(0o755)
    (root / "not-executable").write_text("data\n")
    return root


class Env:
    """What a trigger needs: the CLI runner, the registry, a rootfs, the test's dirs and tmpfs."""

    def __init__(self, ctrpy: Any, hostile: HostileRegistry, rootfs: Path, dirs: Any, small: TmpfsRoot) -> None:
        self.ctrpy, self.hostile, self.rootfs, self.dirs, self.small = ctrpy, hostile, rootfs, dirs, small

    def pull(self, ref: str, *flags: str) -> Any:
        return self.ctrpy("pull", "-q", "--plain-http", "--no-unpack", *flags, ref)

    def run(self, name: str, *argv: str, config: str | None = None) -> Any:
        extra = ("--config", config) if config else ()
        return self.ctrpy(*extra, "run", "--rm", "--net", "none", *argv[:-1], "--rootfs", str(self.rootfs), name,
                          argv[-1])


def get_only(behaviour: Callable[[Any], None]) -> Callable[[Any], None]:
    """A HEAD is answered 405, so the client GETs the tag (and meets the behaviour)."""
    def behave(req: Any) -> None:
        if req.command == "HEAD":
            return send(req, 405, b"", "text/plain")
        behaviour(req)
    return behave


def _ok(e: Env) -> Any:
    return e.ctrpy("namespaces", "ls")


def _generic(e: Env) -> Any:
    e.hostile.behave["/v2/teapot/manifests/latest"] = lambda req: send(req, 418, b"I'm a teapot", "text/plain")
    return e.pull(f"{e.hostile.host}/teapot:latest")


def _usage(e: Env) -> Any:
    return e.ctrpy("pull")


def _invalid(e: Env) -> Any:
    return e.ctrpy("pull", "Bad Ref")


def _not_found(e: Env) -> Any:
    return e.ctrpy("images", "inspect", "nosuch")


def _exists(e: Env) -> Any:
    assert e.ctrpy("namespaces", "create", "twice").returncode == 0
    return e.ctrpy("namespaces", "create", "twice")


def _precondition(e: Env) -> Any:
    ref = e.hostile.add_image("tampered", [LayerBuilder().file("t", "tampered").bytes()])
    config = json.loads(e.hostile.manifests["tampered:latest"][1])["config"]
    e.hostile.behave[f"/v2/tampered/blobs/{config['digest']}"] = wrong_type(b"x" * config["size"], "text/plain")
    return e.pull(ref)


def _unavailable(e: Env) -> Any:
    return e.pull(f"127.0.0.1:{free_port()}/nothing-listens:latest")


def _denied(e: Env) -> Any:
    e.hostile.behave["/v2/forbidden/manifests/latest"] = lambda req: send(req, 403, b"{}", "application/json")
    return e.pull(f"{e.hostile.host}/forbidden:latest")


def _deadline(e: Env) -> Any:
    body = b'{"schemaVersion": 2}' * 10
    e.hostile.behave["/v2/drip/manifests/latest"] = get_only(slow_drip(body, interval=0.2))
    return e.pull(f"{e.hostile.host}/drip:latest", "--progress-timeout", "1")


def _not_implemented(e: Env) -> Any:
    e.hostile.behave["/v2/portal/manifests/latest"] = wrong_type(b"<html>log in</html>")
    return e.pull(f"{e.hostile.host}/portal:latest")


def _internal(e: Env) -> Any:
    (e.dirs.root / "meta.db").write_bytes(b"this is not an SQLite file" * 100)
    return e.ctrpy("images", "ls")


def _aborted(e: Env) -> Any:
    # Two layers, one download at a time; while the first drips, another command removes the pull's lease.
    layers = [LayerBuilder().file("a", os.urandom(4096)).bytes(), LayerBuilder().file("b", "b").bytes()]
    ref = e.hostile.add_image("race", layers, compressed=False)
    first = json.loads(e.hostile.manifests["race:latest"][1])["layers"]
    gate = threading.Event()

    def held(req: Any) -> None:
        gate.wait(30)
        blob = e.hostile.blobs[req.path.rsplit("/", 1)[-1]]
        send(req, 200, blob, "application/octet-stream")

    for layer in first:
        e.hostile.behave[f"/v2/race/blobs/{layer['digest']}"] = held
    argv = [CTRPY, "--root", str(e.dirs.root), "--state", str(e.dirs.state), "pull", "-q", "--plain-http",
            "--no-unpack", "--max-concurrent-downloads", "1", ref]
    env = {**os.environ, "CTRPY_CONFIG": str(e.dirs.root.parent / "config.toml")}
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        for _ in range(200):
            leases = e.ctrpy("leases", "ls", "-q").stdout.split()
            if leases:
                break
            time.sleep(0.05)
        assert leases, "the pull never took its lease"
        assert e.ctrpy("leases", "rm", *leases).returncode == 0
        gate.set()
        out, err = proc.communicate(timeout=60)
    finally:
        gate.set()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


def _no_space(e: Env) -> Any:
    assert e.small.ctrpy("namespaces", "create", "x").returncode == 0
    e.small.fill()
    # The first write on a full disk succeeds on the database's reserve; the next one has none left.
    assert e.small.ctrpy("namespaces", "create", "y").returncode == 0
    e.small.fill()
    return e.small.ctrpy("namespaces", "create", "z")


def _runtime_failure(e: Env) -> Any:
    config = e.dirs.root.parent / "bad-runtime.toml"
    config.write_text('[runtimes.bad]\ntype = "oci"\nbinary = "/bin/false"\n')
    return e.run("c125", "--runtime", "bad", "/bin/busybox", config=str(config))


def _cannot_exec(e: Env) -> Any:
    return e.run("c126", "/not-executable")


def _command_not_found(e: Env) -> Any:
    return e.run("c127", "/no/such/command")


def _interrupted(e: Env) -> Any:
    e.hostile.behave["/v2/stall/manifests/latest"] = get_only(slow_drip(b"{" * 1000, interval=1.0))
    argv = [CTRPY, "--root", str(e.dirs.root), "--state", str(e.dirs.state), "pull", "-q", "--plain-http",
            f"{e.hostile.host}/stall:latest"]
    env = {**os.environ, "CTRPY_CONFIG": str(e.dirs.root.parent / "config.toml")}
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 20
    while not any(m == "GET" and p.startswith("/v2/stall") for m, p, _ in e.hostile.log) and \
            time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


TRIGGERS: dict[int, Callable[[Env], Any]] = {
    0: _ok, 1: _generic, 2: _usage, 3: _invalid, 4: _not_found, 5: _exists, 6: _precondition, 7: _unavailable,
    8: _denied, 9: _deadline, 10: _not_implemented, 11: _internal, 12: _aborted, 13: _no_space,
    125: _runtime_failure, 126: _cannot_exec, 127: _command_not_found, 130: _interrupted,
}


def documented_codes() -> list[int]:
    return [int(c) for label in readme_exit_codes() for c in label.split(" / ")]


def test_every_documented_code_has_a_trigger() -> None:
    assert sorted(documented_codes()) == sorted(TRIGGERS)


@pytest.mark.parametrize("code", documented_codes())
def test_the_cli_exits_with_each_documented_code(code: int, ctrpy: Any, hostile: HostileRegistry, rootfs: Path,
                                                dirs: Any, tmpfs_root: TmpfsRoot) -> None:
    r = TRIGGERS[code](Env(ctrpy, hostile, rootfs, dirs, tmpfs_root))
    assert r.returncode == code, (r.returncode, r.stderr)
    assert "Traceback" not in r.stderr
    if code in (0, 2):
        return
    lines = [line for line in r.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("ctrpy: ") and not lines[0].startswith("ctrpy: ctrpy:"), \
        r.stderr
    assert ("internal error" in lines[0] or "damaged" in lines[0]) == (code == 11), lines[0]


@pytest.mark.parametrize("argv,message", [
    (("-u", "99999999999"), "invalid user ID 99999999999 in '99999999999': must be 0 to 4294967294"),
    (("-u", "0:4294967295"), "invalid group ID 4294967295 in '0:4294967295': must be 0 to 4294967294"),
    (("-p", "99999:80"), "invalid port mapping '99999:80': host port 99999 out of range 1-65535"),
])
def test_run_refuses_out_of_range_ids_and_ports_as_invalid_arguments(ctrpy: Any, rootfs: Path, argv: tuple,
                                                                    message: str) -> None:
    (rootfs / "etc").mkdir(exist_ok=True)
    r = ctrpy("run", "--rm", *argv, "--rootfs", str(rootfs), "c1", "/bin/busybox", "true")
    assert r.returncode == 3, r.stderr
    assert r.stderr == f"ctrpy: {message}\n"
    assert ctrpy("containers", "ls", "-q").stdout.strip() == ""
