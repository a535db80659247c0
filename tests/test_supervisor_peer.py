"""The task supervisor's socket is abstract (no file permissions) and its name is public in /proc/net/unix:
only the supervisor's own user may speak the frame protocol to it, or any local user could exec as root in
every running container."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

SCRIPT = r"""
import json, socket, struct, sys
# Only the test's own task: the name is public (/proc/net/unix lists it), the test passes it in.
names = [line.split()[-1] for line in open("/proc/net/unix") if line.split()[-1] == "@" + sys.argv[1]]
results = []
for name in set(names):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect("\0" + name[1:])
        proc = {"args": ["/bin/busybox", "touch", "/pwned"], "cwd": "/", "user": {"uid": 0, "gid": 0},
                "env": ["PATH=/bin"], "terminal": False}
        payload = json.dumps({"exec_id": "intruder", "process": proc}).encode()
        s.sendall(struct.pack(">cI", b"X", len(payload)) + payload)
        results.append(s.recv(4096).decode(errors="replace"))
    except OSError as exc:
        results.append(type(exc).__name__)
print(json.dumps(results))
"""


def test_another_user_cannot_exec_through_the_supervisor(ctrpy: Any, dirs: Any, tmp_path: Path) -> None:
    rootfs = tmp_path / "rootfs"
    (rootfs / "bin").mkdir(parents=True)
    (rootfs / "bin" / "busybox").write_bytes(Path("/bin/busybox").read_bytes())
    (rootfs / "bin" / "busybox").chmod(0o755)
    r = ctrpy("run", "-d", "--net", "none", "--rootfs", str(rootfs), "peer1", "/bin/busybox", "sleep", "60")
    assert r.returncode == 0, r.stderr
    try:
        from ctrpy.runtime.supervisor import socket_address

        name = socket_address(str(dirs.state / "default" / "peer1"))[1:]
        out = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", sys.executable,
                              "-I", "-c", SCRIPT, name], capture_output=True, text=True, timeout=30, cwd="/")
        assert out.returncode == 0, out.stderr
        results = json.loads(out.stdout)
        assert results, "no supervisor socket found in /proc/net/unix"
        assert all(not r.startswith("K") for r in results), results  # no F_OK for a stranger
        assert not (rootfs / "pwned").exists()
        # Root (the CLI's user) still talks to it.
        r = ctrpy("exec", "--exec-id", "e1", "peer1", "/bin/busybox", "echo", "still-works")
        assert r.returncode == 0 and "still-works" in r.stdout, r.stderr
    finally:
        ctrpy("tasks", "kill", "-s", "KILL", "peer1")
        ctrpy("tasks", "rm", "-f", "peer1")
        ctrpy("containers", "rm", "-f", "peer1")


SQUAT = r"""
import socket, sys, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind("\0" + sys.argv[1])
s.listen(1)
print("ready", flush=True)
conn, _ = s.accept()
conn.sendall(b"K\x00\x00\x00\x0b{\"pid\": 1}")
time.sleep(5)
"""


def test_the_cli_does_not_trust_a_socket_another_user_squats() -> None:
    import os

    import pytest

    from ctrpy.runtime import errors
    from ctrpy.runtime import supervisor as sup
    from ctrpy.runtime.attach import Attachment

    name = f"ctrpy-sup/squat/{os.getpid()}"
    squatter = subprocess.Popen(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", sys.executable,
                                 "-I", "-c", SQUAT, name], stdout=subprocess.PIPE, text=True, cwd="/")
    try:
        assert squatter.stdout is not None and squatter.stdout.readline().strip() == "ready"
        with pytest.raises(errors.PermissionDenied, match="belongs to another user"):
            Attachment.connect("\0" + name, sup.F_ATTACH, {"exec_id": ""}, timeout=5)
    finally:
        squatter.kill()
        squatter.wait()
