"""The per-task supervisor: detached, small, reaps and records exits durably, serves stdio."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from support.runtimes import cleanup, rootfs  # noqa: F401 - fixtures

pytestmark = pytest.mark.usefixtures("cleanup")

RUNTIME = "runc"  # the supervisor is the same under every runtime; test_tasks covers all three


def start(ctrpy: Any, rootfs: Path, cid: str, *cmd: str) -> None:
    r = ctrpy("run", "-d", "--runtime", RUNTIME, "--rootfs", str(rootfs), cid, *cmd)
    assert r.returncode == 0, r.stderr


def sup_pid(dirs: Any, cid: str) -> int:
    return int((dirs.state / "default" / cid / "supervisor.pid").read_text())


def smaps(pid: int) -> dict[str, int]:
    out = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        key, value = line.split(":", 1)
        out[key] = int(value.split()[0])
    return out


def test_detached_small_and_light(ctrpy: Any, rootfs: Path, dirs: Any) -> None:
    start(ctrpy, rootfs, "s1", "sleep", "60")
    pid = sup_pid(dirs, "s1")
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ppid, sid = int(stat[1]), int(stat[3])
    assert sid == pid  # its own session: a Ctrl-C or hang-up of the CLI never reaches it
    assert ppid != os.getpid()
    status = Path(f"/proc/{pid}/status").read_text()
    # The container's init is the supervisor's child (it is a subreaper), so it can reap it.
    init = json.loads(ctrpy("tasks", "ls", "--format", "json").stdout)[0]["pid"]
    init_ppid = int(Path(f"/proc/{init}/stat").read_text().rsplit(")", 1)[1].split()[1])
    assert init_ppid == pid, Path(f"/proc/{init}/stat").read_text()
    mem = smaps(pid)
    print(f"supervisor: Rss {mem['Rss']} kB, Pss {mem['Pss']} kB, anon {mem['Pss_Anon']} kB; "
          + " ".join(line for line in status.splitlines() if line.startswith("VmRSS")))
    # The C supervisor (csrc/supervisor.c), not a Python interpreter (~9 MB RSS): conmon-sized.
    assert os.readlink(f"/proc/{pid}/exe").endswith("/ctrpy-supervisor")
    assert mem["Rss"] < 4 * 1024 and mem["Pss"] < 1024
    maps = Path(f"/proc/{pid}/maps").read_text()
    for heavy in ("_ctypes", "_cffi_backend", "_sqlite3", "_ssl", "_asyncio"):
        assert heavy not in maps, f"the supervisor loaded {heavy}"


def test_exit_recorded_durably_and_supervisor_exits(ctrpy: Any, rootfs: Path, dirs: Any) -> None:
    start(ctrpy, rootfs, "s2", "sh", "-c", "echo bye; exit 9")
    pid = sup_pid(dirs, "s2")
    assert ctrpy("tasks", "wait", "s2").returncode == 9
    record = json.loads((dirs.state / "default" / "s2" / "exit.json").read_text())
    assert record["exit_status"] == 9 and record["exited_at"].endswith("Z")
    assert not list((dirs.state / "default" / "s2").glob("*.tmp"))
    deadline = time.monotonic() + 10
    while Path(f"/proc/{pid}").exists() and Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z":
        assert time.monotonic() < deadline, "the supervisor did not exit after its task"
        time.sleep(0.05)
    # With the supervisor gone, status and logs still come from the state directory.
    assert ctrpy("tasks", "wait", "s2").returncode == 9
    t = json.loads(ctrpy("tasks", "ls", "--format", "json").stdout)[0]
    assert (t["status"], t["exit_status"]) == ("stopped", 9)
    assert ctrpy("logs", "s2").stdout == "bye\n"
    events = json.loads(ctrpy("events", "--format", "json").stdout)
    exits = [e["payload"] for e in events if e["topic"] == "/tasks/exit"]
    assert [(p["container_id"], p["exit_status"]) for p in exits] == [("s2", 9)]
    topics = [e["topic"] for e in events]
    assert topics.index("/tasks/create") < topics.index("/tasks/start") < topics.index("/tasks/exit")


def test_large_output_is_not_lost(ctrpy: Any, rootfs: Path) -> None:
    r = ctrpy("run", "--rm", "--runtime", RUNTIME, "--rootfs", str(rootfs), "big", "sh", "-c",
              "seq 1 200000; echo end >&2")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == 200000 and lines[-1] == "200000"
    assert r.stderr == "end\n"


def test_stale_state_is_not_stuck_running(ctrpy: Any, rootfs: Path, dirs: Any) -> None:
    """Supervisor and container both SIGKILLed: the task ends STOPPED (status unknown), never RUNNING."""
    start(ctrpy, rootfs, "s3", "sleep", "60")
    pid = sup_pid(dirs, "s3")
    init = json.loads(ctrpy("tasks", "ls", "--format", "json").stdout)[0]["pid"]
    os.kill(pid, 9)
    os.kill(init, 9)
    deadline = time.monotonic() + 10
    while True:
        t = json.loads(ctrpy("tasks", "ls", "--format", "json").stdout)[0]
        if t["status"] == "stopped":
            break
        assert time.monotonic() < deadline, t
        time.sleep(0.1)
    assert t["exit_status"] == 255
    assert ctrpy("tasks", "rm", "s3").returncode == 0


def _kill_supervisor(dirs: Any, cid: str) -> int:
    pid = sup_pid(dirs, cid)
    os.kill(pid, 9)
    return pid


def test_attached_run_keeps_output_and_status_when_supervisor_killed(ctrpy: Any, rootfs: Path, dirs: Any) -> None:
    """The supervisor SIGKILLed mid-run: the attached `run` still prints the rest of the output and exits with
    the process's own status (it holds the output fds and, as a subreaper, reaps the orphaned init)."""
    import subprocess

    from support.runtimes import CTRPY

    env = {**os.environ, "CTRPY_CONFIG": str(dirs.root.parent / "config.toml")}
    p = subprocess.Popen([CTRPY, "--root", str(dirs.root), "--state", str(dirs.state), "run", "--runtime", RUNTIME,
                          "--rootfs", str(rootfs), "sk1", "sh", "-c", "echo one; sleep 1.5; echo two; exit 3"],
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        assert p.stdout is not None
        assert p.stdout.readline() == b"one\n"
        _kill_supervisor(dirs, "sk1")
        out, err = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 3, err
    assert out == b"two\n"
    events = json.loads(ctrpy("events", "--format", "json").stdout)
    assert [e["payload"]["exit_status"] for e in events if e["topic"] == "/tasks/exit"] == [3]


def test_tasks_wait_gets_real_status_when_supervisor_killed(ctrpy: Any, rootfs: Path, dirs: Any) -> None:
    """`tasks wait` on a detached task whose supervisor was killed: a tracing supervisor (--adopt) records the
    real exit status (and the /tasks/exit event) instead of 255."""
    start(ctrpy, rootfs, "sk2", "sh", "-c", "sleep 1.5; exit 7")
    _kill_supervisor(dirs, "sk2")
    assert ctrpy("tasks", "wait", "sk2").returncode == 7
    t = json.loads(ctrpy("tasks", "ls", "--format", "json").stdout)[0]
    assert (t["status"], t["exit_status"]) == ("stopped", 7)
    events = json.loads(ctrpy("events", "--format", "json").stdout)
    assert [e["payload"]["exit_status"] for e in events if e["topic"] == "/tasks/exit"] == [7]


def test_exit_recorded_when_reaped_not_after_drain(ctrpy: Any, rootfs: Path, dirs: Any) -> None:
    """The exit record is durable as soon as the init is reaped, before the supervisor drains and answers:
    an exec process that keeps its output open does not delay it."""
    start(ctrpy, rootfs, "sk3", "sh", "-c", "sleep 0.5; exit 4")
    deadline = time.monotonic() + 10
    exit_file = dirs.state / "default" / "sk3" / "exit.json"
    while not exit_file.exists():
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert json.loads(exit_file.read_text())["exit_status"] == 4


def test_unknowable_status_says_so(ctrpy: Any, rootfs: Path, dirs: Any) -> None:
    """Supervisor killed, then the process exits with nobody watching: 255, and the reason is printed."""
    start(ctrpy, rootfs, "sk4", "sh", "-c", "sleep 0.5; exit 0")
    os.kill(sup_pid(dirs, "sk4"), 9)
    time.sleep(1.5)  # the process exits unobserved (reaped by init)
    r = ctrpy("tasks", "wait", "sk4")
    assert r.returncode == 255
    assert "exit status unknown" in r.stderr and "supervisor" in r.stderr


def _request(address: str, kind: bytes, payload: bytes, header_length: int | None = None) -> tuple[bytes, Any]:
    """One frame to the supervisor, its first answer: (kind, JSON payload), or (b"", None) when it hung up."""
    import socket
    import struct

    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect(address)
        length = len(payload) if header_length is None else header_length
        s.sendall(struct.pack(">cI", kind, length) + payload)
        data = b""
        while len(data) < 5 or len(data) < 5 + struct.unpack(">I", data[1:5])[0]:
            chunk = s.recv(65536)
            if not chunk:
                return b"", None
            data += chunk
        return data[:1], json.loads(data[5:5 + struct.unpack(">I", data[1:5])[0]])


def test_malformed_and_deeply_nested_requests_are_bad_requests(ctrpy: Any, rootfs: Path, dirs: Any) -> None:
    """A request that is not a well-formed JSON object, or nests too deeply, gets E "bad request"; the
    supervisor keeps serving (a C parser that recursed would die on "[[[[...")."""
    from ctrpy.runtime.supervisor import socket_address

    start(ctrpy, rootfs, "fr1", "sleep", "60")
    address = socket_address(str(dirs.state / "default" / "fr1"))
    pid = sup_pid(dirs, "fr1")
    bad = [
        (b"X", b"[" * 100000),
        (b"X", b'{"exec_id": "e9", "process": ' + b"[" * 100000 + b"]" * 100000 + b"}"),
        (b"A", b'{"exec_id": "", "x": ' + b"{\"a\": " * 100 + b"1" + b"}" * 100 + b"}"),
        (b"A", b'{"exec_id": ""'),
        (b"A", b'{"exec_id": "", }'),
        (b"A", b'{"exec_id": 5}'),
        (b"R", b'{"rows": 01}'),
        (b"S", b'{"a": "\\x"}'),
        (b"X", b"\xff\xfe"),
    ]
    for kind, payload in bad:
        reply, body = _request(address, kind, payload)
        assert reply == b"E" and body["error"].startswith("bad request"), (kind, payload[:40], reply, body)
    # Well-formed nesting within the limit is fine.
    reply, body = _request(address, b"A", b'{"exec_id": "", "x": [[[{"y": [1.5e3, -0, true, null, "\\u00e9"]}]]]}')
    assert reply == b"K" and body["pid"] > 0
    # A frame announcing more than the limit: refused without waiting for (or buffering) it.
    reply, body = _request(address, b"I", b"", header_length=1 << 30)
    assert reply == b"E" and body["error"] == "bad request: frame too large"
    # Not a CRI container: no log to reopen.
    reply, body = _request(address, b"O", b"{}")
    assert reply == b"E" and body["class"] == "FailedPrecondition" and "is not running" in body["error"]
    assert sup_pid(dirs, "fr1") == pid and Path(f"/proc/{pid}").exists()
    r = ctrpy("exec", "--exec-id", "e1", "fr1", "echo", "still-serving")
    assert r.returncode == 0 and r.stdout == "still-serving\n", r.stderr


def test_c_supervisor_spells_the_stream_log_names_as_python_does() -> None:
    # The names live in ctrpy.runtime.supervisor; C cannot import them, so its copies are held to them.
    from ctrpy.runtime import supervisor

    source = (Path(__file__).parent.parent / "csrc" / "supervisor.c").read_text()
    for name in ("STREAM_LOG", "LOG_MAX_SIZE_ANNOTATION", "LOG_MAX_FILE_ANNOTATION"):
        assert f'#define {name} "{getattr(supervisor, name)}"' in source, name
