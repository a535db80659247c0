"""Reading /proc/<pid>: a process's start time, and an identity for it that survives pid reuse."""

from __future__ import annotations


def start_time(pid: int) -> int | None:
    """Start time of `pid` (clock ticks since boot, field 22 of /proc/<pid>/stat); None if it is gone or a
    zombie. Together with the pid it tells a process from a later one that reused the pid."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: the fields after it start at the last ')'.
    rest = text[text.rfind(")") + 2:].split()
    if len(rest) < 20 or rest[0] in ("Z", "X"):
        return None
    return int(rest[19])


def proc_id(pid: int) -> str:
    """`"<pid> <start time>"`: a process's identity that survives pid reuse (0 for a process already gone)."""
    return f"{pid} {start_time(pid) or 0}"


def proc_alive(ident: str) -> bool:
    """Whether the process that `proc_id` described is still the one running under its pid."""
    try:
        pid, start = (int(x) for x in ident.split())
    except ValueError:
        return False
    return start_time(pid) == start
