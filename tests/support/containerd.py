"""A private containerd for interoperability tests (`ctr images import/export` against ctrpy's archives).

It runs with its own root, state, sockets and opt dir under a temp dir, the CRI plugin off (bench/services.py's
config), and is stopped by its PID when the session ends. Only image and content commands are used, so no
shim is ever started.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

# The benchmarks start the same private containerd: one config for both.
from bench.services import CONTAINERD_CONFIG as CONFIG


class Containerd:
    def __init__(self, base: Path) -> None:
        self.base = base
        self.sock = str(base / "containerd.sock")
        config = base / "config.toml"
        config.write_text(CONFIG.format(root=base / "root", state=base / "state", sock=self.sock,
                                        debug=base / "debug.sock", opt=base / "opt"))
        self.log = base / "containerd.log"
        with open(self.log, "wb") as logf:
            self.proc = subprocess.Popen(["containerd", "--config", str(config)], stdout=logf, stderr=logf,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 20
        while True:
            if os.path.exists(self.sock) and self.ctr("version").returncode == 0:
                return
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"containerd did not start: {self.log.read_text()[-800:]}")
            time.sleep(0.05)

    def ctr(self, *args: str, ns: str = "ctrpytest", check: bool = False) -> subprocess.CompletedProcess:
        r = subprocess.run(["ctr", "--address", self.sock, "--namespace", ns, *args], capture_output=True,
                           text=True, timeout=120)
        if check and r.returncode != 0:
            raise AssertionError(f"ctr {' '.join(args)} failed: {r.stderr}")
        return r

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


@pytest.fixture(scope="session")
def containerd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Containerd]:
    if shutil.which("containerd") is None or shutil.which("ctr") is None:
        pytest.fail("containerd and ctr are needed (the Makefile installs Debian's containerd)")
    # containerd's socket path must stay under the 108-byte limit of sun_path: a short temp dir.
    import tempfile

    base = Path(tempfile.mkdtemp(prefix="ctrpy-ctd-"))
    daemon = Containerd(base)
    try:
        yield daemon
    finally:
        daemon.stop()
        subprocess.run(["umount", "-R", str(base)], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)
