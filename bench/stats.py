"""Interleaved repetition and the numbers a comparison reports: median, min, max, paired median ratio.

Sides run round-robin (A B C A B C ...), so slow drift of a noisy machine hits every side alike; the ratio of
two sides is the median of their per-round ratios, which cancels most of that drift.
"""

from __future__ import annotations

import statistics
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from bench.cleanup import log


class Unavailable(Exception):
    """A side cannot be measured here; the message is one line saying why."""


def one_line(text: str, limit: int = 160) -> str:
    lines = [ln.strip() for ln in (text or "").strip().splitlines() if ln.strip()]
    line = lines[-1] if lines else "no output"
    return line if len(line) <= limit else line[: limit - 3] + "..."


def run_checked(argv: Sequence[str], *, env: dict[str, str] | None = None, timeout: float = 300,
                what: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run `argv`; a non-zero exit raises Unavailable with the command's last stderr line."""
    try:
        result = subprocess.run(list(argv), capture_output=True, text=True, env=env, timeout=timeout,
                                stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise Unavailable(f"{what or argv[0]}: timed out after {timeout:.0f}s") from None
    except FileNotFoundError:
        raise Unavailable(f"{argv[0]}: not installed") from None
    if result.returncode != 0:
        raise Unavailable(f"{what or ' '.join(argv[:3])}: exit {result.returncode}: "
                          f"{one_line(result.stderr or result.stdout)}")
    return result


def timed(argv: Sequence[str], *, env: dict[str, str] | None = None, timeout: float = 300,
          what: str | None = None) -> float:
    """Wall time of one successful run, in seconds."""
    t0 = time.perf_counter()
    run_checked(argv, env=env, timeout=timeout, what=what)
    return time.perf_counter() - t0


@dataclass
class Side:
    """One contestant of a comparison. `measure(i)` returns a value (seconds, bytes...) for round i."""

    name: str
    measure: Callable[[int], float]
    prepare: Callable[[], None] | None = None  # once, before round 0 (warm-up / probe)
    between: Callable[[], None] | None = None  # after every round, untimed (e.g. remove what was pulled)
    samples: list[float] = field(default_factory=list)
    reason: str | None = None  # set when the side is not available
    group: str = ""  # sides of one group ran interleaved with each other

    @property
    def ok(self) -> bool:
        return self.reason is None and bool(self.samples)


@dataclass
class Comparison:
    """A measured table: sides, the unit of their values, and the ratios the issue sets targets for."""

    title: str
    unit: str  # "ms", "s", "MB"
    sides: list[Side]
    ratios: list[tuple[str, str, str]] = field(default_factory=list)  # (numerator, denominator, target text)
    notes: list[str] = field(default_factory=list)
    command: str = ""
    key: str = ""  # short label for the summary table

    def side(self, name: str) -> Side | None:
        return next((s for s in self.sides if s.name == name), None)

    def median(self, name: str) -> float | None:
        side = self.side(name)
        return statistics.median(side.samples) if side and side.ok else None

    def ratio(self, num: str, den: str) -> float | None:
        """Median of per-round ratios when both sides have the same rounds, else ratio of medians."""
        a, b = self.side(num), self.side(den)
        if not (a and b and a.ok and b.ok):
            return None
        if a.group == b.group and len(a.samples) == len(b.samples):
            return statistics.median(x / y for x, y in zip(a.samples, b.samples) if y > 0)
        return statistics.median(a.samples) / statistics.median(b.samples)


def interleave(sides: list[Side], reps: int, *, label: str = "", budget: float | None = None,
               min_reps: int = 3) -> int:
    """Run every available side once per round, `reps` rounds, in a fixed order (A B A B ...).

    With a `budget` in seconds, the rounds are cut (never below `min_reps`) when the first round shows that
    `reps` of them would not fit, so that the whole run stays within its time limit. Returns the rounds run."""
    started = time.monotonic()
    for side in sides:
        if side.prepare and side.reason is None:
            try:
                side.prepare()
            except Unavailable as exc:
                side.reason = str(exc)
            except Exception as exc:  # a broken side must not stop the others
                side.reason = f"{type(exc).__name__}: {one_line(str(exc))}"
    rounds = 0
    i = 0
    while i < reps:
        for side in sides:
            if side.reason is not None:
                continue
            try:
                side.samples.append(side.measure(i))
            except Unavailable as exc:
                side.reason = str(exc)
            except Exception as exc:
                side.reason = f"{type(exc).__name__}: {one_line(str(exc))}"
            if side.between is not None:
                try:
                    side.between()
                except Exception as exc:
                    side.reason = side.reason or f"cleanup between rounds failed: {one_line(str(exc))}"
        i += 1
        rounds = i
        if i == 1 and budget is not None:
            per_round = time.monotonic() - started
            fit = max(min_reps, int(budget / max(per_round, 1e-3)))
            if fit < reps:
                log(f"bench: {label or 'comparison'}: {per_round:.1f}s per round, {fit} rounds fit the budget")
                reps = fit
    for side in sides:
        if side.reason is not None:
            # A side that failed part-way reports nothing: a partial series would not be comparable.
            side.samples.clear()
    if label:
        log(f"bench: {label}: " + ", ".join(
            f"{s.name}={statistics.median(s.samples):.4g}" if s.ok else f"{s.name}=n/a" for s in sides))
    return rounds


def fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "ms":
        return f"{value * 1000:.1f}"
    if unit == "s":
        return f"{value:.2f}"
    if unit == "MB":
        return f"{value / 1e6:.2f}"
    return f"{value:.3g}"


def render(comp: Comparison) -> list[str]:
    """The comparison as Markdown lines (also printed to the terminal)."""
    out = [f"### {comp.title}", ""]
    if comp.command:
        out += [f"Command: `{comp.command}`", ""]
    out += [f"| side | median ({comp.unit}) | min | max | n |", "|---|---:|---:|---:|---:|"]
    for s in comp.sides:
        if s.ok:
            out.append(f"| {s.name} | {fmt(statistics.median(s.samples), comp.unit)} | "
                       f"{fmt(min(s.samples), comp.unit)} | {fmt(max(s.samples), comp.unit)} | {len(s.samples)} |")
        else:
            out.append(f"| {s.name} | not available ({s.reason}) | | | |")
    if comp.ratios:
        out.append("")
        for num, den, target in comp.ratios:
            r = comp.ratio(num, den)
            verdict = ""
            if r is not None and target:
                verdict = " (meets target)" if meets(r, target) else " (misses target)"
            shown = f"{r:.2f}x" if r is not None else "n/a"
            a, b = comp.median(num), comp.median(den)
            of_medians = f" (ratio of medians {a / b:.2f}x)" if a is not None and b else ""
            out.append(f"- {num} / {den}: **{shown}**{of_medians}{' [target ' + target + ']' if target else ''}"
                       f"{verdict}")
    for note in comp.notes:
        out.append(f"- {note}")
    out.append("")
    return out


def meets(ratio: float, target: str) -> bool:
    try:
        limit = float(target.replace("<=", "").replace("x", "").strip())
    except ValueError:
        return True
    return ratio <= limit


def rounds_note(done: int, wanted: int) -> list[str]:
    if done < wanted:
        return [f"{done} rounds instead of {wanted}: fewer fit this measure's share of the ~15 minute budget"]
    return []


def as_dict(comp: Comparison) -> dict[str, Any]:
    return {"title": comp.title, "unit": comp.unit, "command": comp.command, "notes": comp.notes,
            "sides": [{"name": s.name, "samples": s.samples, "reason": s.reason} for s in comp.sides],
            "ratios": [{"num": n, "den": d, "target": t, "value": comp.ratio(n, d)} for n, d, t in comp.ratios]}
