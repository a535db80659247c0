"""The bodies of the listing commands, without Click: `images ls`, `containers ls` and `tasks ls`.

The Click commands call these; so does the start-up fast path (commands/_root.py), which runs a plain
`ctrpy [global options] images|containers ls [-q]` without importing Click at all (issue 17).
"""

from __future__ import annotations

from typing import Any

from ctrpy.commands._text import echo, emit_json, format_labels, human_age, human_size, table


def images_ls(obj: Any, filters: list[str], quiet: bool, fmt: str) -> None:
    client = obj.client
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


def containers_ls(obj: Any, filters: list[str], quiet: bool, fmt: str) -> None:
    # Only the listed columns are read (ContainerStore.summaries): no spec is parsed for a table.
    items = obj.client.containers.summaries(filters)
    if quiet:
        if items:
            echo("\n".join(c.id for c in items))
    elif fmt == "json":
        emit_json([container_summary(c) for c in items])
    else:
        table(["CONTAINER", "IMAGE", "RUNTIME", "CREATED"],
              [(c.id, c.image or "-", c.runtime_name, human_age(c.created_at)) for c in items])


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
