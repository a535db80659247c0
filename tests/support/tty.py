"""Run a command with its output on a pseudo-terminal of a given width, as at a shell."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import struct
import subprocess
import termios


def run_on_pty(argv: list[str], env: dict[str, str], columns: int = 100) -> bytes:
    """Run argv with stdout and stderr on a pseudo-terminal (a TTY, as at a shell); return what it wrote."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=slave, stderr=slave, env=env)
    finally:
        os.close(slave)
    out = b""
    try:
        while True:
            ready, _, _ = select.select([master], [], [], 30)
            if not ready:
                break
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            out += chunk
    finally:
        os.close(master)
        proc.wait(timeout=30)
    return out
