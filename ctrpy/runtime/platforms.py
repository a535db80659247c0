"""Platforms as containerd's platforms package handles them: parse, normalise, format, match.

A specifier is "os[/arch[/variant]]" or "arch[/variant]" ("linux/arm64/v8", "arm64", "linux"). Architectures
are normalised (x86_64 -> amd64, aarch64 -> arm64, armhf -> arm/v7, armel -> arm/v6, i386 -> 386), arm64's
"v8" variant is dropped (it is the only one), arm without a variant means v7.

Matching (`Matcher`) follows containerd's `Only`: a platform matches itself and the platforms it can run, in
order of preference: arm/v7 also runs v6 and v5; arm64 runs arm64/v8 images and (as containerd) arm/v7..v5;
amd64 runs amd64 and 386. `Matcher.less` orders candidates so the best match comes first.
"""

from __future__ import annotations

import platform as _platform
from dataclasses import dataclass
from typing import Any

from ctrpy.runtime import errors

_OS_ALIASES = {"macos": "darwin"}
_ARCH_ALIASES = {
    "x86_64": ("amd64", ""),
    "x86-64": ("amd64", ""),
    "amd64": ("amd64", ""),
    "i386": ("386", ""),
    "i686": ("386", ""),
    "386": ("386", ""),
    "aarch64": ("arm64", ""),
    "arm64": ("arm64", ""),
    "armhf": ("arm", "v7"),
    "armel": ("arm", "v6"),
    "arm": ("arm", ""),
    "ppc64le": ("ppc64le", ""),
    "s390x": ("s390x", ""),
    "riscv64": ("riscv64", ""),
    "mips64le": ("mips64le", ""),
    "loong64": ("loong64", ""),
}
_KNOWN_OS = {"linux", "windows", "darwin", "freebsd", "netbsd", "openbsd", "solaris", "illumos", "android",
             "ios", "js", "wasip1", "aix", "plan9", "dragonfly"}


@dataclass(frozen=True)
class Platform:
    """An OCI platform: os, architecture, variant (normalised)."""

    os: str
    architecture: str
    variant: str = ""

    def __str__(self) -> str:
        return format_platform(self)

    def to_dict(self) -> dict[str, str]:
        out = {"os": self.os, "architecture": self.architecture}
        if self.variant:
            out["variant"] = self.variant
        return out


def normalize(os_: str, arch: str, variant: str = "") -> Platform:
    os_ = _OS_ALIASES.get(os_.lower(), os_.lower())
    arch_l, variant = arch.lower(), (variant or "").lower()
    arch_n, implied = _ARCH_ALIASES.get(arch_l, (arch_l, ""))
    if implied and not variant:
        variant = implied
    if arch_n == "arm64" and variant in ("8", "v8", "v8.0"):
        variant = ""
    elif arch_n == "arm":
        if variant in ("", "7"):
            variant = "v7"
        elif variant in ("5", "6", "8"):
            variant = "v" + variant
    elif arch_n == "amd64" and variant == "v1":
        variant = ""
    return Platform(os_, arch_n, variant)


def from_dict(d: dict[str, Any] | None) -> Platform | None:
    if not d:
        return None
    return normalize(str(d.get("os", "")), str(d.get("architecture", "")), str(d.get("variant", "") or ""))


def host() -> Platform:
    """The platform of this machine (containerd's DefaultSpec)."""
    machine = _platform.machine()
    variant = ""
    if machine.startswith("armv"):
        variant = "v" + machine[4]
        machine = "arm"
    return normalize("linux", machine, variant)


def parse(spec: str) -> Platform:
    """Parse a specifier; InvalidArgument for anything containerd would reject."""
    parts = spec.strip().split("/") if spec else []
    if not parts or any(not p for p in parts) or len(parts) > 3:
        raise errors.InvalidArgument(f"invalid platform {spec!r}: expected os[/arch[/variant]]")
    if len(parts) == 1:
        word = parts[0].lower()
        if word in _KNOWN_OS:
            return normalize(word, host().architecture, host().variant if host().architecture == "arm" else "")
        if word in _ARCH_ALIASES:
            return normalize("linux", word)
        raise errors.InvalidArgument(f"invalid platform {spec!r}: unknown operating system or architecture")
    if len(parts) == 2:
        a, b = parts[0].lower(), parts[1].lower()
        if a in _KNOWN_OS:
            return normalize(a, b)
        if a in _ARCH_ALIASES:
            return normalize("linux", a, b)
        raise errors.InvalidArgument(f"invalid platform {spec!r}: unknown operating system {a!r}")
    a = parts[0].lower()
    if a not in _KNOWN_OS:
        raise errors.InvalidArgument(f"invalid platform {spec!r}: unknown operating system {a!r}")
    return normalize(a, parts[1], parts[2])


def format_platform(p: Platform) -> str:
    return "/".join(x for x in (p.os, p.architecture, p.variant) if x)


def _compatible(p: Platform) -> list[Platform]:
    """p and what p can run, best first (containerd's platformVector)."""
    out = [p]
    if p.architecture == "arm" and p.variant.startswith("v") and p.variant[1:].isdigit():
        for v in range(int(p.variant[1:]) - 1, 4, -1):
            out.append(Platform(p.os, "arm", f"v{v}"))
    elif p.architecture == "arm64":
        out += [Platform(p.os, "arm", f"v{v}") for v in (8, 7, 6, 5)]
    elif p.architecture == "amd64":
        variant = int(p.variant[1:]) if p.variant.startswith("v") and p.variant[1:].isdigit() else 1
        out += [Platform(p.os, "amd64", f"v{v}" if v > 1 else "") for v in range(variant - 1, 0, -1)]
        out.append(Platform(p.os, "386", ""))
    return out


class Matcher:
    """Matches platforms a given platform can run (containerd's platforms.Only), with a preference order."""

    def __init__(self, want: Platform) -> None:
        self.want = want
        self.vector = _compatible(want)

    def match(self, p: Platform | dict[str, Any] | None) -> bool:
        return self.rank(p) is not None

    def rank(self, p: Platform | dict[str, Any] | None) -> int | None:
        plat = from_dict(p) if isinstance(p, dict) else p
        if plat is None:
            return None
        for i, candidate in enumerate(self.vector):
            if plat == candidate:
                return i
        return None

    def __repr__(self) -> str:
        return f"Matcher({format_platform(self.want)})"


class Any_:
    """Matches every platform (--all-platforms)."""

    def match(self, p: Any) -> bool:
        return True

    def rank(self, p: Any) -> int:
        return 0


class Exact:
    """Matches exactly the given platforms (push --platform / several --platform flags), any order."""

    def __init__(self, wants: list[Platform]) -> None:
        self.wants = wants
        self.matchers = [Matcher(w) for w in wants]

    def match(self, p: Any) -> bool:
        return self.rank(p) is not None

    def rank(self, p: Any) -> int | None:
        ranks = [r for r in (m.rank(p) for m in self.matchers) if r is not None]
        return min(ranks) if ranks else None


def matcher_for(specs: list[str] | tuple[str, ...] | None, all_platforms: bool = False) -> Any:
    """The matcher for --platform flags: none -> host, several -> any of them, --all-platforms -> all."""
    if all_platforms:
        return Any_()
    if not specs:
        return Matcher(host())
    wants = [parse(s) for s in specs]
    return Matcher(wants[0]) if len(wants) == 1 else Exact(wants)
