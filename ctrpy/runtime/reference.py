"""Image references, parsed and normalised exactly as docker and containerd do.

    busybox                           -> docker.io/library/busybox:latest
    user/app:1.0                      -> docker.io/user/app:1.0
    localhost:5000/app                -> localhost:5000/app:latest
    ghcr.io/o/app@sha256:<64 hex>     -> ghcr.io/o/app@sha256:<64 hex>
    app:1.0@sha256:<64 hex>           -> docker.io/library/app:1.0@sha256:<64 hex> (the digest wins on pull)

The first path component is a registry host when it contains "." or ":" or is "localhost" (docker's rule);
otherwise the host is docker.io, and a one-component name lives under "library/". Grammar from the
distribution reference package: lowercase path components separated by "/", tags of at most 128 word
characters, digests "<algorithm>:<hex>", whole name at most 255 characters.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ctrpy.runtime import errors

DEFAULT_DOMAIN = "docker.io"
LEGACY_DEFAULT_DOMAIN = "index.docker.io"
DEFAULT_REGISTRY_HOST = "registry-1.docker.io"
OFFICIAL_REPO_PREFIX = "library/"
DEFAULT_TAG = "latest"
NAME_TOTAL_LENGTH_MAX = 255

_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
_PATH_COMPONENT = rf"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_IPV6 = r"\[(?:[a-fA-F0-9:]+)\]"
_DOMAIN = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|{_IPV6})(?::[0-9]+)?"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"

_PATH_RE = re.compile(rf"^{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*$")
_DOMAIN_RE = re.compile(rf"^{_DOMAIN}$")
_TAG_RE = re.compile(rf"^{_TAG}$")
_DIGEST_RE = re.compile(rf"^{_DIGEST}$")
_ANCHORED_ID = re.compile(r"^[a-f0-9]{64}$")


@dataclass(frozen=True)
class Reference:
    """A normalised reference: domain, repository path, optional tag and digest."""

    domain: str
    path: str
    tag: str | None = None
    digest: str | None = None

    @property
    def name(self) -> str:
        """domain/path, the repository's full name."""
        return f"{self.domain}/{self.path}"

    @property
    def object(self) -> str:
        """What to ask the registry for: the digest if any, else the tag."""
        return self.digest or self.tag or DEFAULT_TAG

    def __str__(self) -> str:
        out = self.name
        if self.tag:
            out += f":{self.tag}"
        if self.digest:
            out += f"@{self.digest}"
        return out

    def with_tag(self, tag: str) -> Reference:
        if not _TAG_RE.match(tag):
            raise errors.InvalidArgument(f"invalid tag {tag!r}")
        return Reference(self.domain, self.path, tag, None)

    def familiar(self) -> str:
        """The short form docker prints (busybox:latest)."""
        path = self.path
        if self.domain == DEFAULT_DOMAIN:
            if path.startswith(OFFICIAL_REPO_PREFIX) and path.count("/") == 1:
                path = path[len(OFFICIAL_REPO_PREFIX):]
            out = path
        else:
            out = self.name
        if self.tag:
            out += f":{self.tag}"
        if self.digest:
            out += f"@{self.digest}"
        return out


def _split_domain(name: str) -> tuple[str, str]:
    first, sep, rest = name.partition("/")
    if not sep or ("." not in first and ":" not in first and first != "localhost" and first.lower() == first):
        domain, remainder = DEFAULT_DOMAIN, name
    else:
        domain, remainder = first, rest
    if domain == LEGACY_DEFAULT_DOMAIN:
        domain = DEFAULT_DOMAIN
    if domain == DEFAULT_DOMAIN and "/" not in remainder:
        remainder = OFFICIAL_REPO_PREFIX + remainder
    return domain, remainder


# Digest algorithms ctrpy verifies, with their hex length (OCI image-spec descriptor.md: lowercase hex).
DIGEST_HEX_LENGTHS = {"sha256": 64, "sha512": 128}


def validate_digest(digest: str) -> str:
    """Check an OCI digest: a known algorithm, the right number of lowercase hex digits. The one digest rule:
    references, descriptors and the content store all use it."""
    if not isinstance(digest, str) or ":" not in digest:
        raise errors.InvalidArgument(f"invalid digest {digest!r}: expected <algorithm>:<hex>")
    algorithm, _, hexpart = digest.partition(":")
    if algorithm not in DIGEST_HEX_LENGTHS:
        raise errors.InvalidArgument(f"invalid digest {digest!r}: unsupported digest algorithm {algorithm!r}")
    if not re.fullmatch(r"[0-9a-fA-F]*", hexpart):
        raise errors.InvalidArgument(f"invalid digest {digest!r}: not hexadecimal")
    if hexpart != hexpart.lower():
        raise errors.InvalidArgument(f"invalid digest {digest!r}: hex digits must be lowercase")
    if len(hexpart) != DIGEST_HEX_LENGTHS[algorithm]:
        raise errors.InvalidArgument(
            f"invalid digest {digest!r}: {algorithm} needs {DIGEST_HEX_LENGTHS[algorithm]} hex digits")
    return digest


def parse(ref: str, *, default_tag: bool = True) -> Reference:
    """Parse and normalise `ref`; InvalidArgument with the reason when it is not a valid reference.

    `default_tag`: add ":latest" when neither tag nor digest is given (pull, push); tag/rm keep it too.
    """
    if not isinstance(ref, str) or not ref or ref != ref.strip():
        raise errors.InvalidArgument(f"invalid reference {ref!r}: must be a non-empty name without spaces")
    if _ANCHORED_ID.match(ref):
        raise errors.InvalidArgument(
            f"invalid reference {ref!r}: a 64-hex-digit name is ambiguous with an image ID; use sha256:{ref[:12]}..."
        )
    remainder, digest = ref, None
    if "@" in remainder:
        remainder, _, digest = remainder.partition("@")
        validate_digest(digest)
    name, tag = remainder, None
    # A ":" after the last "/" separates the tag (a ":" before it is a port).
    colon = remainder.rfind(":")
    if colon > remainder.rfind("/"):
        name, tag = remainder[:colon], remainder[colon + 1:]
        if not _TAG_RE.match(tag):
            raise errors.InvalidArgument(f"invalid reference {ref!r}: invalid tag {tag!r}")
    if not name:
        raise errors.InvalidArgument(f"invalid reference {ref!r}: missing repository name")
    domain, path = _split_domain(name)
    if not path:
        raise errors.InvalidArgument(f"invalid reference {ref!r}: missing repository name")
    if not is_registry_host(domain):
        raise errors.InvalidArgument(f"invalid reference {ref!r}: invalid registry host {domain!r}")
    if not _PATH_RE.match(path):
        if path.lower() != path and _PATH_RE.match(path.lower()):
            raise errors.InvalidArgument(f"invalid reference {ref!r}: repository name must be lowercase")
        raise errors.InvalidArgument(f"invalid reference {ref!r}: invalid repository name {path!r}")
    if len(f"{domain}/{path}") > NAME_TOTAL_LENGTH_MAX:
        raise errors.InvalidArgument(
            f"invalid reference {ref!r}: repository name longer than {NAME_TOTAL_LENGTH_MAX} characters"
        )
    if tag is None and digest is None and default_tag:
        tag = DEFAULT_TAG
    return Reference(domain, path, tag, digest)


def normalize(ref: str) -> str:
    """The fully qualified string form: `busybox` -> `docker.io/library/busybox:latest`."""
    return str(parse(ref))


def registry_host(domain: str) -> str:
    """The host that serves `domain`'s registry API (docker.io is served by registry-1.docker.io)."""
    return DEFAULT_REGISTRY_HOST if domain in (DEFAULT_DOMAIN, LEGACY_DEFAULT_DOMAIN) else domain


def is_registry_host(host: str) -> bool:
    """Whether `host` is a registry host as a reference may name one: DNS name, IPv4 or [IPv6], optional port."""
    return _DOMAIN_RE.match(host) is not None


def is_loopback_host(host: str) -> bool:
    """localhost, 127.0.0.0/8 or ::1, with or without a port: where docker allows plain HTTP."""
    bare = host
    if bare.startswith("["):
        bare = bare[1:bare.find("]")]
    elif bare.count(":") == 1:
        bare = bare.split(":")[0]
    return bare == "localhost" or bare.startswith("127.") or bare == "::1"
