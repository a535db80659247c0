"""`ctrpy gc`: reclaim content, snapshots, ingests and leftovers no image, container or lease holds."""

from __future__ import annotations

from typing import Any

import click

from ctrpy.commands._output import emit_json, format_option, human_size, table


@click.command("gc")
@click.option("--dry-run", is_flag=True, help="Only show what would be removed")
@format_option
@click.pass_obj
def gc(obj: Any, dry_run: bool, fmt: str) -> None:
    """Free blobs, snapshots and ingests that no image, container or live lease holds (all namespaces).

    Also deletes expired leases and unmounts what killed unpacks left below ROOT/tmpmounts. Kept: images
    and their content, containers and their snapshots, live leases, objects labelled containerd.io/gc.root,
    snapshots in use. `images rm` removes only the name; `gc` frees the disk.

    \b
    Examples:
      ctrpy images rm docker.io/library/busybox:latest && ctrpy gc
      ctrpy gc --dry-run
      ctrpy gc --format json
    """
    from ctrpy.runtime.gc import collect

    report = collect(obj.client, dry_run=dry_run)
    for warning in report.warnings:
        click.echo(f"ctrpy: warning: {warning}", err=True)
    if fmt == "json":
        emit_json(report.to_dict())
        return
    if report.removed:
        table(["TYPE", "NAMESPACE", "ID", "SIZE"],
              [(r.type, r.namespace or "-", r.id, human_size(r.size) if r.frees else "-") for r in report.removed])
    verb = "would free" if dry_run else "freed"
    count = len(report.removed)
    click.echo(f"{verb} {human_size(report.bytes_freed)} ({count} item{'s' if count != 1 else ''} "
               f"{'to remove' if dry_run else 'removed'}) in {report.seconds:.2f} s")
