"""`make demo`: a local registry, busybox published to it, `ctrpy pull` with progress, the image listed and run.

Everything lives in a temporary directory and on 127.0.0.1: the registry (Debian's docker-registry, plain
HTTP, on a free port), ctrpy's --root/--state. The busybox image is built from Debian's busybox-static by the
test suite's image builder and published with skopeo. All of it is removed at the end, even on failure.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from support import testimages  # noqa: E402
from support.registry import Registry  # noqa: E402

CTRPY = str(Path(sys.executable).parent / "ctrpy")


def unmount_under(path: Path) -> None:
    """Unmount whatever ctrpy left mounted below `path` (deepest first) before removing it."""
    prefix = str(path).rstrip("/") + "/"
    with open("/proc/self/mounts") as f:
        targets = [line.split()[1] for line in f if line.split()[1].startswith(prefix)]
    for target in sorted(targets, key=len, reverse=True):
        subprocess.run(["umount", "-l", target], check=False, capture_output=True)


DEMO_BRIDGE = "ctrpydemo0"


def step(text: str) -> None:
    print(f"\n==> {text}", flush=True)


def ctrpy(root: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    argv = [CTRPY, "--root", str(root / "root"), "--state", str(root / "state"), *args]
    print("$ ctrpy " + " ".join(args), flush=True)
    result = subprocess.run(argv, env={**os.environ, "CTRPY_CONFIG": str(root / "config.toml")})
    if check and result.returncode != 0:
        raise SystemExit(f"demo: `ctrpy {' '.join(args)}` failed with exit status {result.returncode}")
    return result


def main() -> int:
    if os.geteuid() != 0:
        print("demo: ctrpy needs root (mounts, namespaces); run `sudo make demo`", file=sys.stderr)
        return 1
    base = Path(tempfile.mkdtemp(prefix="ctrpy-demo-"))
    # The demo's own root gets its own bridge and subnet, so it never shares IPAM with a real ctrpy0.
    (base / "config.toml").write_text(f'[network]\nbridge = "{DEMO_BRIDGE}"\nsubnet = "10.4.254.0/24"\n')
    registry = None
    try:
        step("starting a local registry (docker-registry on 127.0.0.1, plain HTTP)")
        registry = Registry(base / "registry")
        print(f"registry listening on {registry.url}")

        step("building busybox from Debian's busybox-static and publishing it with skopeo")
        layout = base / "busybox-layout"
        desc = testimages.build_layout(layout, [testimages.busybox_layer()])
        ref = registry.push(layout, "library/busybox")
        print(f"published {ref} ({desc['digest']})")

        step("pulling it with ctrpy")
        start = time.monotonic()
        ctrpy(base, "pull", ref)
        print(f"pull took {time.monotonic() - start:.2f}s")

        step("the image in ctrpy's store")
        ctrpy(base, "images", "ls")
        ctrpy(base, "images", "check")

        step("running it")
        ctrpy(base, "run", "--rm", "--name", "demo", ref, "sh", "-c",
              "echo hello from busybox; ip -4 -o addr show dev eth0")
        print("\ndemo: done")
        return 0
    finally:
        if registry is not None:
            registry.stop()
        unmount_under(base)
        subprocess.run(["ip", "link", "del", DEMO_BRIDGE], check=False, capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
