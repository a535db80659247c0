"""RFC 3339 timestamps, as containerd writes them: UTC, nanoseconds, `Z` (`2026-11-29T20:19:13.123456789Z`).
Every timestamp ctrpy stores (metadata rows, exit records, lease expiry labels, ingest times) is written by
`now`/`format` and read back by `parse`, which also takes what other tools write: any number of fraction
digits, none, and a `+hh:mm`/`-hh:mm` offset."""

from __future__ import annotations

import time


def format_ns(ns: int) -> str:
    """Nanoseconds since the epoch -> RFC 3339 UTC with nanoseconds."""
    secs, frac = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{frac:09d}Z"


def format(at: float) -> str:
    """Seconds since the epoch -> RFC 3339 UTC with nanoseconds."""
    secs = int(at)
    return format_ns(secs * 1_000_000_000 + int((at - secs) * 1e9))


def format_seconds(at: float | None = None) -> str:
    """RFC 3339 UTC to the second (`2026-11-29T20:19:13Z`; now when `at` is None): image configs, log lines."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at))


def now() -> str:
    """The current time as RFC 3339 UTC with nanoseconds."""
    return format_ns(time.time_ns())


def parse_ns(stamp: str) -> int:
    """RFC 3339 -> nanoseconds since the epoch; ValueError when `stamp` is not RFC 3339."""
    seconds, nanos = _parse(stamp)
    return seconds * 1_000_000_000 + nanos


def parse(stamp: str) -> float:
    """RFC 3339 -> seconds since the epoch; ValueError when `stamp` is not RFC 3339."""
    seconds, nanos = _parse(stamp)
    return seconds + nanos / 1e9


def _parse(stamp: str) -> tuple[int, int]:
    text = stamp.strip()
    if len(text) < 19 or text[4] != "-" or text[7] != "-" or text[10] not in "Tt " or text[13] != ":" \
            or text[16] != ":":
        raise ValueError(f"not an RFC 3339 time: {stamp!r}")
    # Sliced rather than strptime'd: listings parse one per row, and strptime costs more than the row.
    fields = (int(text[0:4]), int(text[5:7]), int(text[8:10]), int(text[11:13]), int(text[14:16]), int(text[17:19]))
    if not (1 <= fields[1] <= 12 and 1 <= fields[2] <= 31 and fields[3] <= 23 and fields[4] <= 59
            and fields[5] <= 60):
        raise ValueError(f"not an RFC 3339 time: {stamp!r}")
    rest = text[19:]
    nanos = 0
    if rest.startswith("."):
        digits = rest[1:]
        end = len(digits) - len(digits.lstrip("0123456789"))
        if end == 0:
            raise ValueError(f"not an RFC 3339 time: {stamp!r}")
        nanos = int((digits[:end] + "000000000")[:9])
        rest = digits[end:]
    offset = 0
    if rest in ("Z", "z", ""):
        pass
    elif len(rest) == 6 and rest[0] in "+-" and rest[3] == ":" and rest[1:3].isdigit() and rest[4:].isdigit():
        offset = (int(rest[1:3]) * 3600 + int(rest[4:6]) * 60) * (1 if rest[0] == "+" else -1)
    else:
        raise ValueError(f"not an RFC 3339 time: {stamp!r}")
    return _timegm(*fields) - offset, nanos


def _timegm(year: int, month: int, day: int, hour: int, minute: int, second: int) -> int:
    """calendar.timegm without importing calendar (which brings locale and datetime along, ~2 ms)."""
    # Days from 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil).
    y = year - (month <= 2)
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    days = era * 146097 + doe - 719468
    return days * 86400 + hour * 3600 + minute * 60 + second
