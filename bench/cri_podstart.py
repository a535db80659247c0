"""Pod start through the CRI: RunPodSandbox + CreateContainer + StartContainer of busybox, `ctrpy serve`
against containerd 1.6's CRI plugin, both driven by the same gRPC client (ctrpy/cri/proto) over their sockets.

Both sides get the same stand-in images (../shared/cri-tools) from one local registry through hosts.toml
mirrors for registry.k8s.io, pulled once before timing; both put the pod on a bridge (ctrpy's own bridge;
a private CNI bridge conflist for containerd, which also needs `restrict_oom_score_adj = true` here, as the
VM lacks CAP_SYS_RESOURCE) and run containers with runc for containerd and ctrpy's default runtime for ctrpy.
Rounds are interleaved (bench/stats.py); each pod is stopped and removed between rounds, untimed.

    .venv/bin/python -m bench.cri_podstart [--reps N] [--ctrpy-runtime runc]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

from bench.cleanup import Cleanup, log
from bench.services import CONTAINERD_CONFIG, Containerd, Registry
from bench.stats import Comparison, Side, Unavailable, interleave, render

REPO = Path(__file__).resolve().parents[1]
BUSYBOX = "registry.k8s.io/e2e-test-images/busybox:1.29-2"
PAUSE = "registry.k8s.io/pause:3.6"

# The benchmarks' containerd configuration (bench/services.py) with the CRI plugin enabled and set up.
CRI_CONTAINERD_CONFIG = CONTAINERD_CONFIG.replace('"io.containerd.grpc.v1.cri", ', "") + """\
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{pause}"
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{cni}"
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "{certs}"
"""

CNI_CONFLIST = """{"cniVersion": "0.4.0", "name": "ctrpybench-cri", "plugins": [
  {"type": "bridge", "bridge": "cbench0", "isGateway": true, "ipMasq": false,
    "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.77.0.0/24"}]]}},
  {"type": "portmap", "capabilities": {"portMappings": true}}]}
"""


NETNS_DIR = "/run/netns"


def _remove_new_netns(before: set[str]) -> None:
    if not os.path.isdir(NETNS_DIR):
        return
    for name in sorted(set(os.listdir(NETNS_DIR)) - before):
        if name.startswith("cni-"):
            subprocess.run(["ip", "netns", "delete", name], capture_output=True)


class CRIContainerd(Containerd):
    """A private containerd with its CRI plugin on, CNI from a private conf dir."""

    def __init__(self, cleanup: Cleanup, workdir: Path, certs: Path) -> None:
        import bench.services as services

        # containerd's CRI makes each pod's network namespace as /run/netns/cni-<uuid>; a run stopped half way
        # (or a pod it failed to finish) leaves them: remove the ones that appeared while we ran, once it is gone.
        before = set(os.listdir(NETNS_DIR)) if os.path.isdir(NETNS_DIR) else set()
        cleanup.push("remove containerd's leftover pod network namespaces", lambda: _remove_new_netns(before))
        cni = workdir / "cni"
        cni.mkdir()
        (cni / "10-bench.conflist").write_text(CNI_CONFLIST)
        saved = services.CONTAINERD_CONFIG
        d = workdir / "containerd"
        services.CONTAINERD_CONFIG = CRI_CONTAINERD_CONFIG.replace("{pause}", PAUSE).replace(
            "{cni}", str(cni)).replace("{certs}", str(certs))
        try:
            super().__init__(cleanup, workdir)
        finally:
            services.CONTAINERD_CONFIG = saved
        self.endpoint = f"unix://{d / 'containerd.sock'}"
        cleanup.push("remove the benchmark CNI bridge", lambda: subprocess.run(
            ["ip", "link", "del", "cbench0"], capture_output=True))


class CRIClient:
    def __init__(self, endpoint: str) -> None:
        import grpc

        from ctrpy.cri.proto import api_pb2 as api
        from ctrpy.cri.proto import api_pb2_grpc

        self.api = api
        self.channel = grpc.insecure_channel(endpoint)
        self.rt = api_pb2_grpc.RuntimeServiceStub(self.channel)
        self.img = api_pb2_grpc.ImageServiceStub(self.channel)
        self.pods: list[str] = []

    def pull(self, ref: str) -> None:
        self.img.PullImage(self.api.PullImageRequest(image=self.api.ImageSpec(image=ref)), timeout=300)

    def start_pod(self, workdir: Path) -> float:
        api = self.api
        name = "bench-" + uuid.uuid4().hex[:10]
        cfg = api.PodSandboxConfig(metadata=api.PodSandboxMetadata(name=name, namespace="bench", uid=name),
                                   log_directory=str(workdir / "logs" / name))
        ccfg = api.ContainerConfig(metadata=api.ContainerMetadata(name="c"), image=api.ImageSpec(image=BUSYBOX),
                                   command=["sleep", "3600"], log_path="c.log")
        t0 = time.perf_counter()
        pod = self.rt.RunPodSandbox(api.RunPodSandboxRequest(config=cfg), timeout=120).pod_sandbox_id
        self.pods.append(pod)
        cid = self.rt.CreateContainer(api.CreateContainerRequest(pod_sandbox_id=pod, config=ccfg,
                                                                 sandbox_config=cfg), timeout=120).container_id
        self.rt.StartContainer(api.StartContainerRequest(container_id=cid), timeout=120)
        return time.perf_counter() - t0

    def remove_pods(self) -> None:
        api = self.api
        while self.pods:
            pod = self.pods.pop()
            self.rt.StopPodSandbox(api.StopPodSandboxRequest(pod_sandbox_id=pod), timeout=120)
            self.rt.RemovePodSandbox(api.RemovePodSandboxRequest(pod_sandbox_id=pod), timeout=120)


def pod_start(cleanup: Cleanup, reps: int, ctrpy_runtime: str = "") -> list[Comparison]:
    """The pod start comparison (ms): ctrpy serve vs containerd's CRI."""
    sys.path.insert(0, str(REPO / "tests"))
    from support import crienv

    work = cleanup.tempdir("ctrpy-bench-cri-")
    if not crienv.ARCHIVE.exists():
        raise Unavailable(f"the cri-tools kit (shared/cri-tools) is not there: no {crienv.ARCHIVE}")
    registry = Registry(cleanup, work)
    crienv.push_images(registry.host, [BUSYBOX, PAUSE])
    config = crienv.write_config(work, registry.host, runtime=ctrpy_runtime)
    for name in ("root", "state"):
        (work / name).mkdir()
    server = crienv.Server(work / "root", work / "state", config, work / "ctrpy.sock")
    server.start()
    cleanup.push("stop ctrpy serve", server.stop)
    cleanup.push("unmount what ctrpy left", lambda: subprocess.run(
        ["sh", "-c", f"grep -o ' {work}[^ ]*' /proc/mounts | sort -r | xargs -r -n1 umount -l"], check=False))
    containerd = CRIContainerd(cleanup, work, work / "certs.d")
    sides = []
    for name, endpoint in (("ctrpy serve", server.endpoint), ("containerd 1.6 CRI", containerd.endpoint)):
        client = CRIClient(endpoint)
        cleanup.push(f"remove {name}'s pods", client.remove_pods)

        def prepare(client: CRIClient = client, name: str = name) -> None:
            client.pull(BUSYBOX)
            if "containerd" in name:
                client.pull(PAUSE)
            client.start_pod(work)  # warm-up round, untimed
            client.remove_pods()

        def measure(i: int, client: CRIClient = client) -> float:
            return client.start_pod(work)

        sides.append(Side(name, measure, prepare=prepare, between=client.remove_pods))
    interleave(sides, reps, label="CRI pod start")
    runtime = ctrpy_runtime or "built-in runtime"
    return [Comparison(
        "CRI pod start: RunPodSandbox + CreateContainer + StartContainer (busybox)", "ms", sides,
        ratios=[("ctrpy serve", "containerd 1.6 CRI", "<= 0.5x")],
        notes=[f"ctrpy serve runs containers with its {runtime}; containerd 1.6.20 with runc 1.1.5 and "
               "restrict_oom_score_adj = true; both pull through the same hosts.toml mirror beforehand.",
               "Interleaved rounds on a machine shared with other work; each pod is removed between rounds."],
        command="python -m bench.cri_podstart (measure 7 of bench/run.py)", key="CRI pod start")]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=10)
    parser.add_argument("--ctrpy-runtime", default="")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("cri_podstart: needs root")
        return 1
    with Cleanup() as cleanup:
        try:
            comps = pod_start(cleanup, args.reps, args.ctrpy_runtime)
        except Unavailable as exc:
            print(f"cri_podstart: unavailable: {exc}")
            return 0
        for comp in comps:
            print("\n".join(render(comp)))
    log("bench: done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
