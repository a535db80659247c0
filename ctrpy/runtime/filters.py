"""A subset of containerd's filter grammar for list commands.

    filter    := selector ("," selector)*        selectors are AND-ed
    selector  := fieldpath [op value]            a bare fieldpath tests presence
    fieldpath := field ("." field)*              field: identifier or "quoted" (labels."a.b/c")
    op        := "==" | "!=" | "~="              ~= is a Python regular expression search
    value     := "quoted" | /regex/ | bare text up to the next ","

Several filter strings are OR-ed, as in containerd (`ctr images ls 'name~=busy' 'labels.x'`).
Objects are matched through an adaptor: a function from a fieldpath (list of strings) to the field's
value, or None when the field is absent.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from ctrpy.runtime import errors

Adaptor = Callable[[list[str]], "str | None"]

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_\-/]*")


@dataclass(frozen=True)
class Selector:
    fieldpath: tuple[str, ...]
    op: str | None = None
    value: str = ""
    regex: re.Pattern[str] | None = None

    def match(self, adaptor: Adaptor) -> bool:
        got = adaptor(list(self.fieldpath))
        if self.op is None:
            return got is not None
        if self.op == "==":
            return got is not None and got == self.value
        if self.op == "!=":
            return got is None or got != self.value
        assert self.regex is not None
        return got is not None and self.regex.search(got) is not None


@dataclass(frozen=True)
class Filter:
    """An OR of ANDs of selectors; the empty filter matches everything."""

    alternatives: tuple[tuple[Selector, ...], ...] = ()

    def match(self, adaptor: Adaptor) -> bool:
        if not self.alternatives:
            return True
        return any(all(s.match(adaptor) for s in alt) for alt in self.alternatives)


def _quoted(text: str, pos: int, quote: str) -> tuple[str, int]:
    out = []
    i = pos + 1
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            out.append(text[i + 1])
            i += 2
            continue
        if ch == quote:
            return "".join(out), i + 1
        out.append(ch)
        i += 1
    raise errors.InvalidArgument(f"invalid filter {text!r}: unterminated {quote}")


def _parse_one(text: str) -> tuple[Selector, ...]:
    selectors: list[Selector] = []
    i = 0
    n = len(text)

    def bad(why: str) -> errors.InvalidArgument:
        return errors.InvalidArgument(f"invalid filter {text!r}: {why} at position {i}")

    while True:
        while i < n and text[i].isspace():
            i += 1
        path: list[str] = []
        while True:
            if i < n and text[i] == '"':
                field, i = _quoted(text, i, '"')
            else:
                m = _IDENT.match(text, i)
                if not m:
                    raise bad("expected a field name")
                field, i = m.group(0), m.end()
            path.append(field)
            if i < n and text[i] == ".":
                i += 1
                continue
            break
        while i < n and text[i].isspace():
            i += 1
        op = None
        value = ""
        regex = None
        if text.startswith(("==", "!=", "~="), i):
            op = text[i : i + 2]
            i += 2
            while i < n and text[i].isspace():
                i += 1
            if i < n and text[i] == '"':
                value, i = _quoted(text, i, '"')
            elif i < n and text[i] == "/" and op == "~=":
                value, i = _quoted(text, i, "/")
            else:
                start = i
                while i < n and text[i] != ",":
                    i += 1
                value = text[start:i].strip()
            if op == "~=":
                try:
                    regex = re.compile(value)
                except re.error as exc:
                    raise errors.InvalidArgument(f"invalid filter {text!r}: bad regular expression: {exc}") from None
        selectors.append(Selector(tuple(path), op, value, regex))
        while i < n and text[i].isspace():
            i += 1
        if i >= n:
            return tuple(selectors)
        if text[i] != ",":
            raise bad("expected ',' or an operator (==, !=, ~=)")
        i += 1


def parse(filters: Iterable[str] | None) -> Filter:
    """Parse filter strings (OR-ed); None or empty gives the match-all filter."""
    return Filter(tuple(_parse_one(f) for f in (filters or []) if f.strip()))


def labels_adaptor(labels: dict[str, str], fieldpath: list[str]) -> str | None:
    """The common `labels.<key>` part of adaptors; a key may itself contain dots when unquoted."""
    if not fieldpath or fieldpath[0] != "labels":
        return None
    if len(fieldpath) == 1:
        return None
    return labels.get(".".join(fieldpath[1:]))


def object_adaptor(fields: dict[str, Any], labels: dict[str, str] | None = None) -> Adaptor:
    """An adaptor over flat fields plus labels."""

    def adapt(fieldpath: list[str]) -> str | None:
        if fieldpath[0] == "labels" and labels is not None:
            return labels_adaptor(labels, fieldpath)
        if len(fieldpath) == 1 and fieldpath[0] in fields:
            value = fields[fieldpath[0]]
            return None if value is None else str(value)
        return None

    return adapt
