"""`ctrpy stats` (issue 12): one sample off a terminal or with --no-stream; live on a terminal, redrawn in place
every second, following containers as they come and go, until Ctrl-C (exit 130, cursor shown again)."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import signal
import struct
import subprocess
import termios
import time
from pathlib import Path
from typing import Any

import pytest

from support.runtimes import CTRPY, cleanup, rootfs  # noqa: F401 - fixtures

pytestmark = pytest.mark.usefixtures("cleanup")

HOME, HIDE, SHOW = "\x1b[H", "\x1b[?25l", "\x1b[?25h"


def ok(ctrpy: Any, *args: str) -> Any:
    r = ctrpy(*args)
    assert r.returncode == 0, (args, r.returncode, r.stderr)
    return r


def start(ctrpy: Any, rootfs: Path, name: str, *flags: str) -> None:
    ok(ctrpy, "run", "-d", "--rootfs", str(rootfs), "--name", name, *flags, "sleep", "60")


def test_one_sample_format_and_all(ctrpy: Any, rootfs: Path) -> None:
    start(ctrpy, rootfs, "s1", "-m", "32m")
    ok(ctrpy, "create", "--rootfs", str(rootfs), "--name", "idle", "true")
    for args in (("stats", "--no-stream"), ("stats",)):  # off a terminal, one sample either way
        lines = ok(ctrpy, *args).stdout.splitlines()
        assert lines[0].split() == ["CONTAINER", "ID", "NAME", "CPU", "%", "MEM", "USAGE", "/", "LIMIT", "MEM",
                                    "%", "PIDS"]
        assert len(lines) == 2 and lines[1].split()[1] == "s1", lines  # running ones only
        assert " / 32.0 MiB " in lines[1] and lines[1].split()[-1] == "1", lines
    assert ok(ctrpy, "stats", "--format", "{{.Name}} {{.PIDs}} {{.MemPerc}}", "s1").stdout.startswith("s1 1 ")
    assert sorted(ok(ctrpy, "stats", "-a", "--format", "{{.Name}}").stdout.split()) == ["idle", "s1"]
    assert ok(ctrpy, "stats", "--format", "{{.Name}} {{.PIDs}}", "idle").stdout == "idle 0\n"
    r = ctrpy("stats", "--no-stream", "nosuch")
    assert r.returncode == 4 and "nosuch" in r.stderr
    # One sample still measures CPU over an interval: a busy loop shows real use, not 0.00%.
    ok(ctrpy, "run", "-d", "--rootfs", str(rootfs), "--name", "busy", "sh", "-c", "while :; do :; done")
    cpu = ok(ctrpy, "stats", "--no-stream", "--format", "{{.CPUPerc}}", "busy").stdout
    assert cpu.endswith("%\n") and float(cpu[:-2]) > 5, cpu
    ok(ctrpy, "rm", "-f", "busy")


def _read_until(master: int, out: bytearray, done: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not done(out.decode(errors="replace")):
        assert time.monotonic() < deadline, f"timed out; output so far: {out.decode(errors='replace')!r}"
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                data = os.read(master, 65536)
            except OSError:
                return
            if not data:
                return
            out += data


def text_done(text: str) -> bool:
    return text.rstrip().endswith("ctrpy: interrupted")


def _frames(text: str) -> list[str]:
    return [f for f in text.split(HOME)[1:] if "\x1b[J" in f]


def test_live_on_a_terminal_until_ctrl_c(ctrpy: Any, rootfs: Path, dirs: Any) -> None:
    start(ctrpy, rootfs, "live1")
    start(ctrpy, rootfs, "live2")
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 60, 0, 0))  # narrower than the table
    attrs = termios.tcgetattr(slave)
    # A session of its own with the pty as controlling terminal: Ctrl-C typed on it sends SIGINT, as for a user.
    proc = subprocess.Popen([CTRPY, "--root", str(dirs.root), "--state", str(dirs.state), "stats"],
                            stdin=slave, stdout=slave, stderr=slave, start_new_session=True,
                            preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0))
    out = bytearray()
    try:
        _read_until(master, out, lambda t: len(_frames(t)) >= 2, 30)
        frames = _frames(out.decode(errors="replace"))
        for frame in frames[:2]:
            lines = [line for line in re.sub(r"\x1b\[[JK]", "", frame).splitlines() if line.strip()]
            assert sorted(line.split()[1] for line in lines[1:]) == ["live1", "live2"], frame
            assert max(len(line) for line in lines) <= 60  # cut to the terminal, never wrapped
        assert out.decode().startswith(HIDE)
        # Containers come and go: a stopped one leaves the view.
        ok(ctrpy, "stop", "-t", "0", "live2")
        seen = len(_frames(out.decode(errors="replace")))

        def live2_gone(text: str) -> bool:
            later = _frames(text)[seen:]
            return bool(later) and "live2" not in later[-1] and "live1" in later[-1]

        _read_until(master, out, live2_gone, 30)
        assert proc.poll() is None  # still live
        os.write(master, b"\x03")  # Ctrl-C
        code = proc.wait(timeout=15)
        after = termios.tcgetattr(slave)
        _read_until(master, out, lambda t: text_done(t), 5)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        os.close(slave)
        os.close(master)
    text = out.decode(errors="replace")
    assert code == 130, text[-500:]
    assert text.rindex(SHOW) > text.rindex(HIDE)  # the cursor is shown again
    assert text.rstrip().endswith("ctrpy: interrupted")
    assert "Traceback" not in text
    assert after == attrs  # the terminal's modes are as they were
