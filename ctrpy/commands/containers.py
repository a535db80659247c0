"""`ctrpy containers`: container metadata (create/ls/info/rm/label), like `ctr containers`.

The container flags are shared with `ctrpy run` through `container_flags` and `options_from_flags`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import click

from ctrpy.commands._netopts import network_options, network_request
from ctrpy.commands._output import AliasGroup, emit_json, format_option, json_format_option, parse_labels, quiet_option

_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?\s*$", re.IGNORECASE)


def parse_size(text: str) -> int:
    """Bytes from `1048576`, `64m`, `1.5g`, `512KiB`."""
    match = _SIZE_RE.match(text)
    if not match:
        raise click.BadParameter(f"invalid size {text!r} (examples: 67108864, 64m, 1g)")
    number, unit = match.groups()
    return int(float(number) * 1024 ** "bkmgt".index(unit.lower() or "b"))


def container_flags(fn: Callable[..., Any]) -> Callable[..., Any]:
    """ctr's container flags (create and run)."""
    decorators = [
        click.option("--env", "-e", "env", multiple=True, metavar="KEY=VALUE", help="Set an environment variable"),
        click.option("--env-file", multiple=True, type=click.Path(), help="Read environment variables from a file"),
        click.option("--label", "labels", multiple=True, metavar="KEY=VALUE", help="Set a container label"),
        click.option("--cwd", default="", help="Working directory of the process"),
        click.option("--user", "-u", default="", help="User name or uid[:gid] (resolved in the rootfs)"),
        click.option("--mount", "mounts", multiple=True,
                     metavar="type=bind,src=DIR,dst=DIR,options=ro", help="Add a mount"),
        click.option("--tty", "-t", is_flag=True, help="Allocate a terminal"),
        click.option("--rootfs", default="", metavar="DIR", help="Use DIR as the root filesystem (no image)"),
        click.option("--snapshotter", default="", help="Snapshotter for the rootfs (default from config)"),
        click.option("--platform", default="", metavar="OS/ARCH[/VARIANT]",
                     help="Platform of the image to run (default: this host's)"),
        click.option("--runtime", default="", help="Runtime: ctrpy, runc, crun or a configured name"),
        click.option("--hostname", default="", help="Container host name (default: the container id)"),
        click.option("--read-only", is_flag=True, help="Mount the rootfs read-only"),
        click.option("--privileged", is_flag=True, help="All capabilities, no masked paths, all devices"),
        click.option("--cap-add", multiple=True, help="Add a capability (e.g. CAP_SYS_ADMIN, or ALL)"),
        click.option("--cap-drop", multiple=True, help="Drop a capability (or ALL)"),
        click.option("--memory-limit", default=None, metavar="BYTES", help="Memory limit (e.g. 67108864 or 64m)"),
        click.option("--cpus", type=float, default=None, help="CPU quota in CPUs (e.g. 0.5)"),
        click.option("--cpu-shares", type=int, default=None, help="CPU shares (relative weight)"),
        click.option("--pids-limit", type=int, default=None, help="Maximum number of processes"),
        click.option("--net-host", is_flag=True, help="Use the host's network namespace"),
    ]
    for decorator in reversed(decorators):
        fn = decorator(fn)
    return network_options(fn)


def options_from_flags(container_id: str, image: str, args: tuple[str, ...], flags: dict[str, Any]) -> Any:
    from ctrpy.runtime.containers import ContainerOptions

    memory = flags.get("memory_limit")
    return ContainerOptions(
        id=container_id, image=image, rootfs=flags.get("rootfs") or "", args=list(args), env=list(flags["env"]),
        env_files=list(flags["env_file"]), labels=parse_labels(flags["labels"]), cwd=flags["cwd"],
        user=flags["user"], mounts=list(flags["mounts"]), tty=flags["tty"], snapshotter=flags["snapshotter"],
        runtime=flags["runtime"], hostname=flags["hostname"], read_only=flags["read_only"],
        privileged=flags["privileged"], cap_add=list(flags["cap_add"]), cap_drop=list(flags["cap_drop"]),
        memory_limit=parse_size(memory) if memory is not None else None, cpus=flags["cpus"],
        cpu_shares=flags["cpu_shares"], pids_limit=flags["pids_limit"], net_host=flags["net_host"],
        platform=flags.get("platform") or "",
        network=network_request(network=flags["network"], ip=flags["ip"], publish=flags["publish"],
                                add_host=flags["add_host"], dns=flags["dns"], dns_search=flags["dns_search"],
                                dns_option=flags["dns_option"], net_host=flags["net_host"]),
    )


def split_image_id(rootfs: str, positional: tuple[str, ...]) -> tuple[str, str, tuple[str, ...]]:
    """`IMAGE ID [CMD...]`, or `ID [CMD...]` with --rootfs (as ctr)."""
    if rootfs:
        if not positional:
            raise click.UsageError("missing container ID")
        return "", positional[0], positional[1:]
    if len(positional) < 2:
        raise click.UsageError("expected IMAGE ID [COMMAND [ARG...]] (or --rootfs DIR ID COMMAND...)")
    return positional[0], positional[1], positional[2:]


@click.group("containers", cls=AliasGroup)
def containers() -> None:
    """Manage containers (metadata only: use `tasks` to run them).

    \b
    Examples:
      ctrpy containers create --rootfs /srv/rootfs web sh -c 'echo hi'
      ctrpy c ls -q
      ctrpy c rm --force web
    """


@containers.command("create", context_settings={"allow_interspersed_args": False, "ignore_unknown_options": True})
@container_flags
@click.argument("positional", nargs=-1, required=True, type=click.UNPROCESSED, metavar="IMAGE ID [COMMAND [ARG...]]")
@click.pass_obj
def create(obj: Any, positional: tuple[str, ...], **flags: Any) -> None:
    """Create a container: IMAGE ID [COMMAND [ARG...]], or --rootfs DIR ID COMMAND [ARG...].

    \b
    Examples:
      ctrpy containers create docker.io/library/busybox:latest web sleep 60
      ctrpy containers create --rootfs /srv/rootfs -e A=1 --memory-limit 64m job sh -c 'echo $A'
    """
    from ctrpy.runtime.containers import create_container

    image, container_id, args = split_image_id(flags["rootfs"], positional)
    create_container(obj.client, options_from_flags(container_id, image, args, flags))


@containers.command("run", context_settings={"allow_interspersed_args": False, "ignore_unknown_options": True})
@click.option("--rm", "remove", is_flag=True, help="Delete the container when the task exits")
@click.option("--detach", "-d", is_flag=True, help="Start the task and return (output: `ctrpy logs`)")
@container_flags
@click.argument("positional", nargs=-1, required=True, type=click.UNPROCESSED, metavar="IMAGE ID [COMMAND [ARG...]]")
@click.pass_obj
def run(obj: Any, remove: bool, detach: bool, positional: tuple[str, ...], **flags: Any) -> None:
    """Run a container as `ctr run` does: IMAGE ID [COMMAND [ARG...]] (ctr's shape).

    \b
    Examples:
      ctrpy containers run --rm docker.io/library/busybox:latest demo echo hello
      ctrpy c run -d --memory-limit 64m busybox web sleep 3600
    """
    from ctrpy.commands.tasks import run_attached, run_failed
    from ctrpy.runtime import errors
    from ctrpy.runtime.containers import create_container, delete_container

    if remove and detach:
        raise click.UsageError("--rm and --detach cannot be used together")
    image, container_id, args = split_image_id(flags["rootfs"], positional)
    client = obj.client
    create_container(client, options_from_flags(container_id, image, args, flags))
    code = 0
    try:
        client.tasks.create(container_id, stdin=not detach)
        if detach:
            client.tasks.start(container_id)
            return
        attachment = client.tasks.attach(container_id, stdin=True)
        try:
            code = run_attached(client, container_id, attachment, start=True)
        finally:
            client.tasks.delete(container_id, force=True)
    except errors.CtrpyError as exc:
        run_failed(client, container_id, exc, remove=remove)
        raise
    if remove:
        delete_container(client, container_id, force=True)
    raise click.exceptions.Exit(code)


@containers.command("ls")
@click.argument("filters", nargs=-1)
@quiet_option
@format_option
@click.pass_obj
def ls(obj: Any, filters: tuple[str, ...], quiet: bool, fmt: str) -> None:
    """List containers (filters like `image==busybox`, `labels.app==web`).

    \b
    Examples:
      ctrpy containers ls
      ctrpy containers ls -q labels.app==web
      ctrpy containers ls --format json
    """
    from ctrpy.commands._listings import containers_ls

    containers_ls(obj, list(filters), quiet, fmt)


def _summary(c: Any) -> dict[str, Any]:
    from ctrpy.commands._listings import container_summary

    return container_summary(c)


@containers.command("info")
@click.argument("container_id")
@click.option("--spec", is_flag=True, help="Print only the OCI spec")
@json_format_option
@click.pass_obj
def info(obj: Any, container_id: str, spec: bool, fmt: str) -> None:
    """Show a container's record (JSON), like `ctr containers info`.

    \b
    Examples:
      ctrpy containers info web
      ctrpy containers info --spec web
    """
    c = obj.client.containers.get(container_id)
    if spec:
        emit_json(c.spec)
        return
    emit_json({**_summary(c), "runtime_options": c.runtime_options, "extensions": c.extensions, "spec": c.spec})


@containers.command("rm")
@click.argument("container_ids", nargs=-1, required=True)
@click.option("--force", "-f", is_flag=True, help="Kill and delete a live task first")
@click.option("--keep-snapshot", is_flag=True, help="Keep the rootfs snapshot")
@click.pass_obj
def rm(obj: Any, container_ids: tuple[str, ...], force: bool, keep_snapshot: bool) -> None:
    """Delete containers (a container with a live task is refused unless --force).

    \b
    Examples:
      ctrpy containers rm web
      ctrpy containers rm --force web job
    """
    from ctrpy.runtime.containers import delete_container

    for container_id in container_ids:
        delete_container(obj.client, container_id, force=force, keep_snapshot=keep_snapshot)


@containers.command("label")
@click.argument("container_id")
@click.argument("labels", nargs=-1)
@click.pass_obj
def label(obj: Any, container_id: str, labels: tuple[str, ...]) -> None:
    """Set (k=v) or remove (k=) labels; with none, print the labels.

    \b
    Examples:
      ctrpy containers label web tier=front
      ctrpy containers label web tier=
    """
    store = obj.client.containers
    c = store.get(container_id)
    if not labels:
        click.echo(json.dumps(c.labels, sort_keys=True))
        return
    changes = parse_labels(labels)
    c.labels = {**c.labels, **changes}
    store.update(c, [f"labels.{k}" for k in changes])
    click.echo(", ".join(f"{k}={v}" if v else f"{k} removed" for k, v in changes.items()))


# -- docker's `container prune` (runtime in ctrpy/runtime/space.py) -----------------------------------------
@containers.command("prune")
@click.option("--force", "-f", is_flag=True, help="Do not ask for confirmation")
@click.pass_obj
def prune(obj: Any, force: bool) -> None:
    """Remove every stopped container (and its root file system), then free the space.

    \b
    Examples:
      ctrpy containers prune -f
      ctrpy container prune
    """
    from ctrpy.commands._output import human_size
    from ctrpy.runtime.space import prune_containers

    if not force and not click.confirm("This will remove all stopped containers. Are you sure you want to "
                                       "continue?", err=True):
        return
    report = prune_containers(obj.client)
    for cid in report.containers:
        click.echo(cid)
    for failure in report.failures:
        click.echo(f"ctrpy: warning: {failure}", err=True)
    click.echo(f"Total reclaimed space: {human_size(report.bytes_freed)}")
