"""Attaching to a running container with docker's detach keys (default ctrl-p ctrl-q).

The keys are looked for in what the user types; once the whole sequence is seen, the client leaves and the
container keeps running. A partial sequence followed by other input is sent on, as docker does.
"""

from __future__ import annotations

import os
import select
from collections.abc import Callable
from typing import Any

from ctrpy.runtime import errors
from ctrpy.runtime import supervisor as sup

DEFAULT_DETACH_KEYS = "ctrl-p,ctrl-q"


def parse_detach_keys(text: str) -> bytes:
    """`ctrl-p,ctrl-q` -> b"\\x10\\x11" (docker's syntax: ctrl-<a-z@[\\]^_> or single characters)."""
    out = bytearray()
    for key in [k.strip() for k in (text or DEFAULT_DETACH_KEYS).split(",")]:
        if key.lower().startswith("ctrl-") and len(key) == 6:
            ch = key[5].lower()
            if "a" <= ch <= "z":
                out.append(ord(ch) - ord("a") + 1)
            elif ch in "@[\\]^_":
                out.append({"@": 0, "[": 27, "\\": 28, "]": 29, "^": 30, "_": 31}[ch])
            else:
                raise errors.InvalidArgument(f"invalid detach key {key!r}")
        elif len(key) == 1:
            out.append(ord(key))
        else:
            raise errors.InvalidArgument(f"invalid detach keys {text!r}: use e.g. ctrl-p,ctrl-q or ctrl-x")
    return bytes(out)


def pump_with_detach(attachment: Any, stdin_fd: int | None, keys: bytes,
                     on_signal: Callable[[int], None] | None = None) -> tuple[dict[str, Any] | None, bool]:
    """Copy stdio until the process exits (its exit record, False) or the detach keys are typed (None, True)."""
    restore = None
    if attachment.tty and stdin_fd is not None and os.isatty(stdin_fd):
        from ctrpy.runtime.tasks import _raw_mode

        restore = _raw_mode(stdin_fd)
        attachment._send_size(stdin_fd)
    matched = b""
    reading = stdin_fd is not None
    try:
        while True:
            while attachment.has_buffered_frame():
                kind, payload = attachment.read_frame()
                if kind == sup.F_STDOUT:
                    os.write(1, payload)
                elif kind == sup.F_STDERR:
                    os.write(2, payload)
                elif kind == sup.F_EXIT:
                    import json

                    return json.loads(payload), False
            watch = [attachment.sock] + ([stdin_fd] if reading and stdin_fd is not None else [])
            ready, _, _ = select.select(watch, [], [])
            if stdin_fd is not None and stdin_fd in ready:
                data = os.read(stdin_fd, 4096)
                if not data:
                    reading = False
                    continue
                send = b""
                for byte in data:
                    b = bytes([byte])
                    if keys and b == keys[len(matched):len(matched) + 1]:
                        matched += b
                        if matched == keys:
                            if matched:
                                return None, True
                        continue
                    send += matched + b
                    matched = b""
                if send:
                    attachment.send_stdin(send)
            if attachment.sock in ready:
                data = attachment.sock.recv(65536)
                if not data:
                    return None, False
                attachment._buf += data
    finally:
        if restore is not None:
            restore()
