"""`ctrpy run`: create + start (+ attach, + delete with --rm), like `ctr run`.

The hot path: imports only click, the container flags and the runtime's task module (never httpx, rich or
pyroute2). Exit status: the task's own; 125 when the runtime fails, 126 when the command cannot be
executed, 127 when it is not found (as docker and podman).
"""

from __future__ import annotations

from typing import Any

import click

from ctrpy.commands.containers import container_flags, options_from_flags, split_image_id


@click.command("run", context_settings={"allow_interspersed_args": False, "ignore_unknown_options": True})
@click.option("--rm", "remove", is_flag=True, help="Delete the container when the task exits")
@click.option("--detach", "-d", is_flag=True, help="Start the task and return (output: `ctrpy logs`)")
@click.option("--security-opt", "security_opts", multiple=True, metavar="OPT",
              help="seccomp=unconfined|PROFILE.json, no-new-privileges (docker's)")
@click.option("--userns-remap", default=None, metavar="USER[:GROUP]|HOSTID:SIZE",
              help="Run in a user namespace: ids from /etc/subuid and /etc/subgid, or a host range")
@container_flags
@click.argument("positional", nargs=-1, required=True, type=click.UNPROCESSED, metavar="IMAGE ID [COMMAND [ARG...]]")
@click.pass_obj
def run(obj: Any, remove: bool, detach: bool, positional: tuple[str, ...], security_opts: tuple[str, ...],
        userns_remap: str | None, **flags: Any) -> None:
    """Run a container: IMAGE ID [COMMAND [ARG...]], or --rootfs DIR ID COMMAND [ARG...].

    \b
    Examples:
      ctrpy run --rm docker.io/library/busybox:latest demo echo hello
      ctrpy run -d --memory-limit 64m busybox web sleep 3600
      ctrpy run --rm -t --rootfs /srv/rootfs shell sh
    """
    from ctrpy.commands.tasks import run_attached
    from ctrpy.runtime import errors, oci
    from ctrpy.runtime.tasks import create_container, delete_container

    if remove and detach:
        raise click.UsageError("--rm and --detach cannot be used together")
    image, container_id, args = split_image_id(flags["rootfs"], positional)
    client = obj.client
    options = options_from_flags(container_id, image, args, flags)
    options.spec_opts = oci.with_security_opts(security_opts)
    if userns_remap:
        options.spec_opts.append(oci.with_userns_remap(userns_remap))
    create_container(client, options)
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
        # A runtime or exec failure is reported with run's reserved codes (125/126/127).
        exc.exit_code = getattr(exc, "run_exit_code", errors.EXIT_RUNTIME_FAILURE)
        if client.tasks.exists(container_id):
            client.tasks.delete(container_id, force=True)
        if remove:
            delete_container(client, container_id, force=True)
        raise
    if remove:
        delete_container(client, container_id, force=True)
    raise click.exceptions.Exit(code)
