"""`ctrpy snapshots`: inspect and manage snapshots, like `ctr snapshots`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from ctrpy.commands._kinds import DIR, kind
from ctrpy.commands._output import (
    AliasGroup,
    emit_json,
    format_labels,
    format_option,
    human_size,
    json_format_option,
    parse_labels,
    quiet_option,
    table,
)


def snapshotter_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    """--snapshotter NAME (default: the configured default_snapshotter)."""
    return click.option("--snapshotter", envvar="CTRPY_SNAPSHOTTER", default=None, metavar="NAME",
                        help="Snapshotter to use (overlayfs, native)  [env: CTRPY_SNAPSHOTTER; "
                             "default: config default_snapshotter]")(fn)


def _sn(obj: Any, name: str | None) -> Any:
    # `snapshots --snapshotter X ls` (ctr's position) and `snapshots ls --snapshotter X` both work.
    return obj.client.snapshotter(name or click.get_current_context().meta.get("ctrpy.snapshotter"))


def _print_mounts(mounts: list[Any], target: str) -> None:
    for m in mounts:
        click.echo(m.command(target))


@click.group(cls=AliasGroup)
@snapshotter_option
@click.pass_context
def snapshots(ctx: click.Context, snapshotter: str | None) -> None:
    """Manage snapshots.

    \b
    Examples:
      ctrpy snapshots ls
      ctrpy snapshots --snapshotter native tree
    """
    ctx.meta["ctrpy.snapshotter"] = snapshotter


@snapshots.command("ls")
@click.argument("filters", nargs=-1)
@snapshotter_option
@quiet_option
@format_option
@click.pass_obj
def ls(obj: Any, filters: tuple[str, ...], snapshotter: str | None, quiet: bool, fmt: str) -> None:
    """List snapshots (FILTERS like 'kind==committed', 'labels."k"==v', 'parent==KEY').

    \b
    Examples:
      ctrpy snapshots ls
      ctrpy snapshots ls -q kind==active
      ctrpy snapshots ls --snapshotter native --format json
    """
    items = _sn(obj, snapshotter).list(*filters)
    if quiet:
        for info in items:
            click.echo(info.name)
    elif fmt == "json":
        emit_json([info.to_dict() for info in items])
    else:
        table(["KEY", "PARENT", "KIND"], [(i.name, i.parent, str(i.kind)) for i in items])


@snapshots.command("info")
@click.argument("key")
@snapshotter_option
@json_format_option
@click.pass_obj
def info(obj: Any, key: str, snapshotter: str | None, fmt: str) -> None:
    """Show a snapshot's kind, parent, labels and times as JSON.

    \b
    Examples:
      ctrpy snapshots info my-snapshot
      ctrpy snapshots info --snapshotter native --format json my-snapshot
    """
    emit_json(_sn(obj, snapshotter).stat(key).to_dict())


@snapshots.command("prepare")
@click.argument("key")
@click.argument("parent", required=False, default="")
@click.option("--target", default="/tmp/mnt", show_default=True, help="Mount target shown by --mounts")
@click.option("--mounts", "show_mounts", is_flag=True, help="Print the mount commands of the new snapshot")
@click.option("--label", "labels", multiple=True, metavar="KEY=VALUE", help="Label the snapshot")
@snapshotter_option
@click.pass_obj
def prepare(obj: Any, key: str, parent: str, target: str, show_mounts: bool, labels: tuple[str, ...],
            snapshotter: str | None) -> None:
    """Create an active (writable) snapshot KEY on top of committed PARENT.

    \b
    Examples:
      ctrpy snapshots prepare scratch
      ctrpy snapshots prepare --mounts --target /mnt/work work "$(ctrpy images unpack busybox:latest)"
    """
    mounts = _sn(obj, snapshotter).prepare(key, parent, labels=parse_labels(labels))
    if show_mounts:
        _print_mounts(mounts, target)


@snapshots.command("view")
@click.argument("key")
@click.argument("parent", required=False, default="")
@click.option("--target", default="/tmp/mnt", show_default=True, help="Mount target shown by --mounts")
@click.option("--mounts", "show_mounts", is_flag=True, help="Print the mount commands of the new view")
@click.option("--label", "labels", multiple=True, metavar="KEY=VALUE", help="Label the snapshot")
@snapshotter_option
@click.pass_obj
def view(obj: Any, key: str, parent: str, target: str, show_mounts: bool, labels: tuple[str, ...],
         snapshotter: str | None) -> None:
    """Create a read-only view KEY of committed PARENT.

    \b
    Examples:
      ctrpy snapshots view --mounts --target /mnt/ro ro-view base
      ctrpy snapshots view --label purpose=debug ro-view2 base
    """
    mounts = _sn(obj, snapshotter).view(key, parent, labels=parse_labels(labels))
    if show_mounts:
        _print_mounts(mounts, target)


@snapshots.command("commit")
@click.argument("name", shell_complete=kind())
@click.argument("key")
@click.option("--label", "labels", multiple=True, metavar="KEY=VALUE", help="Label the committed snapshot")
@snapshotter_option
@click.pass_obj
def commit(obj: Any, name: str, key: str, labels: tuple[str, ...], snapshotter: str | None) -> None:
    """Commit active snapshot KEY as NAME (KEY is gone afterwards).

    \b
    Examples:
      ctrpy snapshots commit base scratch
      ctrpy snapshots commit --label app=web layer-2 work
    """
    _sn(obj, snapshotter).commit(name, key, labels=parse_labels(labels))


@snapshots.command("rm")
@click.argument("keys", nargs=-1, required=True)
@snapshotter_option
@click.pass_obj
def rm(obj: Any, keys: tuple[str, ...], snapshotter: str | None) -> None:
    """Remove snapshots (refused while one has children or is a container's root).

    \b
    Examples:
      ctrpy snapshots rm scratch
      ctrpy snapshots ls -q kind==active | xargs -r ctrpy snapshots rm
    """
    sn = _sn(obj, snapshotter)
    for key in keys:
        sn.remove(key)
        click.echo(key)


@snapshots.command("mounts")
@click.argument("target", shell_complete=kind(DIR))
@click.argument("key")
@snapshotter_option
@click.pass_obj
def mounts(obj: Any, target: str, key: str, snapshotter: str | None) -> None:
    """Print the mount command that mounts active or view snapshot KEY on TARGET.

    \b
    Examples:
      ctrpy snapshots mounts /mnt/work work
      ctrpy snapshots mounts /mnt/work work | sh
    """
    _print_mounts(_sn(obj, snapshotter).mounts(key), target)


@snapshots.command("usage")
@click.argument("key", required=False)
@snapshotter_option
@format_option
@click.pass_obj
def usage(obj: Any, key: str | None, snapshotter: str | None, fmt: str) -> None:
    """Disk usage (size, inodes) of one snapshot's own layer, or of every snapshot.

    \b
    Examples:
      ctrpy snapshots usage
      ctrpy snapshots usage --format json work
    """
    sn = _sn(obj, snapshotter)
    keys = [key] if key else [i.name for i in sn.list()]
    rows = [(k, sn.usage(k)) for k in keys]
    if fmt == "json":
        emit_json([{"key": k, "size": u.size, "inodes": u.inodes} for k, u in rows])
    else:
        table(["KEY", "SIZE", "INODES"], [(k, human_size(u.size), u.inodes) for k, u in rows])


@snapshots.command("tree")
@snapshotter_option
@click.pass_obj
def tree(obj: Any, snapshotter: str | None) -> None:
    """Show snapshots as a tree of parents and children.

    \b
    Examples:
      ctrpy snapshots tree
      ctrpy snapshots tree --snapshotter native
    """
    items = _sn(obj, snapshotter).list()
    children: dict[str, list[str]] = {}
    for i in items:
        children.setdefault(i.parent, []).append(i.name)

    def show(name: str, depth: int) -> None:
        click.echo(("  " * (depth - 1) + "\\_ " if depth else "") + name)
        for child in sorted(children.get(name, [])):
            show(child, depth + 1)

    for root in sorted(children.get("", [])):
        show(root, 0)


@snapshots.command("label")
@click.argument("key")
@click.argument("labels", nargs=-1)
@snapshotter_option
@click.pass_obj
def label(obj: Any, key: str, labels: tuple[str, ...], snapshotter: str | None) -> None:
    """Set labels on KEY (KEY=VALUE; KEY= or KEY removes it) and print the resulting labels.

    \b
    Examples:
      ctrpy snapshots label work app=web
      ctrpy snapshots label work app=
    """
    sn = _sn(obj, snapshotter)
    current = sn.stat(key)
    wanted = parse_labels(labels)
    merged = dict(current.labels)
    for k, v in wanted.items():
        if v:
            merged[k] = v
        else:
            merged.pop(k, None)
    from ctrpy.runtime.snapshots import Info

    info_ = sn.update(Info(current.kind, key, current.parent, merged), *(f"labels.{k}" for k in wanted))
    click.echo(format_labels(info_.labels))

