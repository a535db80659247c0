"""The kernel facts of ctrpy.runtime.linux and ctrpy.runtime.timefmt, each read in one place. Unit tests:
no root, no containers (the modules read /proc and parse text; the callers' behaviour is tested elsewhere)."""

from __future__ import annotations

import os

from ctrpy.runtime.linux import proc


def test_start_time_tells_a_live_process_from_a_zombie_and_a_dead_one() -> None:
    mine = proc.start_time(os.getpid())
    assert isinstance(mine, int) and mine > 0
    child = os.fork()
    if child == 0:  # pragma: no cover - exits at once
        os._exit(0)
    # Not reaped yet: a zombie, which no longer counts as the process that was started.
    for _ in range(1000):
        with open(f"/proc/{child}/stat") as f:
            if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                break
        os.sched_yield()
    assert proc.start_time(child) is None
    os.waitpid(child, 0)
    assert proc.start_time(child) is None


def test_start_time_reads_past_a_command_name_with_spaces_and_parentheses() -> None:
    # The comm field is ours to choose: a process named ") 1 2 (" must not shift the fields.
    r, w = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child sets its name and waits to be killed
        os.close(r)
        with open("/proc/self/comm", "w") as f:
            f.write(") Z 1 2 (")
        os.write(w, b"x")
        os.pause()
    try:
        os.close(w)
        os.read(r, 1)
        with open(f"/proc/{child}/comm") as f:
            assert f.read().strip() == ") Z 1 2 ("
        assert isinstance(proc.start_time(child), int)
    finally:
        os.kill(child, 9)
        os.waitpid(child, 0)
        os.close(r)


def test_proc_id_survives_only_while_the_same_process_runs() -> None:
    ident = proc.proc_id(os.getpid())
    assert ident.startswith(f"{os.getpid()} ") and proc.proc_alive(ident)
    pid, start = ident.split()
    assert not proc.proc_alive(f"{pid} {int(start) + 1}")  # the pid, reused by a later process
    child = os.fork()
    if child == 0:  # pragma: no cover
        os._exit(0)
    os.waitpid(child, 0)
    assert proc.proc_id(child) == f"{child} 0"
    assert not proc.proc_alive(proc.proc_id(child))
    for bad in ("", "12", "a b", "1 2 3"):
        assert not proc.proc_alive(bad)
