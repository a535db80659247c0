"""The bodies of the listing commands, without Click: `images ls`, `containers ls`, `tasks ls`, `ps`.

The Click commands call these; so does the start-up fast path (commands/_root.py), which runs a plain
`ctrpy [global options] images|containers ls [-q]` without importing Click at all (issue 17).
"""

from __future__ import annotations

from ctrpy.commands._text import (
    docker_table, echo, emit_json, format_labels, human_ages, human_size, table,
)

TYPE_CHECKING = False  # no typing at run time: this is the fast path's module (issue 17)
if TYPE_CHECKING:
    from typing import Any


def images_ls(obj: Any, filters: list[str], quiet: bool, fmt: str) -> None:
    client = obj.client
    found: list[Any] = []
    # An empty store needs only one query: the image store's module (dataclasses, filters, content types)
    # costs more start-up than the listing itself (issue 17).
    if filters or _listing().has_images(client.db, client.namespace):
        found = client.images.list(filters)
    if quiet:
        if found:
            echo("\n".join(image.name for image in found))
        return
    rows = []
    if found:
        from ctrpy.runtime import images as rt  # not for an empty store: start-up is the whole cost there
    for image in found:
        rows.append({"name": image.name, "media_type": image.target.media_type, "digest": image.target.digest,
                     "size": rt.image_size(client.content, image),
                     "platforms": rt.image_platforms(client.content, image), "labels": image.labels,
                     "created_at": image.created_at, "updated_at": image.updated_at})
    if fmt == "json":
        emit_json(rows)
        return
    table(["REF", "TYPE", "DIGEST", "SIZE", "PLATFORMS", "LABELS"],
          [[r["name"], r["media_type"], r["digest"], human_size(r["size"]), ",".join(r["platforms"]) or "-",
            format_labels(r["labels"])] for r in rows])


def container_summary(c: Any) -> dict[str, Any]:
    """A container's record without its JSON documents (`containers ls --format json`, `info`)."""
    return {"id": c.id, "image": c.image, "runtime": c.runtime_name, "snapshotter": c.snapshotter,
            "snapshot_key": c.snapshot_key, "labels": c.labels, "created_at": c.created_at,
            "updated_at": c.updated_at}


def _listing() -> Any:
    from ctrpy.runtime.metadata import listing

    return listing


def containers_ls(obj: Any, filters: list[str], quiet: bool, fmt: str) -> None:
    if not filters and fmt != "json":
        # Plain tuples of the printed columns (metadata.listing): no record objects, no store module.
        client = obj.client
        found = _listing().container_rows(client.db, client.namespace)
        if quiet:
            if found:
                echo("\n".join(row[0] for row in found))
        else:
            ages = human_ages([row[3] for row in found])
            table(["CONTAINER", "IMAGE", "RUNTIME", "CREATED"],
                  [(cid, image or "-", runtime, age) for (cid, image, runtime, _), age in zip(found, ages)])
        return
    # Only the listed columns are read (ContainerStore.summaries): no spec is parsed for a table.
    items = obj.client.containers.summaries(filters)
    if quiet:
        if items:
            echo("\n".join(c.id for c in items))
    elif fmt == "json":
        emit_json([container_summary(c) for c in items])
    else:
        ages = human_ages([c.created_at for c in items])
        table(["CONTAINER", "IMAGE", "RUNTIME", "CREATED"],
              [(c.id, c.image or "-", c.runtime_name, age) for c, age in zip(items, ages)])


def print_tasks(states: list[Any], quiet: bool, fmt: str) -> None:
    if quiet:
        if states:
            echo("\n".join(s.id for s in states))
    elif fmt == "json":
        emit_json([s.to_dict() for s in states])
    else:
        rows = []
        for s in states:
            status = s.status.value.upper()
            if s.exit_status is not None:
                status += f" ({s.exit_status}{', OOM killed' if s.oom_killed else ''})"
            rows.append((s.id, s.pid, status))
        table(["TASK", "PID", "STATUS"], rows)


def tasks_ls(obj: Any, filters: list[str], quiet: bool, fmt: str) -> None:
    """`tasks ls` (it takes no filters; the argument keeps the fast path's one signature)."""
    print_tasks(obj.client.tasks.list(), quiet, fmt)


# `ps`'s columns, docker's field names (for --format templates too) -> headers.
PS_HEADERS = {"ID": "CONTAINER ID", "Image": "IMAGE", "Command": "COMMAND", "RunningFor": "CREATED",
              "CreatedAt": "CREATED AT", "Status": "STATUS", "Ports": "PORTS", "Names": "NAMES", "Size": "SIZE",
              "State": "STATE", "Labels": "LABELS"}


def _quote(command: str, width: int) -> str:
    if width and len(command) > width:
        command = command[:width - 1] + "…"
    return f'"{command}"'


def print_ps(rows: list[dict[str, Any]], *, quiet: bool, no_trunc: bool, size: bool) -> None:
    """`ps` as docker prints it: IDs (cut to 12 unless `no_trunc`), or the table (COMMAND cut to 20)."""
    if quiet:
        if rows:
            echo("\n".join(row["ID"] if no_trunc else row["ID"][:12] for row in rows))
        return
    if not no_trunc:
        rows = [{**r, "ID": r["ID"][:12], "Command": _quote(r["Command"], 20)} for r in rows]
    else:
        rows = [{**r, "Command": _quote(r["Command"], 0)} for r in rows]
    columns = ["ID", "Image", "Command", "RunningFor", "Status", "Ports", "Names"] + (["Size"] if size else [])
    docker_table(rows, PS_HEADERS, columns, fit=not no_trunc, keep=("ID", "Names"))


def ps_all(obj: Any, filters: list[str], quiet: bool, fmt: str) -> None:
    """Plain `ps -a [-q]` (the fast path's signature; it passes no filters and the table format)."""
    from ctrpy.runtime import lifecycle

    print_ps(lifecycle.list_containers(obj.client, all=True), quiet=quiet, no_trunc=False, size=False)


def ps_running(obj: Any, filters: list[str], quiet: bool, fmt: str) -> None:
    """Plain `ps [-q]`."""
    from ctrpy.runtime import lifecycle

    print_ps(lifecycle.list_containers(obj.client), quiet=quiet, no_trunc=False, size=False)
