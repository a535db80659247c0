"""Name resolution between containers on user-defined networks, as nerdctl does it: every container attached
to a network created with `network create` gets its peers' names (and short IDs) in its /etc/hosts, rewritten
in place (the file is bind-mounted, so the inode must stay) whenever a container joins or leaves.

The default `bridge` network gets no peer entries, as with docker.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ctrpy.runtime import errors

if TYPE_CHECKING:
    from ctrpy.runtime.client import Client

MARK = "# ctrpy: peers on user-defined networks (rewritten on attach and detach)\n"


def wants_peers(network: str | None) -> bool:
    """True for a user-defined network name (not the default bridge, host, none or container:...)."""
    return bool(network) and network not in ("bridge", "host", "none") and not str(network).startswith("container:")


def refresh(client: Client) -> None:
    """Rewrite the peer section of /etc/hosts in every running container of this namespace that is attached
    to a user-defined network."""
    from ctrpy.runtime.names import NAME_LABEL
    from ctrpy.runtime.network import network_store

    store = network_store(client)
    attachments = [a for a in store.attachments(client.namespace) if a.netns and a.network != "bridge"
                   and a.address]
    if not attachments:
        return
    names: dict[str, str] = {}
    for a in attachments:
        try:
            c = client.containers.get(a.container_id)
        except errors.NotFound:
            continue
        names[a.container_id] = c.labels.get(NAME_LABEL) or c.id
    by_network: dict[str, list[Any]] = {}
    for a in attachments:
        by_network.setdefault(a.network, []).append(a)
    for cid in {a.container_id for a in attachments}:
        lines = []
        for _network, members in sorted(by_network.items()):
            if not any(m.container_id == cid for m in members):
                continue
            for m in members:
                if m.container_id != cid and m.container_id in names:
                    aliases = [names[m.container_id]] + ([m.container_id[:12]] if names[m.container_id] !=
                                                         m.container_id else [])
                    lines.append(f"{m.address}\t{' '.join(aliases)}\n")
        _rewrite(client.tasks.dir(cid).etc / "hosts", lines)


def _rewrite(path: Any, lines: list[str]) -> None:
    try:
        with open(path, "r+") as f:
            text = f.read()
            base = text.split(MARK, 1)[0]
            f.seek(0)
            f.truncate()
            f.write(base + (MARK + "".join(lines) if lines else ""))
    except FileNotFoundError:
        pass
