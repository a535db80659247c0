"""A CRI environment for tests and `make critest`: a local registry holding critest's stand-in images
(../shared/cri-tools), hosts.toml mirrors routing registry.k8s.io and gcr.io to it (as a cluster operator
would), a config.toml, and a `ctrpy serve` process on a private socket with its own root and state.

Everything runs on 127.0.0.1; every process started here is stopped by its PID.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from support.registry import Registry

REPO = Path(__file__).resolve().parents[2]


def _find_tools() -> Path:
    """$CTRPY_CRI_TOOLS, else shared/cri-tools beside the checkout (CI) or beside its worktree parent."""
    if os.environ.get("CTRPY_CRI_TOOLS"):
        return Path(os.environ["CTRPY_CRI_TOOLS"])
    for base in (REPO.parent, REPO.parent.parent):
        if (base / "shared" / "cri-tools").is_dir():
            return base / "shared" / "cri-tools"
    return REPO.parent / "shared" / "cri-tools"


CRI_TOOLS = _find_tools()
CRICTL = CRI_TOOLS / "bin" / "crictl"
CRITEST = CRI_TOOLS / "bin" / "critest"
PUSH = CRI_TOOLS / "images" / "push-to-registry.sh"
ARCHIVE = CRI_TOOLS / "images" / "critest-images.tar"
BUSYBOX = "registry.k8s.io/e2e-test-images/busybox:1.29-2"
MIRRORED = ("registry.k8s.io", "gcr.io")


def tools_missing() -> str:
    """Why the CRI tools cannot be used here, or "" when they can."""
    for path in (CRICTL, CRITEST, PUSH):
        if not os.access(path, os.X_OK) and not (path == PUSH and path.exists()):
            return f"{path} not found (the offline cri-tools kit, see its README)"
    if shutil.which("skopeo") is None:
        return "skopeo not installed"
    return ""


def start_registry(base: Path) -> Registry:
    """A registry holding every stand-in image (pushed once; ~10 s)."""
    reg = Registry(base)
    subprocess.run(["sh", str(PUSH), reg.host], check=True, capture_output=True, text=True,
                   env={**os.environ, "NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1"})
    return reg


def push_images(registry_host: str, refs: list[str]) -> None:
    """Copy some stand-ins (not all 20) to the registry under the mirror's layout."""
    for ref in refs:
        path = ref.split("/", 1)[1]
        subprocess.run(["skopeo", "copy", "--quiet", "--dest-tls-verify=false", f"oci-archive:{ARCHIVE}:{ref}",
                        f"docker://{registry_host}/{path}"], check=True, capture_output=True, text=True,
                       env={**os.environ, "NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1"})


def write_config(base: Path, registry_host: str, *, runtime: str = "", cni_conf_dir: str = "/nonexistent") -> Path:
    """config.toml + certs.d/<host>/hosts.toml mirroring registry.k8s.io and gcr.io to `registry_host`."""
    certs = base / "certs.d"
    for host in MIRRORED:
        (certs / host).mkdir(parents=True, exist_ok=True)
        (certs / host / "hosts.toml").write_text(
            f'server = "https://{host}"\n[host."http://{registry_host}"]\n  capabilities = ["pull", "resolve"]\n')
    config = base / "config.toml"
    lines = ["version = 1", "[registry]", f'config_path = "{certs}"', "[cri]", f'cni_conf_dir = "{cni_conf_dir}"']
    if runtime:
        lines.append(f'runtime = "{runtime}"')
    config.write_text("\n".join(lines) + "\n")
    return config


class Server:
    """`ctrpy serve` as a subprocess; restartable, stopped by PID."""

    def __init__(self, root: Path, state: Path, config: Path, socket: Path) -> None:
        self.root, self.state, self.config, self.socket = root, state, config, socket
        self.endpoint = f"unix://{socket}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = state.parent / "serve.log"

    def start(self, timeout: float = 30) -> None:
        exe = Path(sys.executable).parent / "ctrpy"
        argv = [str(exe) if exe.exists() else "ctrpy", "--root", str(self.root), "--state", str(self.state),
                "--config", str(self.config), "serve", "--address", self.endpoint]
        logf = open(self.log, "ab")
        self.proc = subprocess.Popen(argv, stdout=logf, stderr=subprocess.STDOUT, start_new_session=True)
        logf.close()
        deadline = time.monotonic() + timeout
        while not self.socket.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"ctrpy serve did not start: {self.log.read_text()[-3000:]}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def crictl(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(CRICTL), "--runtime-endpoint", self.endpoint, "--image-endpoint", self.endpoint,
                               "--timeout", "30s", *args], capture_output=True, text=True, timeout=timeout)
