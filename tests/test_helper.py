"""The C helper through ctrpy.runtime.helper: errors keep their errno, clamping warns, processes really run.

These call the helper directly, without namespaces or a rootfs (the exec path), so they run fast; the
container paths are covered by test_builtin_runtime.py.
"""

from __future__ import annotations

import errno
import os
import resource
from pathlib import Path

import pytest

from ctrpy.runtime import errors, helper


def _run(spec: helper.Spec) -> tuple[int, list[str], str]:
    """Spawn `spec` with stdout/stderr on a pipe; returns (exit status, warnings, output)."""
    r, w = os.pipe()
    try:
        spec.stdio = (0, w, w)
        pid, warnings = helper.spawn(spec)
    finally:
        os.close(w)
    with os.fdopen(r) as f:
        out = f.read()
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), warnings, out


def test_version_is_the_header_version() -> None:
    header = (Path(__file__).parent.parent / "csrc/helper.h").read_text()
    assert f'#define CTRPY_HELPER_VERSION "{helper.version()}"' in header


def test_every_errno_maps_to_a_ctrpy_error_keeping_it() -> None:
    for code in sorted(errno.errorcode):
        exc = errors.from_errno(code, "op")
        assert isinstance(exc, errors.CtrpyError)
        assert exc.errno == code
        assert str(exc) == f"op: {os.strerror(code)}"
    assert isinstance(errors.from_errno(errno.ENOENT, "x"), errors.NotFound)
    assert isinstance(errors.from_errno(errno.EACCES, "x"), errors.PermissionDenied)


def test_spawn_runs_a_process_with_env_cwd_and_args(tmp_path: Path) -> None:
    code, warnings, out = _run(helper.Spec(argv=["sh", "-c", 'echo "$GREETING from $(pwd)"; exit 3'],
                                           env=["PATH=/usr/bin:/bin", "GREETING=hello"], cwd=str(tmp_path)))
    assert (code, warnings, out) == (3, [], f"hello from {tmp_path}\n")


def test_exec_errors_keep_errno_and_read_as_one_line(tmp_path: Path) -> None:
    with pytest.raises(errors.NotFound) as info:
        helper.spawn(helper.Spec(argv=["nosuchcmd"], env=["PATH=/bin"]))
    assert info.value.errno == errno.ENOENT
    assert str(info.value) == 'exec "nosuchcmd": No such file or directory'

    script = tmp_path / "noexec.sh"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o644)
    with pytest.raises(errors.PermissionDenied) as info:
        helper.spawn(helper.Spec(argv=[str(script)], uid=65534, gid=65534))
    assert info.value.errno == errno.EACCES

    with pytest.raises(errors.NotFound) as info:
        helper.spawn(helper.Spec(argv=["/bin/true"], cwd="/no/such/dir"))
    assert str(info.value) == 'chdir to cwd "/no/such/dir": No such file or directory'


def test_rlimit_above_hard_and_lower_oom_score_are_clamped_with_warnings() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    oom = int(Path("/proc/self/oom_score_adj").read_text())
    code, warnings, out = _run(helper.Spec(
        argv=["sh", "-c", "ulimit -Hn; cat /proc/self/oom_score_adj"], env=["PATH=/bin"],
        rlimits=[(resource.RLIMIT_NOFILE, hard * 2, hard * 2)], oom_score_adj=oom - 10))
    assert code == 0
    assert out.split() == [str(hard), str(oom)]
    assert len(warnings) == 2
    assert f"hard limit {hard * 2} clamped to {hard}" in warnings[0]
    assert f"oom_score_adj {oom - 10} clamped to {oom}" in warnings[1]


def test_lowering_limits_needs_no_clamp() -> None:
    code, warnings, out = _run(helper.Spec(
        argv=["sh", "-c", "ulimit -n; cat /proc/self/oom_score_adj"], env=["PATH=/bin"],
        rlimits=[(resource.RLIMIT_NOFILE, 77, 88)], oom_score_adj=500))
    assert (code, warnings, out.split()) == (0, [], ["77", "500"])


def test_user_groups_caps_and_no_new_privs() -> None:
    cap_kill = 1 << 5
    code, _, out = _run(helper.Spec(
        argv=["sh", "-c", "id -u; id -g; id -G; grep -E '^(CapEff|CapBnd|NoNewPrivs)' /proc/self/status"],
        env=["PATH=/bin:/usr/bin"], uid=1000, gid=1001, gids=[2000, 2001],
        caps=(cap_kill, cap_kill, 0, cap_kill, 0), no_new_privs=True))
    assert code == 0
    lines = out.splitlines()
    assert lines[:3] == ["1000", "1001", "1001 2000 2001"]
    # a non-root uid gets no effective caps at exec without ambient ones; the bounding set is what we set
    assert lines[3:] == ["CapEff:\t0000000000000000", "CapBnd:\t0000000000000020", "NoNewPrivs:\t1"]


def test_ambient_capabilities_survive_exec_for_non_root() -> None:
    cap_net_bind = 1 << 10
    code, _, out = _run(helper.Spec(
        argv=["grep", "-E", "^Cap(Eff|Amb)", "/proc/self/status"], env=["PATH=/bin:/usr/bin"], uid=1000, gid=1000,
        caps=(cap_net_bind, cap_net_bind, cap_net_bind, cap_net_bind, cap_net_bind)))
    assert code == 0
    assert out.splitlines() == ["CapEff:\t0000000000000400", "CapAmb:\t0000000000000400"]


def _raw_sigaction(sig: int, handler: int) -> int:
    """Set a disposition with the raw system call: glibc refuses its reserved signals 32 and 33."""
    import ctypes

    class KernelSigaction(ctypes.Structure):
        _fields_ = [("handler", ctypes.c_ulong), ("flags", ctypes.c_ulong), ("restorer", ctypes.c_ulong),
                    ("mask", ctypes.c_ulong)]

    libc = ctypes.CDLL(None, use_errno=True)
    new, old = KernelSigaction(handler, 0, 0, 0), KernelSigaction()
    assert libc.syscall(13, sig, ctypes.byref(new), ctypes.byref(old), 8) == 0  # SYS_rt_sigaction on x86_64
    return int(old.handler)


def test_ignored_signals_are_reset_in_the_child() -> None:
    # Python ignores SIGPIPE, and a parent may have ignored even glibc's reserved signal 32: a container
    # process must inherit none of that.
    previous = _raw_sigaction(32, 1)  # SIG_IGN
    try:
        code, _, out = _run(helper.Spec(argv=["grep", "^SigIgn", "/proc/self/status"], env=["PATH=/bin"]))
    finally:
        _raw_sigaction(32, previous)
    assert code == 0 and out.strip() == "SigIgn:\t0000000000000000"


def test_fds_do_not_leak_into_the_process() -> None:
    keep_r, keep_w = os.pipe()  # inheritable would leak without close_range in the helper
    os.set_inheritable(keep_w, True)
    try:
        code, _, out = _run(helper.Spec(argv=["ls", "/proc/self/fd"], env=["PATH=/bin"]))
    finally:
        os.close(keep_r)
        os.close(keep_w)
    assert code == 0
    assert sorted(int(x) for x in out.split()) == [0, 1, 2, 3]  # 3: ls's own directory fd


def test_exec_fifo_start_and_errors(tmp_path: Path) -> None:
    fifo = tmp_path / "exec.fifo"
    os.mkfifo(fifo, 0o622)
    marker = tmp_path / "ran"
    pid, _ = helper.spawn(helper.Spec(argv=["sh", "-c", f"echo yes > {marker}"], env=["PATH=/bin"],
                                      exec_fifo=str(fifo)))
    try:
        assert not marker.exists()  # waiting on the fifo, not exec'd yet
        helper.start(str(fifo), pid)
    finally:
        _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0 and marker.read_text() == "yes\n"

    # start on a process that died while waiting fails instead of hanging
    os.unlink(fifo)
    os.mkfifo(fifo, 0o622)
    pid, _ = helper.spawn(helper.Spec(argv=["true"], env=["PATH=/bin"], exec_fifo=str(fifo)))
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    with pytest.raises(errors.NotFound) as info:
        helper.start(str(fifo), pid)
    assert info.value.errno == errno.ESRCH
