"""Container names and IDs the way docker and nerdctl users type them.

A container created by the docker-shaped `run`/`create` gets a random 64-hex ID and a name (`--name`, or a
generated docker-like `adjective_surname`), kept in the label NAME_LABEL. Every command that names a container
goes through `resolve()`, which accepts, in this order: the exact ID, a name, a unique ID prefix. ctr-shaped
containers (`containers create IMAGE ID`) have no name label: their ID is their name.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ctrpy.runtime import errors

if TYPE_CHECKING:
    from ctrpy.runtime.client import Client

NAME_LABEL = "ctrpy.io/name"
# docker's rule for names (containers and volumes): [a-zA-Z0-9][a-zA-Z0-9_.-]*
NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")

# A short version of docker's namesgenerator lists (moby/pkg/namesgenerator).
_LEFT = ("admiring", "brave", "clever", "dazzling", "eager", "festive", "gallant", "happy", "inspiring",
         "jolly", "keen", "laughing", "modest", "nifty", "optimistic", "peaceful", "quirky", "relaxed",
         "sharp", "tender", "upbeat", "vibrant", "wizardly", "xenodochial", "youthful", "zealous")
_RIGHT = ("albattani", "babbage", "curie", "darwin", "euclid", "feynman", "goldberg", "hopper", "hypatia",
          "johnson", "kepler", "lovelace", "mccarthy", "noether", "pasteur", "ritchie", "shannon", "thompson",
          "turing", "varahamihira", "wozniak", "yalow", "zhukovsky")


def generate_id() -> str:
    """A docker-style container ID: 64 lowercase hex digits."""
    return os.urandom(32).hex()


def validate_name(name: str) -> str:
    if not NAME_RE.match(name) or len(name) > 128:
        raise errors.InvalidArgument(
            f"invalid container name {name!r}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
    return name


def name_of(container: Any) -> str:
    """The container's name: its name label, else (ctr-shaped containers) its ID."""
    return str(container.labels.get(NAME_LABEL) or container.id)


def _names_in_use(client: Client) -> dict[str, str]:
    return {name_of(c): c.id for c in client.containers.list()}


def generate_name(client: Client) -> str:
    """A free docker-like name (`brave_turing`), with a number appended once the pairs run short."""
    used = _names_in_use(client)
    for attempt in range(100):
        left = _LEFT[int.from_bytes(os.urandom(2), "big") % len(_LEFT)]
        right = _RIGHT[int.from_bytes(os.urandom(2), "big") % len(_RIGHT)]
        name = f"{left}_{right}" + (str(attempt) if attempt >= 10 else "")
        if name not in used:
            return name
    raise errors.Internal("could not generate a free container name")


def check_name_free(client: Client, name: str) -> None:
    used = _names_in_use(client)
    if name in used:
        raise errors.AlreadyExists(
            f"the container name {name!r} is already in use by container {used[name][:12]}: "
            f"remove it (`ctrpy rm {name}`) or pick another name")


@contextlib.contextmanager
def name_lock(client: Client) -> Iterator[None]:
    """Serialise name checks with the creates that follow them (one flock per root and namespace)."""
    import fcntl

    Path(client.root).mkdir(parents=True, exist_ok=True)
    path = Path(client.root) / f".names-{client.namespace}.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def resolve(client: Client, ref: str) -> str:
    """The ID of the container `ref` names: its full ID, its name, or a unique prefix of its ID."""
    try:
        return str(client.containers.get(ref).id)
    except errors.NotFound:
        pass
    except errors.InvalidArgument:
        pass
    containers = client.containers.list()
    for c in containers:
        if c.labels.get(NAME_LABEL) == ref:
            return str(c.id)
    if ref:
        matches = [c.id for c in containers if c.id.startswith(ref)]
        if len(matches) == 1:
            return str(matches[0])
        if len(matches) > 1:
            raise errors.InvalidArgument(
                f"{ref!r} matches {len(matches)} containers: give more of the ID or the name")
    raise errors.NotFound(f"no such container: {ref}")


def resolve_container(client: Client, ref: str) -> Any:
    """The container record `ref` names (see `resolve`)."""
    return client.containers.get(resolve(client, ref))


def rename(client: Client, ref: str, new_name: str) -> None:
    validate_name(new_name)
    container = resolve_container(client, ref)
    if name_of(container) == new_name:
        return
    check_name_free(client, new_name)
    container.labels = {**container.labels, NAME_LABEL: new_name}
    client.containers.update(container, [f"labels.{NAME_LABEL}"])
