"""Reading /proc/<pid>: a process's state, parent and start time, and an identity for it that survives pid
reuse."""

from __future__ import annotations


class Stat:
    """The fields of /proc/<pid>/stat that ctrpy reads (proc(5)). A plain class: a NamedTuple costs 0.25 ms
    to define, on the path of every `run`."""

    __slots__ = ("comm", "state", "ppid", "start_time")

    def __init__(self, comm: str, state: str, ppid: int, start_time: int) -> None:
        self.comm = comm  # field 2, without its parentheses
        self.state = state  # field 3: R, S, D, Z, X...
        self.ppid = ppid  # field 4
        self.start_time = start_time  # field 22: clock ticks since boot


def stat(pid: int) -> Stat | None:
    """/proc/<pid>/stat, None if the process is gone (or the file unreadable)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
    except OSError:
        return None
    # The command name may hold spaces and parentheses: the fields after it start at the last ')'.
    open_paren, close_paren = text.find("("), text.rfind(")")
    rest = text[close_paren + 2:].split()
    if open_paren < 0 or len(rest) < 20:
        return None
    return Stat(text[open_paren + 1:close_paren], rest[0], int(rest[1]), int(rest[19]))


def start_time(pid: int) -> int | None:
    """Start time of `pid`; None if it is gone or a zombie. Together with the pid it tells a process from a
    later one that reused the pid."""
    st = stat(pid)
    if st is None or st.state in ("Z", "X"):
        return None
    return st.start_time


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
