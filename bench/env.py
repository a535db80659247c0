"""The benchmark environment: private containerd, local registry, published images, ctrpy roots, bare bundles.

Every ctrpy invocation gets its own --root/--state under the harness's temp dir and a config file that moves
ctrpy's cgroup parent and bridge off the defaults, so a benchmark never meets the test suite's containers.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import tarfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bench.cleanup import Cleanup, log, unmount_under
from bench.images import Images
from bench.services import NAMESPACE, PULL_NAMESPACE, Containerd, Registry
from bench.stats import Unavailable, one_line, run_checked

REPO = Path(__file__).resolve().parent.parent
CTRPY_CGROUP_PARENT = "ctrpybench-ctrpy"
BARE_CGROUP = "ctrpybench-bare"
CTRPY_CONFIG = f"""version = 1

[cgroup]
parent = "{CTRPY_CGROUP_PARENT}"

[network]
bridge = "ctrpyb0"  # BENCH_BRIDGE
subnet = "10.254.77.0/24"
"""


class Env:
    def __init__(self, cleanup: Cleanup, *, with_debian: bool = True) -> None:
        self.cleanup = cleanup
        self.work = cleanup.tempdir("ctrpy-bench-")
        cleanup.push("remove benchmark cgroups", remove_bench_cgroups)
        cleanup.push("remove the benchmark bridge", remove_bench_bridge)
        self.registry = Registry(cleanup, self.work)
        self.containerd = Containerd(cleanup, self.work)
        self.images = Images(self.registry.host, with_debian=with_debian)
        self.ctrpy_bin = str(REPO / ".venv" / "bin" / "ctrpy")
        self.python = str(REPO / ".venv" / "bin" / "python")
        (self.work / "ctrpy-config.toml").write_text(CTRPY_CONFIG)
        self.env = dict(os.environ)
        self.env["CTRPY_CONFIG"] = str(self.work / "ctrpy-config.toml")
        self.env.pop("CTRPY_NAMESPACE", None)
        self.env.pop("CTRPY_ROOT", None)
        self.env.pop("CTRPY_STATE", None)
        self._roots = 0
        self._live_roots: list[Path] = []
        cleanup.push("drop ctrpy roots", lambda: [self.drop_root(r) for r in list(self._live_roots)])
        self.bundle = self._bundle()

    # ---- ctrpy

    def new_root(self, name: str) -> tuple[Path, Path]:
        """A fresh ctrpy root and state dir (removed, mounts included, by `drop_root` or at exit)."""
        self._roots += 1
        base = self.work / f"ctrpy-{name}-{self._roots}"
        (base / "root").mkdir(parents=True)
        (base / "state").mkdir()
        self._live_roots.append(base / "root")
        return base / "root", base / "state"

    def drop_root(self, root: Path) -> None:
        base = root.parent
        if root in self._live_roots:
            self._live_roots.remove(root)
        _drop_root_network(root)
        unmount_under(base)
        shutil.rmtree(base, ignore_errors=True)

    def ctrpy(self, root: Path, state: Path, *args: str) -> list[str]:
        return [self.ctrpy_bin, "--root", str(root), "--state", str(state), *args]

    def ctrpy_pull(self, root: Path, state: Path, ref: str) -> list[str]:
        return self.ctrpy(root, state, "pull", "--plain-http", ref)

    def ctr(self, *args: str, ns: str = NAMESPACE) -> list[str]:
        return self.containerd.ctr(*args, ns=ns)

    def ctr_run(self, *args: str) -> list[str]:
        """`ctr run` with its FIFOs and runc state in our temp dir (ctr's defaults are under /run/containerd)."""
        return self.ctr("run", "--fifo-dir", str(self.containerd.dir / "fifo"),
                        "--runc-root", str(self.containerd.dir / "runc"), *args)

    def ctr_pull(self, ref: str, ns: str = PULL_NAMESPACE) -> list[str]:
        return self.ctr("images", "pull", "--plain-http", ref, ns=ns)

    def ctr_rm_image_if_present(self, ref: str, ns: str = PULL_NAMESPACE) -> None:
        """A measure's prepare step: start from a containerd namespace without `ref`."""
        have = subprocess.run(self.ctr("images", "ls", "-q", ns=ns), capture_output=True, text=True).stdout.split()
        if ref in have:
            self.ctr_rm_image(ref, ns=ns)

    def ctr_rm_image(self, ref: str, ns: str = PULL_NAMESPACE) -> None:
        """Remove an image and let containerd's GC drop its content and snapshots before returning (checked:
        the pull namespace holds nothing else)."""
        run_checked(self.ctr("images", "rm", "--sync", ref, ns=ns), what="ctr images rm")
        for attempt in range(4):
            snaps = [ln.split() for ln in
                     run_checked(self.ctr("snapshots", "ls", ns=ns), what="ctr snapshots ls").stdout.strip().splitlines()[1:]]
            content = run_checked(self.ctr("content", "ls", "-q", ns=ns), what="ctr content ls").stdout.split()
            if not snaps and not content:
                return
            # Seen after concurrent pulls: a lease or an unpack that lost a race still holds something. Drop
            # leases (GC runs with --sync), then delete what is left by hand, children before parents.
            for lease in run_checked(self.ctr("leases", "ls", "-q", ns=ns), what="ctr leases ls").stdout.split():
                subprocess.run(self.ctr("leases", "rm", "--sync", lease, ns=ns), capture_output=True)
            if attempt >= 1:
                parents = {s[1] for s in snaps if len(s) > 2}
                for s in snaps:
                    if s[0] not in parents:
                        subprocess.run(self.ctr("snapshots", "rm", s[0], ns=ns), capture_output=True)
                if content and not snaps:
                    subprocess.run(self.ctr("content", "rm", *content, ns=ns), capture_output=True)
            time.sleep(0.3)
        raise Unavailable(f"containerd kept {len(snaps)} snapshots and {len(content)} blobs after images rm")

    # ---- bare runtimes

    def _bundle(self) -> Path:
        """An OCI bundle of the busybox image for bare `runc run` / `crun run` (config from `runc spec`)."""
        bundle = self.work / "bundle"
        rootfs = bundle / "rootfs"
        rootfs.mkdir(parents=True)
        from bench.images import busybox_layer

        with tarfile.open(fileobj=io.BytesIO(busybox_layer())) as tar:
            tar.extractall(rootfs, numeric_owner=True)
        subprocess.run(["runc", "spec"], cwd=bundle, check=True, capture_output=True)
        config = json.loads((bundle / "config.json").read_text())
        config["process"]["terminal"] = False
        config["process"]["args"] = ["true"]
        config["linux"]["cgroupsPath"] = f"/{BARE_CGROUP}/run"
        (bundle / "config.json").write_text(json.dumps(config, indent=1))
        for name in ("runc", "crun"):
            (self.work / f"{name}-root").mkdir()
        return bundle

    def bare(self, runtime: str, cid: str) -> list[str]:
        return [runtime, "--root", str(self.work / f"{runtime}-root"), "run", "--bundle", str(self.bundle), cid]


def remove_bench_cgroups() -> None:
    """rmdir the cgroups this harness's containers lived in (ours only: named ctrpybench*), deepest first."""
    base = Path("/sys/fs/cgroup")
    for hierarchy in list(base.iterdir()) + [base / "unified"]:
        for top in hierarchy.glob("ctrpybench*"):
            for dirpath, _, _ in sorted(os.walk(top), key=lambda t: len(t[0]), reverse=True):
                try:
                    os.rmdir(dirpath)
                except OSError:
                    pass


BENCH_BRIDGE = "ctrpyb0"


def _drop_root_network(root: Path) -> None:
    """Delete the nft table ctrpy keeps per root (named from the root's path, so it is ours)."""
    try:
        from ctrpy.runtime.network.nft import table_name
    except Exception:
        return
    table = table_name(str(Path(root).resolve()))
    subprocess.run(["nft", "delete", "table", "ip", table], capture_output=True)


def remove_bench_bridge() -> None:
    """The bridge of the benchmark's ctrpy config (`ctrpyb0`, not ctrpy's default) goes at exit."""
    if Path(f"/sys/class/net/{BENCH_BRIDGE}").exists():
        subprocess.run(["ip", "link", "del", BENCH_BRIDGE], capture_output=True)


def _remove_empty_cgroups(top: Path) -> list[str]:
    """rmdir every cgroup below `top` that holds no process, deepest first; return those that do."""
    busy = []
    for dirpath in sorted((d for d, _, _ in os.walk(top) if d != str(top)), key=len, reverse=True):
        try:
            if Path(dirpath, "cgroup.procs").read_text().strip():
                busy.append(dirpath)
                continue
            os.rmdir(dirpath)
        except OSError:
            pass
    return busy


def cgroup_mode() -> str:
    unified = Path("/sys/fs/cgroup/unified/cgroup.controllers")
    if Path("/sys/fs/cgroup/cgroup.controllers").exists():
        return "v2 (unified)"
    if unified.exists():
        return f"hybrid (v1 controllers; cgroup2 at /sys/fs/cgroup/unified holds: {unified.read_text().strip() or 'none'})"
    return "v1"


@contextmanager
def hugetlb_on_v1(cleanup: Cleanup) -> Iterator[str]:
    """Move the hugetlb controller from cgroup2 to a v1 hierarchy so that crun 1.8 accepts this hybrid host.

    Only for the duration of the block (../shared/MACHINE.md): the undo unmounts once our cgroups are gone and
    waits until the controller is listed in /sys/fs/cgroup/unified/cgroup.controllers again.
    """
    controllers = Path("/sys/fs/cgroup/unified/cgroup.controllers")
    if not controllers.exists() or "hugetlb" not in controllers.read_text().split():
        yield "hugetlb not on cgroup2 here: nothing to move"
        return
    point = Path("/sys/fs/cgroup/hugetlb")
    created = not point.exists()
    point.mkdir(exist_ok=True)
    result = subprocess.run(["mount", "-t", "cgroup", "-o", "hugetlb", "cgroup", str(point)],
                            capture_output=True, text=True)
    if result.returncode != 0:
        if created:
            point.rmdir()
        raise Unavailable(f"cannot mount hugetlb as cgroup v1: {one_line(result.stderr)}")

    def undo() -> None:
        # The kernel frees an unmounted v1 hierarchy only if it has no child cgroup at unmount time (removed
        # ones linger a moment while dying). Other ctrpy processes on this machine (the test suite) create
        # cgroups in every mounted v1 hierarchy, so this one while it is mounted, and may leave them there.
        # Those hold no process and exist only because of our mount: remove every empty one, deepest first,
        # unmount, and repeat (mounting the same hierarchy again) until the controller is back on cgroup2.
        give_up = time.monotonic() + 60
        while True:
            if not os.path.ismount(point):
                subprocess.run(["mount", "-t", "cgroup", "-o", "hugetlb", "cgroup", str(point)], capture_output=True)
            busy = _remove_empty_cgroups(point)
            subprocess.run(["umount", str(point)], capture_output=True)
            back = time.monotonic() + 1
            while time.monotonic() < back and "hugetlb" not in controllers.read_text().split():
                time.sleep(0.05)
            if "hugetlb" in controllers.read_text().split():
                break
            if time.monotonic() > give_up:
                log(f"bench: warning: hugetlb has not returned to cgroup2: cgroups with processes: {busy}; "
                    f"repeat by hand: mount -t cgroup -o hugetlb cgroup {point}, rmdir them, umount {point}")
                break
            time.sleep(0.3)
        if created:
            try:
                point.rmdir()
            except OSError:
                pass

    cleanup.push("return hugetlb to cgroup2", undo)
    try:
        yield "hugetlb moved to a v1 hierarchy for the crun sides"
    finally:
        cleanup.run_now(undo)

