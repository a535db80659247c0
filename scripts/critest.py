"""`make critest`: run cri-tools' critest v1.26.1 against `ctrpy serve`, offline, serially.

Starts a local registry holding the stand-in images of ../shared/cri-tools (pushed with its
push-to-registry.sh), mirrors registry.k8s.io and gcr.io to it with hosts.toml files, starts `ctrpy serve`
on a temporary socket with its own root and state, runs critest, and stops everything it started by PID.
Exits 0 with a clear message (a skip) when the cri-tools binaries are not there.

    make critest                                   every spec
    make critest CRITEST_ARGS="--ginkgo.focus=Streaming"
    CTRPY_CRI_RUNTIME=runc make critest            containers through runc instead of the built-in runtime
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from support import crienv  # noqa: E402


def _shm_ids() -> set[str]:
    out = subprocess.run(["ipcs", "-m"], capture_output=True, text=True).stdout.splitlines()
    return {line.split()[1] for line in out if line[:2] == "0x"}


def main(argv: list[str]) -> int:
    missing = crienv.tools_missing()
    if missing:
        print(f"critest: SKIPPED: {missing}")
        return 0
    if os.geteuid() != 0:
        print("critest: SKIPPED: critest runs pods and needs root")
        return 0
    base = Path(tempfile.mkdtemp(prefix="ctrpy-critest-"))
    shm_before = _shm_ids()
    registry = server = None
    try:
        print(f"critest: pushing the stand-in images to a local registry (work dir {base})", flush=True)
        registry = crienv.start_registry(base / "registry")
        config = crienv.write_config(base, registry.host, runtime=os.environ.get("CTRPY_CRI_RUNTIME", ""))
        for name in ("root", "state"):
            (base / name).mkdir()
        server = crienv.Server(base / "root", base / "state", config, base / "cri.sock")
        server.start()
        cmd = [str(crienv.CRITEST), "--runtime-endpoint", server.endpoint, "--image-endpoint", server.endpoint,
               "--ginkgo.no-color", *argv]
        print("critest: " + " ".join(cmd), flush=True)
        started = time.monotonic()
        rc = subprocess.run(cmd, cwd=base).returncode
        print(f"critest: exit {rc} after {time.monotonic() - started:.1f} s (server log: {server.log})")
        return rc
    finally:
        if server is not None:
            server.crictl("rmp", "--force", "--all")  # nothing critest left may outlive the run
            server.stop()
        if registry is not None:
            registry.stop()
        subprocess.run(["sh", "-c", f"grep -o ' {base}[^ ]*' /proc/mounts | sort -r | xargs -r -n1 umount -l"],
                       check=False)
        # Only the logs stay (serve.log, registry log); the stores and images go.
        import shutil

        for name in ("root", "state", "registry", "certs.d"):
            shutil.rmtree(base / name, ignore_errors=True)
        # critest's HostIpc specs run `ipcmk -M` on the host and leave the segments behind.
        for shmid in _shm_ids() - shm_before:
            subprocess.run(["ipcrm", "-m", shmid], check=False, capture_output=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
