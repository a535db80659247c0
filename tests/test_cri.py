"""`ctrpy serve`, driven as kubelet would: the generated gRPC client (ctrpy/cri/proto) and crictl.

One server per module on a private socket, root and state; images come from a local registry through a
hosts.toml mirror for registry.k8s.io. Every pod a test makes is removed by the test, and the module checks
at the end that nothing is left: no records, task directories, mounts or pause processes.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Iterator

import grpc
import pytest

from ctrpy.cri.proto import api_pb2 as api
from ctrpy.cri.proto import api_pb2_grpc
from support import crienv

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the CRI server runs pods: needs root")
BUSYBOX = crienv.BUSYBOX


class CRI:
    """The server under test plus clients for it."""

    def __init__(self, server: crienv.Server) -> None:
        self.server = server
        self.connect()

    def connect(self) -> None:
        self.channel = grpc.insecure_channel(self.server.endpoint)
        self.rt = api_pb2_grpc.RuntimeServiceStub(self.channel)
        self.img = api_pb2_grpc.ImageServiceStub(self.channel)

    def restart(self) -> None:
        self.channel.close()
        self.server.stop()
        self.server.start()
        self.connect()

    def run_pod(self, name: str = "", **config: Any) -> tuple[str, Any]:
        name = name or "pod-" + uuid.uuid4().hex[:8]
        cfg = api.PodSandboxConfig(metadata=api.PodSandboxMetadata(name=name, namespace="test", uid=name),
                                   log_directory=str(self.server.state.parent / "logs" / name), **config)
        return self.rt.RunPodSandbox(api.RunPodSandboxRequest(config=cfg)).pod_sandbox_id, cfg

    def run_container(self, pod: str, pod_cfg: Any, command: list[str], name: str = "c", start: bool = True,
                      **config: Any) -> str:
        cfg = api.ContainerConfig(metadata=api.ContainerMetadata(name=name), image=api.ImageSpec(image=BUSYBOX),
                                  command=command, log_path=f"{name}.log", **config)
        cid = self.rt.CreateContainer(api.CreateContainerRequest(pod_sandbox_id=pod, config=cfg,
                                                                 sandbox_config=pod_cfg)).container_id
        if start:
            self.rt.StartContainer(api.StartContainerRequest(container_id=cid))
        return cid

    def status(self, cid: str) -> Any:
        return self.rt.ContainerStatus(api.ContainerStatusRequest(container_id=cid)).status

    def wait_exited(self, cid: str, timeout: float = 10) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            st = self.status(cid)
            if st.state == api.CONTAINER_EXITED or time.monotonic() > deadline:
                return st
            time.sleep(0.05)

    def exec(self, cid: str, *cmd: str, timeout: int = 10) -> Any:
        return self.rt.ExecSync(api.ExecSyncRequest(container_id=cid, cmd=list(cmd), timeout=timeout))

    def remove_pod(self, pod: str) -> None:
        self.rt.StopPodSandbox(api.StopPodSandboxRequest(pod_sandbox_id=pod))
        self.rt.RemovePodSandbox(api.RemovePodSandboxRequest(pod_sandbox_id=pod))


def cli(cri: CRI, *args: str) -> subprocess.CompletedProcess[str]:
    """The ctrpy CLI on the server's root and state, namespace k8s.io."""
    exe = os.path.join(os.path.dirname(os.path.abspath(sys.executable)), "ctrpy")
    return subprocess.run([exe, "--root", str(cri.server.root), "--state", str(cri.server.state), "-n", "k8s.io",
                           *args], capture_output=True, text=True, timeout=60)


def _code(exc_info: Any) -> Any:
    return exc_info.value.code()


def _pause_processes() -> set[int]:
    out = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == "pause" and "Z" not in (entry / "stat").read_text().split(")")[1][:3]:
                    out.add(int(entry.name))
            except OSError:
                pass
    return out


@pytest.fixture(scope="module")
def cri(registry: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[CRI]:
    missing = crienv.tools_missing()
    if missing:
        # The kit (../shared/cri-tools or $CTRPY_CRI_TOOLS) is not ours to install: skip where it is absent.
        pytest.skip(f"the CRI test kit is missing: {missing}")
    base = tmp_path_factory.mktemp("cri")
    crienv.push_images(registry.host, [BUSYBOX])
    config = crienv.write_config(base, registry.host)
    (base / "root").mkdir()
    (base / "state").mkdir()
    before = _pause_processes()
    server = crienv.Server(base / "root", base / "state", config, base / "cri.sock")
    server.start()
    client = CRI(server)
    try:
        client.img.PullImage(api.PullImageRequest(image=api.ImageSpec(image=BUSYBOX)))
        yield client
        leftovers = client.rt.ListPodSandbox(api.ListPodSandboxRequest()).items
        assert not leftovers, "a test left pods behind"
    finally:
        for pod in client.rt.ListPodSandbox(api.ListPodSandboxRequest()).items:
            client.remove_pod(pod.id)
        client.channel.close()
        server.stop()
        from conftest import unmount_all_under

        unmount_all_under(base)
    assert _pause_processes() <= before, "pause processes left running"
    assert not list((base / "state" / "k8s.io").glob("*/")), "task directories left behind"


def test_version_and_status(cri: CRI) -> None:
    v = cri.rt.Version(api.VersionRequest())
    assert (v.runtime_name, v.runtime_api_version) == ("ctrpy", "v1")
    conds = {c.type: c for c in cri.rt.Status(api.StatusRequest()).status.conditions}
    assert conds["RuntimeReady"].status
    # No CNI config in the server's conf dir: pods use ctrpy's bridge, and the condition says why.
    assert conds["NetworkReady"].status and conds["NetworkReady"].reason == "NoCNIConfigUsingBridge"
    assert "no CNI network config" in conds["NetworkReady"].message


def test_images_pull_status_list(cri: CRI) -> None:
    ref = cri.img.PullImage(api.PullImageRequest(image=api.ImageSpec(image=BUSYBOX))).image_ref
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", ref)
    by_tag = cri.img.ImageStatus(api.ImageStatusRequest(image=api.ImageSpec(image=BUSYBOX), verbose=True))
    assert by_tag.image.id == ref and BUSYBOX in by_tag.image.repo_tags
    assert by_tag.image.repo_digests[0].startswith("registry.k8s.io/e2e-test-images/busybox@sha256:")
    assert by_tag.image.uid.value == 0 and by_tag.image.size > 0
    assert json.loads(by_tag.info["info"])["imageSpec"]["config"]["Cmd"] == ["sh"]
    for name in (ref, ref[7:19], by_tag.image.repo_digests[0]):
        assert cri.img.ImageStatus(api.ImageStatusRequest(image=api.ImageSpec(image=name))).image.id == ref
    listed = cri.img.ListImages(api.ListImagesRequest()).images
    assert [i.id for i in listed] == [ref]
    # The CLI sees what the server pulled, in namespace k8s.io.
    assert BUSYBOX in cli(cri, "images", "ls", "-q").stdout.split()
    missing = cri.img.ImageStatus(api.ImageStatusRequest(image=api.ImageSpec(image="registry.k8s.io/nope:1")))
    assert not missing.HasField("image")
    fs = cri.img.ImageFsInfo(api.ImageFsInfoRequest()).image_filesystems[0]
    assert fs.used_bytes.value > 0 and fs.timestamp > 0


def test_pod_and_container_lifecycle(cri: CRI) -> None:
    pod, cfg = cri.run_pod(hostname="podhost", dns_config=api.DNSConfig(servers=["10.9.9.9"], searches=["s.test"]))
    try:
        st = cri.rt.PodSandboxStatus(api.PodSandboxStatusRequest(pod_sandbox_id=pod, verbose=True))
        assert st.status.state == api.SANDBOX_READY and re.fullmatch(r"\d+\.\d+\.\d+\.\d+", st.status.network.ip)
        pause = json.loads(st.info["info"])["pid"]
        assert Path(f"/proc/{pause}/comm").read_text().strip() == "pause"
        cid = cri.run_container(pod, cfg, ["sh", "-c", "echo out; echo err >&2; exec sleep 1000"])
        assert cri.status(cid).state == api.CONTAINER_RUNNING
        r = cri.exec(cid, "sh", "-c", "hostname; cat /etc/resolv.conf; ip -4 addr show eth0")
        assert r.exit_code == 0 and r.stdout.decode().startswith("podhost\n")
        assert "nameserver 10.9.9.9" in r.stdout.decode() and "search s.test" in r.stdout.decode()
        assert st.status.network.ip in r.stdout.decode()
        assert cri.exec(cid, "sh", "-c", "echo bad >&2; exit 7").exit_code == 7
        assert cri.exec(cid, "sh", "-c", "echo bad >&2; exit 7").stderr == b"bad\n"
        log = Path(cri.status(cid).log_path)
        lines = log.read_text().splitlines()
        assert [line.split(" ", 1)[1] for line in lines] == ["stdout F out", "stderr F err"]
        assert all(re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z ", line) for line in lines)
        cri.rt.StopContainer(api.StopContainerRequest(container_id=cid, timeout=5))
        done = cri.status(cid)
        assert done.state == api.CONTAINER_EXITED and done.exit_code == 143 and done.reason == "Error"
        assert done.finished_at >= done.started_at > done.created_at > 0
        cri.rt.RemoveContainer(api.RemoveContainerRequest(container_id=cid))
        assert not cri.rt.ListContainers(api.ListContainersRequest()).containers
        cri.rt.StopPodSandbox(api.StopPodSandboxRequest(pod_sandbox_id=pod))
        st = cri.rt.PodSandboxStatus(api.PodSandboxStatusRequest(pod_sandbox_id=pod))
        assert st.status.state == api.SANDBOX_NOTREADY
        assert pause not in _pause_processes()
    finally:
        cri.remove_pod(pod)
    with pytest.raises(grpc.RpcError) as exc:
        cri.rt.PodSandboxStatus(api.PodSandboxStatusRequest(pod_sandbox_id=pod))
    assert _code(exc) == grpc.StatusCode.NOT_FOUND


def test_exit_codes_exec_timeout_and_security_context(cri: CRI) -> None:
    pod, cfg = cri.run_pod()
    try:
        ok = cri.run_container(pod, cfg, ["true"], name="ok")
        bad = cri.run_container(pod, cfg, ["sh", "-c", "exit 3"], name="bad")
        hog = cri.run_container(pod, cfg, ["sh", "-c", "x=$(head -c 100000000 /dev/zero | tr '\\0' a)"], name="hog",
                                linux=api.LinuxContainerConfig(resources=api.LinuxContainerResources(
                                    memory_limit_in_bytes=16 << 20)))
        assert (cri.wait_exited(ok).exit_code, cri.status(ok).reason) == (0, "Completed")
        assert (cri.wait_exited(bad).exit_code, cri.status(bad).reason) == (3, "Error")
        assert (cri.wait_exited(hog, 20).exit_code, cri.status(hog).reason) == (137, "OOMKilled")
        sc = api.LinuxContainerSecurityContext(run_as_user=api.Int64Value(value=1234), supplemental_groups=[555],
                                               readonly_rootfs=True)
        user = cri.run_container(pod, cfg, ["sleep", "1000"], name="user",
                                 linux=api.LinuxContainerConfig(security_context=sc))
        assert cri.exec(user, "id").stdout.decode().startswith("uid=1234 gid=0")
        assert "555" in cri.exec(user, "id", "-G").stdout.decode().split()
        assert cri.exec(user, "touch", "/x").exit_code != 0  # read-only rootfs
        started = time.monotonic()
        with pytest.raises(grpc.RpcError) as exc:
            cri.exec(user, "sleep", "4321", timeout=1)
        assert _code(exc) == grpc.StatusCode.DEADLINE_EXCEEDED and time.monotonic() - started < 5
        assert "4321" not in cri.exec(user, "ps", "-o", "args").stdout.decode()
        listed = cri.rt.ListContainers(api.ListContainersRequest(filter=api.ContainerFilter(
            state=api.ContainerStateValue(state=api.CONTAINER_EXITED)))).containers
        assert sorted(c.id for c in listed) == sorted([ok, bad, hog])
        # The id and pod-id filters take prefixes, as crictl passes them; the stats listing filters alike.
        by_pod = cri.rt.ListContainers(api.ListContainersRequest(filter=api.ContainerFilter(
            pod_sandbox_id=pod[:8]))).containers
        assert sorted(c.id for c in by_pod) == sorted([ok, bad, hog, user])
        assert [c.id for c in cri.rt.ListContainers(api.ListContainersRequest(filter=api.ContainerFilter(
            id=user[:10]))).containers] == [user]
        assert not cri.rt.ListContainers(api.ListContainersRequest(filter=api.ContainerFilter(
            pod_sandbox_id="0" * 64))).containers
        assert [s.attributes.id for s in cri.rt.ListContainerStats(api.ListContainerStatsRequest(
            filter=api.ContainerStatsFilter(id=user[:10], pod_sandbox_id=pod))).stats] == [user]
        assert [s.attributes.id for s in cri.rt.ListPodSandboxStats(api.ListPodSandboxStatsRequest(
            filter=api.PodSandboxStatsFilter(id=pod[:10]))).stats] == [pod]
        assert [p.id for p in cri.rt.ListPodSandbox(api.ListPodSandboxRequest(filter=api.PodSandboxFilter(
            id=pod[:10]))).items] == [pod]
        stats = cri.rt.ContainerStats(api.ContainerStatsRequest(container_id=user)).stats
        assert stats.attributes.id == user and stats.memory.usage_bytes.value > 0
        cri.rt.UpdateContainerResources(api.UpdateContainerResourcesRequest(
            container_id=user, linux=api.LinuxContainerResources(memory_limit_in_bytes=96 << 20)))
        assert cri.status(user).resources.linux.memory_limit_in_bytes == 96 << 20
        spec = json.loads(cri.rt.ContainerStatus(api.ContainerStatusRequest(
            container_id=user, verbose=True)).info["info"])["runtimeSpec"]
        cg = spec["linux"]["cgroupsPath"].strip("/")
        limit = Path(f"/sys/fs/cgroup/memory/{cg}/memory.limit_in_bytes")
        if not limit.exists():  # a cgroup v2 host
            limit = Path(f"/sys/fs/cgroup/{cg}/memory.max")
        assert int(limit.read_text()) == 96 << 20
    finally:
        cri.remove_pod(pod)


def test_crictl_logs_follow_and_reopen(cri: CRI) -> None:
    pod, cfg = cri.run_pod()
    try:
        cid = cri.run_container(pod, cfg, ["sh", "-c", "for i in 1 2 3; do echo line$i; sleep 0.3; done"])
        r = cri.server.crictl("logs", "-f", cid, timeout=30)
        assert r.returncode == 0 and r.stdout.split() == ["line1", "line2", "line3"]
        long_running = cri.run_container(pod, cfg, ["sh", "-c", "trap 'echo after' USR1; echo before; "
                                                   "while true; do sleep 0.1; done"], name="rot")
        log = Path(cri.status(long_running).log_path)
        deadline = time.monotonic() + 5
        while "before" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.05)
        log.rename(log.with_suffix(".1"))
        cri.rt.ReopenContainerLog(api.ReopenContainerLogRequest(container_id=long_running))
        pid = json.loads(cri.rt.ContainerStatus(api.ContainerStatusRequest(
            container_id=long_running, verbose=True)).info["info"])["pid"]
        os.kill(pid, signal.SIGUSR1)
        deadline = time.monotonic() + 5
        while not (log.exists() and "after" in log.read_text()) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert log.read_text().endswith("stdout F after\n")
        assert "after" not in log.with_suffix(".1").read_text()
        cri.rt.StopContainer(api.StopContainerRequest(container_id=long_running, timeout=0))
        with pytest.raises(grpc.RpcError) as exc:
            cri.rt.ReopenContainerLog(api.ReopenContainerLogRequest(container_id=long_running))
        assert _code(exc) == grpc.StatusCode.FAILED_PRECONDITION
    finally:
        cri.remove_pod(pod)


def test_cri_log_format_long_and_unterminated_lines(cri: CRI) -> None:
    """The supervisor's CRI log: a line longer than 16384 bytes becomes partial (P) records, a line written in
    pieces stays one record (the unfinished line is kept per stream), and an unterminated last line is
    written as a full record at the end; crictl reassembles the output."""
    pod, cfg = cri.run_pod()
    try:
        cid = cri.run_container(pod, cfg, ["sh", "-c", "printf half >&2; head -c 40000 /dev/zero | tr '\\0' x; "
                                           "sleep 0.3; echo; echo rest >&2; printf tail"])
        assert cri.wait_exited(cid).exit_code == 0
        log = Path(cri.status(cid).log_path)
        deadline = time.monotonic() + 5
        while not log.read_text().endswith("tail\n") and time.monotonic() < deadline:
            time.sleep(0.05)
        records = [line.split(" ", 3) for line in log.read_text().split("\n")[:-1]]
        assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z", r[0]) for r in records)
        out = [(tag, text) for _, stream, tag, text in records if stream == "stdout"]
        err = [(tag, text) for _, stream, tag, text in records if stream == "stderr"]
        assert out == [("P", "x" * 16384), ("P", "x" * 16384), ("F", "x" * 7232), ("F", "tail")]
        assert err == [("F", "halfrest")]
        r = cri.server.crictl("logs", cid, timeout=30)
        assert r.returncode == 0 and r.stdout == "x" * 40000 + "\ntail\n", r.stderr
    finally:
        cri.remove_pod(pod)


def test_server_restart_keeps_pods_running(cri: CRI) -> None:
    pod, cfg = cri.run_pod()
    try:
        cid = cri.run_container(pod, cfg, ["sh", "-c", "echo up; exec sleep 1000"])
        pause = json.loads(cri.rt.PodSandboxStatus(api.PodSandboxStatusRequest(
            pod_sandbox_id=pod, verbose=True)).info["info"])["pid"]
        cri.server.stop()
        assert pause in _pause_processes()
        cri.restart()
        assert cri.rt.PodSandboxStatus(api.PodSandboxStatusRequest(pod_sandbox_id=pod)).status.state == \
            api.SANDBOX_READY
        assert cri.status(cid).state == api.CONTAINER_RUNNING
        assert cri.exec(cid, "echo", "still").stdout == b"still\n"
    finally:
        cri.remove_pod(pod)


def test_bad_requests_get_the_right_code_and_leave_nothing(cri: CRI) -> None:
    unknown = "f" * 64
    for call, req in ((cri.rt.PodSandboxStatus, api.PodSandboxStatusRequest(pod_sandbox_id=unknown)),
                      (cri.rt.ContainerStatus, api.ContainerStatusRequest(container_id=unknown)),
                      (cri.rt.StartContainer, api.StartContainerRequest(container_id=unknown)),
                      (cri.rt.ExecSync, api.ExecSyncRequest(container_id=unknown, cmd=["true"]))):
        with pytest.raises(grpc.RpcError) as exc:
            call(req)
        assert _code(exc) == grpc.StatusCode.NOT_FOUND, call
    # Removing what does not exist is fine (the CRI wants it idempotent).
    cri.rt.RemovePodSandbox(api.RemovePodSandboxRequest(pod_sandbox_id=unknown))
    cri.rt.RemoveContainer(api.RemoveContainerRequest(container_id=unknown))
    with pytest.raises(grpc.RpcError) as exc:
        cri.rt.RunPodSandbox(api.RunPodSandboxRequest(config=api.PodSandboxConfig()))
    assert _code(exc) == grpc.StatusCode.INVALID_ARGUMENT
    pod, cfg = cri.run_pod("dup")
    try:
        with pytest.raises(grpc.RpcError) as exc:
            cri.run_pod("dup")
        assert _code(exc) == grpc.StatusCode.ALREADY_EXISTS
        assert len(cri.rt.ListPodSandbox(api.ListPodSandboxRequest()).items) == 1
        cri.run_container(pod, cfg, ["sleep", "1000"], name="same", start=False)
        with pytest.raises(grpc.RpcError) as exc:
            cri.run_container(pod, cfg, ["sleep", "1000"], name="same", start=False)
        assert _code(exc) == grpc.StatusCode.ALREADY_EXISTS
        bad = [({"image": api.ImageSpec(image="registry.k8s.io/absent:1")}, grpc.StatusCode.NOT_FOUND),
               ({"linux": api.LinuxContainerConfig(security_context=api.LinuxContainerSecurityContext(
                   run_as_group=api.Int64Value(value=5)))}, grpc.StatusCode.INVALID_ARGUMENT),
               ({"linux": api.LinuxContainerConfig(security_context=api.LinuxContainerSecurityContext(
                   privileged=True))}, grpc.StatusCode.INVALID_ARGUMENT)]
        for extra, code in bad:
            cfg_c = api.ContainerConfig(metadata=api.ContainerMetadata(name="x"), image=api.ImageSpec(image=BUSYBOX),
                                        command=["true"])
            for key, value in extra.items():
                getattr(cfg_c, key).CopyFrom(value)
            with pytest.raises(grpc.RpcError) as exc:
                cri.rt.CreateContainer(api.CreateContainerRequest(pod_sandbox_id=pod, config=cfg_c,
                                                                  sandbox_config=cfg))
            assert _code(exc) == code, extra
        assert len(cri.rt.ListContainers(api.ListContainersRequest()).containers) == 1
        only = cri.rt.ListContainers(api.ListContainersRequest()).containers[0].id
        # The failed creates left no rootfs snapshot: the only active one is the container's.
        snaps = cli(cri, "snapshots", "ls").stdout.splitlines()[1:]
        assert [line.split()[0] for line in snaps if "Active" in line or "active" in line] == [only]
        with pytest.raises(grpc.RpcError) as exc:  # created, not started
            cri.rt.Exec(api.ExecRequest(container_id=only, cmd=["true"], stdout=True))
        assert _code(exc) == grpc.StatusCode.FAILED_PRECONDITION
    finally:
        cri.remove_pod(pod)


def test_streaming_exec_attach_and_port_forward_through_crictl(cri: CRI) -> None:
    pod, cfg = cri.run_pod()
    try:
        cid = cri.run_container(pod, cfg, ["sh", "-c", "while true; do echo hello-pf | nc -l -p 8080; done"])
        r = cri.server.crictl("exec", cid, "sh", "-c", "echo out; echo err >&2")
        assert (r.returncode, r.stdout, r.stderr) == (0, "out\n", "err\n")
        r = cri.server.crictl("exec", cid, "sh", "-c", "exit 3")
        assert r.returncode != 0 and "exit code 3" in r.stderr
        r = subprocess.run([str(crienv.CRICTL), "--runtime-endpoint", cri.server.endpoint, "exec", "-i", cid, "sh"],
                           input="echo from-stdin\n", capture_output=True, text=True, timeout=30)
        assert (r.returncode, r.stdout) == (0, "from-stdin\n")
        shell = cri.run_container(pod, cfg, ["sh"], name="shell", stdin=True, stdin_once=True)
        r = subprocess.run([str(crienv.CRICTL), "--runtime-endpoint", cri.server.endpoint, "attach", "-i", shell],
                           input="echo attached\n", capture_output=True, text=True, timeout=30)
        assert (r.returncode, r.stdout) == (0, "attached\n")
        assert cri.wait_exited(shell).exit_code == 0  # end of the attached input closed the shell's stdin
        from support.registry import free_port

        port = free_port()
        fwd = subprocess.Popen([str(crienv.CRICTL), "--runtime-endpoint", cri.server.endpoint, "port-forward", pod,
                                f"{port}:8080"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            assert fwd.stdout is not None and "Forwarding from" in fwd.stdout.readline()
            import socket

            with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
                s.sendall(b"x\n")
                assert s.recv(100) == b"hello-pf\n"
        finally:
            fwd.terminate()
            fwd.wait(10)
    finally:
        cri.remove_pod(pod)


def test_pods_use_the_first_cni_conflist(cri: CRI, tmp_path: Path, registry: Any) -> None:
    """With a conflist in [cri] cni_conf_dir, pods are attached by its plugins (Debian's, /usr/lib/cni)."""
    conf = tmp_path / "net.d"
    conf.mkdir()
    (conf / "10-test.conflist").write_text(json.dumps({
        "cniVersion": "0.4.0", "name": "ctrpy-cri-test", "plugins": [
            {"type": "bridge", "bridge": "ctrpycri0", "isGateway": True, "ipMasq": False,
             "ipam": {"type": "host-local", "dataDir": str(tmp_path / "ipam"),
                      "ranges": [[{"subnet": "10.78.0.0/24"}]]}},
            {"type": "portmap", "capabilities": {"portMappings": True}}]}))
    config = crienv.write_config(tmp_path, registry.host, cni_conf_dir=str(conf))
    server = crienv.Server(cri.server.root, cri.server.state, config, tmp_path / "cni.sock")
    server.start()
    other = CRI(server)
    try:
        conds = {c.type: c for c in other.rt.Status(api.StatusRequest()).status.conditions}
        assert conds["NetworkReady"].status and conds["NetworkReady"].reason == ""
        pod, cfg = other.run_pod()
        try:
            ip = other.rt.PodSandboxStatus(api.PodSandboxStatusRequest(pod_sandbox_id=pod)).status.network.ip
            assert ip.startswith("10.78.0.")
            cid = other.run_container(pod, cfg, ["sleep", "1000"])
            assert f"inet {ip}/24" in other.exec(cid, "ip", "-4", "addr", "show", "eth0").stdout.decode()
        finally:
            other.remove_pod(pod)
        assert not list((tmp_path / "ipam" / "ctrpy-cri-test").glob("10.78.*")), "CNI DEL did not release the IP"
    finally:
        other.channel.close()
        server.stop()
        subprocess.run(["ip", "link", "del", "ctrpycri0"], capture_output=True)


def test_container_events_stream(cri: CRI) -> None:
    import threading

    events = cri.rt.GetContainerEvents(api.GetEventsRequest(), timeout=30)
    seen: list[tuple[str, int]] = []

    def collect() -> None:
        try:
            for event in events:
                seen.append((event.container_id, event.container_event_type))
        except grpc.RpcError:
            pass
    reader = threading.Thread(target=collect)
    reader.start()
    pod, cfg = cri.run_pod()
    try:
        time.sleep(1)  # the stream's first look, before the container exists
        cid = cri.run_container(pod, cfg, ["sleep", "1000"])
        time.sleep(1)
        cri.rt.StopContainer(api.StopContainerRequest(container_id=cid, timeout=0))
        time.sleep(1)
        cri.rt.RemoveContainer(api.RemoveContainerRequest(container_id=cid))
        time.sleep(1)
    finally:
        events.cancel()
        reader.join(10)
        cri.remove_pod(pod)
    assert [k for c, k in seen if c == cid] == [api.CONTAINER_CREATED_EVENT, api.CONTAINER_STARTED_EVENT,
                                                api.CONTAINER_STOPPED_EVENT, api.CONTAINER_DELETED_EVENT]


def test_serve_refuses_a_bad_address_and_a_taken_socket(cri: CRI) -> None:
    exe = os.path.join(os.path.dirname(os.path.abspath(sys.executable)), "ctrpy")
    base = ["--root", str(cri.server.root), "--state", str(cri.server.state), "--config", str(cri.server.config),
            "serve", "--address"]
    r = subprocess.run([exe, *base, "tcp://127.0.0.1:1234"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 3 and "give unix:///absolute/path.sock" in r.stderr
    r = subprocess.run([exe, *base, cri.server.endpoint], capture_output=True, text=True, timeout=30)
    assert r.returncode == 5 and "another server is listening" in r.stderr
    assert cri.rt.Version(api.VersionRequest()).runtime_name == "ctrpy"  # the running one is untouched
