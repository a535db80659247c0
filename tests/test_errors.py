"""The exit-code table: README shows exactly the one errors.py defines, and every error class has its row."""

from __future__ import annotations

import errno
import re
from pathlib import Path

from ctrpy.runtime import errors

README = Path(__file__).resolve().parent.parent / "README.md"


def readme_exit_codes() -> dict[str, str]:
    """README's `## Exit codes` table as {code label: meaning}."""
    text = README.read_text()
    section = text.split("## Exit codes", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| ([0-9][0-9 /]*) \| (.+) \|$", section, flags=re.M)
    return {code.strip(): meaning.strip() for code, meaning in rows}


def test_readme_table_is_the_table_errors_py_uses() -> None:
    table = errors.exit_code_table()
    assert table in README.read_text(), "README's exit-code table differs from errors.exit_code_table()"
    codes = readme_exit_codes()
    for cls in errors.ALL_ERRORS:
        assert str(cls.exit_code) in codes, f"{cls.__name__} (exit {cls.exit_code}) has no row in README"
    # Codes are unique per class.
    assert len({cls.exit_code for cls in errors.ALL_ERRORS}) == len(errors.ALL_ERRORS)


def test_full_disk_is_its_own_class_and_says_so() -> None:
    for err in (errno.ENOSPC, errno.EDQUOT):
        exc = errors.from_errno(err, "write layer")
        assert isinstance(exc, errors.NoSpace) and exc.exit_code == 13
    assert "no space left on device" in str(errors.from_errno(errno.ENOSPC, "x")).lower()
    assert str(errors.no_space("content ingest", "/r/ingest")) == \
        "content ingest (/r/ingest): no space left on device"
    assert errors.is_no_space(OSError(errno.EDQUOT, "Disk quota exceeded"))
    import sqlite3

    assert errors.is_no_space(sqlite3.OperationalError("database or disk is full"))
