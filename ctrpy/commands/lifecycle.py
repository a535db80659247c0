"""The docker/nerdctl-shaped container commands at the top level: ps, start, stop, restart, kill, rm, wait,
pause, unpause, rename, inspect, port, top, stats, logs, exec, attach.

Every CONTAINER argument is a full ID, a name or a unique ID prefix (ctrpy.runtime.names.resolve). The
ctr-shaped groups (`containers`, `tasks`) stay as they are.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import click

from ctrpy.commands._dockerfmt import emit, template_format_option
from ctrpy.commands._output import quiet_option, remove_each

if TYPE_CHECKING:
    from ctrpy.runtime.client import Client


def _each(ctx: click.Context, refs: tuple[str, ...], action: Any, echo: bool = True) -> None:
    """Apply `action` to each container like docker: print each name as given when done, report each failure,
    go on (what `action` returns is not printed)."""

    def act(ref: str) -> None:
        action(ref)

    remove_each(ctx, refs, act, echo=echo)


@click.command("ps")
@click.option("--all", "-a", "all_", is_flag=True, help="Show all containers (default: running ones)")
@quiet_option
@click.option("--last", "-n", type=int, default=0, help="Show the N most recently created containers")
@click.option("--latest", "-l", is_flag=True, help="Show the most recently created container")
@click.option("--size", "-s", is_flag=True, help="Show the size of each container's writable layer")
@click.option("--no-trunc", is_flag=True, help="Do not truncate IDs and commands")
@click.option("--filter", "-f", "filters", multiple=True, metavar="KEY=VALUE",
              help="status=, name=, label=K[=V], ancestor=, id=, exited=")
@template_format_option()
@click.pass_obj
def ps(obj: Any, all_: bool, quiet: bool, last: int, latest: bool, size: bool, no_trunc: bool,
       filters: tuple[str, ...], fmt: str) -> None:
    """List containers, like `docker ps` (running ones; -a for all).

    \b
    Examples:
      ctrpy ps -a
      ctrpy ps -q --filter status=exited
      ctrpy ps --format '{{.Names}}: {{.Status}}'
    """
    from ctrpy.commands import _listings
    from ctrpy.runtime import lifecycle

    rows = lifecycle.list_containers(obj.client, all=all_, filters=list(filters), last=1 if latest else last,
                                     size=size)
    if quiet or fmt == "table":
        _listings.print_ps(rows, quiet=quiet, no_trunc=no_trunc, size=size)
        return
    json_rows = [{k: v for k, v in r.items() if k != "LabelsMap"} for r in rows] if fmt == "json" else None
    emit(rows, fmt, _listings.PS_HEADERS, [], json_rows=json_rows)


@click.command("start")
@click.argument("containers", nargs=-1, required=True)
@click.option("--attach", "-a", is_flag=True, help="Attach to the output and exit with the container's status")
@click.option("--interactive", "-i", is_flag=True, help="Attach stdin")
@click.option("--detach-keys", default="ctrl-p,ctrl-q", show_default=True, help="Keys that detach (TTY only)")
@click.pass_context
def start(ctx: click.Context, containers: tuple[str, ...], attach: bool, interactive: bool, detach_keys: str) -> None:
    """Start one or more stopped or created containers (an exited one starts again).

    \b
    Examples:
      ctrpy start web
      ctrpy start -ai shell
    """
    from ctrpy.runtime import lifecycle

    client = ctx.obj.client
    if attach or interactive:
        if len(containers) != 1:
            raise click.UsageError("-a/-i attach to one container only")
        from ctrpy.commands.tasks import run_attached

        cid, created = lifecycle.start(client, containers[0], stdin=interactive or None, begin=False)
        attachment = client.tasks.attach(cid, stdin=interactive)
        code = run_attached(client, cid, attachment, start=created, owner=True, stdin=interactive)
        _auto_remove(client, cid)
        raise click.exceptions.Exit(code)
    _each(ctx, containers, lambda ref: lifecycle.start(client, ref))


def _auto_remove(client: Client, cid: str) -> None:
    from ctrpy.runtime import lifecycle
    from ctrpy.runtime.dockerrun import docker_config

    container = client.containers.get(cid)
    if client.tasks.exists(cid) and lifecycle.state(client, container)["Status"] == "exited":
        if docker_config(container).get("auto_remove"):
            lifecycle.remove(client, cid, force=True, volumes=True)
        else:
            lifecycle.reap(client, cid)


@click.command("stop")
@click.argument("containers", nargs=-1, required=True)
@click.option("--time", "-t", "timeout", type=int, default=None,
              help="Seconds to wait after the stop signal before SIGKILL  [default: --stop-timeout or 10]")
@click.option("--signal", "-s", "sig", default=None, help="Signal to send first  [default: --stop-signal or TERM]")
@click.pass_context
def stop(ctx: click.Context, containers: tuple[str, ...], timeout: int | None, sig: str | None) -> None:
    """Stop running containers: the stop signal, then SIGKILL after the timeout.

    \b
    Examples:
      ctrpy stop web
      ctrpy stop -t 2 web db
    """

    client = ctx.obj.client
    _each(ctx, containers, lambda ref: _stop_and_maybe_remove(client, ref, timeout, sig))


def _stop_and_maybe_remove(client: Client, ref: str, timeout: int | None, sig: str | None) -> None:
    from ctrpy.runtime import lifecycle
    from ctrpy.runtime.dockerrun import docker_config

    cid = lifecycle.stop(client, ref, timeout, sig)
    if docker_config(client.containers.get(cid)).get("auto_remove"):
        lifecycle.remove(client, cid, force=True, volumes=True)


@click.command("restart")
@click.argument("containers", nargs=-1, required=True)
@click.option("--time", "-t", "timeout", type=int, default=None, help="Seconds to wait before SIGKILL")
@click.pass_context
def restart(ctx: click.Context, containers: tuple[str, ...], timeout: int | None) -> None:
    """Stop (if running) and start containers again.

    \b
    Examples:
      ctrpy restart web
    """
    from ctrpy.runtime import lifecycle

    client = ctx.obj.client

    def action(ref: str) -> None:
        lifecycle.stop(client, ref, timeout)
        lifecycle.start(client, ref)
    _each(ctx, containers, action)


@click.command("kill")
@click.argument("containers", nargs=-1, required=True)
@click.option("--signal", "-s", "sig", default="KILL", show_default=True, help="Signal name or number")
@click.pass_context
def kill(ctx: click.Context, containers: tuple[str, ...], sig: str) -> None:
    """Send a signal to running containers (default SIGKILL).

    \b
    Examples:
      ctrpy kill web
      ctrpy kill -s HUP web
    """
    from ctrpy.runtime import lifecycle

    client = ctx.obj.client
    _each(ctx, containers, lambda ref: lifecycle.kill(client, ref, sig))


@click.command("rm")
@click.argument("containers", nargs=-1, required=True)
@click.option("--force", "-f", is_flag=True, help="Kill and remove running containers")
@click.option("--volumes", "-v", is_flag=True, help="Remove the container's anonymous volumes too")
@click.pass_context
def rm(ctx: click.Context, containers: tuple[str, ...], force: bool, volumes: bool) -> None:
    """Remove containers (running ones need -f).

    \b
    Examples:
      ctrpy rm web
      ctrpy rm -fv web db
    """
    from ctrpy.runtime import lifecycle

    client = ctx.obj.client
    _each(ctx, containers, lambda ref: lifecycle.remove(client, ref, force=force, volumes=volumes))


@click.command("wait")
@click.argument("containers", nargs=-1, required=True)
@click.pass_context
def wait(ctx: click.Context, containers: tuple[str, ...]) -> None:
    """Wait for containers to stop and print their exit codes.

    \b
    Examples:
      ctrpy wait job
    """
    from ctrpy.runtime import lifecycle

    client = ctx.obj.client
    _each(ctx, containers, lambda ref: click.echo(lifecycle.wait(client, ref)), echo=False)


@click.command("pause")
@click.argument("containers", nargs=-1, required=True)
@click.pass_context
def pause(ctx: click.Context, containers: tuple[str, ...]) -> None:
    """Freeze every process of containers.

    \b
    Examples:
      ctrpy pause web
    """
    from ctrpy.runtime import lifecycle

    _each(ctx, containers, lambda ref: lifecycle.pause(ctx.obj.client, ref))


@click.command("unpause")
@click.argument("containers", nargs=-1, required=True)
@click.pass_context
def unpause(ctx: click.Context, containers: tuple[str, ...]) -> None:
    """Thaw paused containers.

    \b
    Examples:
      ctrpy unpause web
    """
    from ctrpy.runtime import lifecycle

    _each(ctx, containers, lambda ref: lifecycle.unpause(ctx.obj.client, ref))


@click.command("rename")
@click.argument("container")
@click.argument("new_name")
@click.pass_obj
def rename(obj: Any, container: str, new_name: str) -> None:
    """Rename a container.

    \b
    Examples:
      ctrpy rename web frontend
    """
    from ctrpy.runtime.names import rename as do_rename

    do_rename(obj.client, container, new_name)


@click.command("inspect")
@click.argument("objects", nargs=-1, required=True)
@click.option("--type", "kind", type=click.Choice(["container", "image", "volume"]), default=None,
              help="Inspect only this kind of object")
@template_format_option(default="json")
@click.pass_context
def inspect(ctx: click.Context, objects: tuple[str, ...], kind: str | None, fmt: str) -> None:
    """Show docker-shaped JSON for containers (or images, volumes).

    \b
    Examples:
      ctrpy inspect web
      ctrpy inspect --format '{{.State.Status}} {{.NetworkSettings.IPAddress}}' web
    """
    from ctrpy.runtime import errors, lifecycle

    client = ctx.obj.client
    found: list[Any] = []
    failed: errors.CtrpyError | None = None
    for ref in objects:
        try:
            found.append(_inspect_one(client, ref, kind))
        except errors.CtrpyError as exc:
            click.echo(f"ctrpy: {exc}", err=True)
            failed = failed or exc
    if fmt == "json":
        if found or not failed:
            import json

            click.echo(json.dumps(found, indent=4, default=str))
    else:
        emit(found, fmt, {}, [])
    if failed:
        ctx.exit(failed.exit_code)
    del lifecycle


def _inspect_one(client: Client, ref: str, kind: str | None) -> Any:
    from ctrpy.runtime import errors, lifecycle

    if kind in (None, "container"):
        try:
            return lifecycle.inspect(client, ref)
        except errors.NotFound:
            if kind == "container":
                raise
    if kind in (None, "volume"):
        from ctrpy.runtime.volumes import VolumeStore

        try:
            return VolumeStore(client).inspect(ref)
        except errors.NotFound:
            if kind == "volume":
                raise
    try:
        return _image_inspect(client, ref)
    except errors.NotFound:
        raise errors.NotFound(f"no such object: {ref}") from None


def _image_inspect(client: Client, ref: str) -> Any:
    """An image's docker-shaped JSON (the same as `ctrpy image inspect`)."""
    from ctrpy.runtime.imageinfo import image_inspect

    return image_inspect(client, ref)


@click.command("port")
@click.argument("container")
@click.argument("private_port", required=False, metavar="[PORT[/PROTO]]")
@click.pass_obj
def port(obj: Any, container: str, private_port: str | None) -> None:
    """List a container's published ports (or the host address of one).

    \b
    Examples:
      ctrpy port web
      ctrpy port web 80/tcp
    """
    from ctrpy.runtime import errors, lifecycle

    info = lifecycle.inspect(obj.client, container)
    ports = info["NetworkSettings"]["Ports"] or {}
    if private_port:
        key = private_port if "/" in private_port else f"{private_port}/tcp"
        bindings = ports.get(key)
        if not bindings:
            raise errors.NotFound(f"no public port {key!r} published for {container}")
        for b in bindings:
            click.echo(f"{b['HostIp']}:{b['HostPort']}")
        return
    for key, bindings in ports.items():
        for b in bindings or []:
            click.echo(f"{key} -> {b['HostIp']}:{b['HostPort']}")


@click.command("top")
@click.argument("container")
@click.pass_obj
def top(obj: Any, container: str) -> None:
    """Show the processes of a container (host PIDs).

    \b
    Examples:
      ctrpy top web
    """
    from ctrpy.runtime import lifecycle
    from ctrpy.runtime.gotemplate import tabwrite

    procs = lifecycle.top(obj.client, container)
    for line in tabwrite(["PID\tSTATE\tCMD"] + [f"{p['pid']}\t{p['state']}\t{p['command']}" for p in procs]):
        click.echo(line)


STATS_HEADERS = {"ID": "CONTAINER ID", "Name": "NAME", "CPUPerc": "CPU %", "MemUsage": "MEM USAGE / LIMIT",
                 "MemPerc": "MEM %", "PIDs": "PIDS"}
STATS_COLUMNS = ["ID", "Name", "CPUPerc", "MemUsage", "MemPerc", "PIDs"]
# A live view redraws in place: cursor home, each line cleared to its end, the rest of the screen cleared;
# the cursor is hidden meanwhile and shown again however the view ends (Ctrl-C: exit 130, as every command).
_HOME, _CLEAR_LINE, _CLEAR_BELOW, _CLEAR_SCREEN = "\x1b[H", "\x1b[K", "\x1b[J", "\x1b[2J"
_HIDE_CURSOR, _SHOW_CURSOR = "\x1b[?25l", "\x1b[?25h"


@click.command("stats")
@click.argument("containers", nargs=-1)
@click.option("--no-stream", is_flag=True, help="Print one sample and exit (the default when not on a terminal)")
@click.option("--all", "-a", "all_", is_flag=True, help="All containers (default: running ones)")
@click.option("--no-trunc", is_flag=True, help="Do not truncate IDs")
@template_format_option()
@click.pass_obj
def stats(obj: Any, containers: tuple[str, ...], no_stream: bool, all_: bool, no_trunc: bool, fmt: str) -> None:
    """Show containers' memory, CPU and PID usage (live on a terminal until Ctrl-C, or --no-stream).

    Without CONTAINER arguments: every running container (-a: every container), followed as they come and go.

    \b
    Examples:
      ctrpy stats
      ctrpy stats --no-stream
      ctrpy stats --format 'table {{.Name}}\t{{.CPUPerc}}\t{{.MemUsage}}' web
    """
    import time

    from ctrpy.commands._dockerfmt import render
    from ctrpy.commands._output import is_tty
    from ctrpy.runtime import lifecycle, names

    client = obj.client
    for ref in containers:
        names.resolve(client, ref)  # an unknown name fails before anything is drawn
    live = is_tty() and not no_stream
    sampler = lifecycle.StatsSampler(client)
    if live:
        sys.stdout.write(_HIDE_CURSOR + _CLEAR_SCREEN)
    try:
        while True:
            refs = list(containers) or [r["ID"] for r in lifecycle.list_containers(client, all=all_)]
            if not live:
                sampler.prime(refs)  # CPU % needs two samples
            rows = [_stats_row(s, no_trunc) for s in sampler.sample_all(refs, skip_missing=live)]
            lines = render(rows, fmt, STATS_HEADERS, STATS_COLUMNS)
            if not live:
                for line in lines:
                    click.echo(line)
                return
            _redraw(lines)
            time.sleep(1)
    finally:
        if live:
            sys.stdout.write(_SHOW_CURSOR)
            sys.stdout.flush()


def _stats_row(s: dict[str, Any], no_trunc: bool) -> dict[str, Any]:
    """docker's stats row (its --format field names) from a StatsSampler sample."""
    from ctrpy.commands._output import human_size

    usage, limit = s["mem_usage"], s["mem_limit"]
    return {"ID": s["ID"] if no_trunc else s["ID"][:12], "Container": s["ref"], "Name": s["Name"],
            "CPUPerc": f"{s['cpu_percent']:.2f}%",
            "MemUsage": f"{human_size(usage)} / {human_size(limit) if limit else '-'}",
            "MemPerc": f"{100.0 * usage / limit:.2f}%" if usage and limit else "-", "PIDs": str(s["pids"])}


def _redraw(lines: list[str]) -> None:
    """One frame of a live view, cut to the terminal (a wrapped or scrolled line would break the redraw)."""
    import os
    import shutil

    out = sys.stdout
    try:
        cols, rows = os.get_terminal_size(out.fileno())  # the terminal's own, not $COLUMNS
    except OSError:
        cols, rows = shutil.get_terminal_size()
    text = (_CLEAR_LINE + "\n").join(line[:cols] for line in "\n".join(lines).split("\n")[:rows - 1])
    out.write(_HOME + text + _CLEAR_LINE + "\n" + _CLEAR_BELOW)
    out.flush()


@click.command("logs")
@click.argument("container")
@click.option("--follow", "-f", is_flag=True, help="Keep printing new output until the container exits")
@click.option("--tail", "-n", default="all", help="Only the last N lines (or all)")
@click.option("--timestamps", "-t", is_flag=True, help="Prefix each line with its time")
@click.option("--since", default=None, help="Only output after this time (RFC 3339, or relative: 10m, 1h)")
@click.option("--until", default=None, help="Only output before this time (RFC 3339, or relative)")
@click.pass_obj
def logs(obj: Any, container: str, follow: bool, tail: str, timestamps: bool, since: str | None,
         until: str | None) -> None:
    """Show a container's output (stdout and stderr to the same streams as the container wrote them).

    \b
    Examples:
      ctrpy logs web
      ctrpy logs -f --tail 20 -t web
    """
    from ctrpy.runtime import errors, logs as logstore
    from ctrpy.runtime.dockerrun import is_docker_shaped
    from ctrpy.runtime.names import resolve

    client = obj.client
    cid = resolve(client, container)
    if tail != "all" and not tail.lstrip("-").isdigit():
        raise click.BadParameter(f"invalid --tail {tail!r}: a number or all", param_hint="--tail")
    count = None if tail == "all" or int(tail) < 0 else int(tail)
    out = {1: sys.stdout.buffer, 2: sys.stderr.buffer}
    docker_shaped = is_docker_shaped(client.containers.get(cid))
    try:
        for stream, chunk in logstore.read(client, cid, tail=count, follow=follow, timestamps=timestamps,
                                           since=since, until=until, combined=not docker_shaped):
            out[stream].write(chunk)
            out[stream].flush()
    except errors.NotFound:
        return


@click.command("exec", context_settings={"allow_interspersed_args": False})
@click.option("--interactive", "-i", is_flag=True, help="Attach stdin")
@click.option("--tty", "-t", is_flag=True, help="Allocate a terminal (sets TERM)")
@click.option("--detach", "-d", is_flag=True, help="Run in the background")
@click.option("--workdir", "-w", "--cwd", "workdir", default="", help="Working directory")
@click.option("--env", "-e", multiple=True, metavar="KEY[=VALUE]", help="Set an environment variable")
@click.option("--user", "-u", default="", help="User name or uid[:gid]")
@click.option("--privileged", is_flag=True, help="All capabilities for this process")
@click.option("--exec-id", default="", help="Exec process id (generated when not given)")
@click.option("--detach-keys", default="ctrl-p,ctrl-q", show_default=True, help="Keys that detach (TTY only)")
@click.argument("container")
@click.argument("args", nargs=-1, required=True, type=click.UNPROCESSED)
@click.pass_obj
def exec_(obj: Any, interactive: bool, tty: bool, detach: bool, workdir: str, env: tuple[str, ...], user: str,
          privileged: bool, exec_id: str, detach_keys: str, container: str, args: tuple[str, ...]) -> None:
    """Run a command in a running container: CONTAINER COMMAND [ARG...]; exits with its status.

    \b
    Examples:
      ctrpy exec web cat /etc/hostname
      ctrpy exec -it web sh
      ctrpy exec -d -e MODE=bg web sleep 60
    """
    from ctrpy.commands.tasks import exit_code
    from ctrpy.runtime.dockerrun import is_docker_shaped, parse_env
    from ctrpy.runtime.names import resolve

    client = obj.client
    cid = resolve(client, container)
    docker_shaped = is_docker_shaped(client.containers.get(cid))
    # ctr-shaped containers keep ctr's exec (stdin always attached, the exec ID printed with -d).
    stdin = (interactive or not docker_shaped) and not detach
    entries = parse_env(list(env))
    if tty:
        entries = ["TERM=" + (__import__("os").environ.get("TERM") or "xterm")] + entries
    attachment = client.tasks.exec(cid, exec_id, list(args), tty=tty, stdin=stdin, env=entries, cwd=workdir,
                                   user=user, **({"privileged": True} if privileged else {}))
    if detach:
        attachment.close()
        if not docker_shaped:
            click.echo(attachment.exec_id)
        return
    exec_id = attachment.exec_id
    try:
        record = attachment.pump(sys.stdin.fileno() if stdin else None, sys.stdout.fileno(), sys.stderr.fileno(),
                                 on_signal=lambda sig: client.tasks.kill(cid, sig, exec_id=exec_id))
    finally:
        attachment.close()
    if record is None:
        record = client.tasks.wait(cid, exec_id)
    raise click.exceptions.Exit(exit_code(record))


@click.command("attach")
@click.argument("container")
@click.option("--detach-keys", default="ctrl-p,ctrl-q", show_default=True,
              help="Keys that detach and leave the container running")
@click.option("--no-stdin", is_flag=True, help="Do not attach stdin")
@click.pass_obj
def attach(obj: Any, container: str, detach_keys: str, no_stdin: bool) -> None:
    """Attach to a running container's stdio; exits with its status (or 0 after the detach keys).

    \b
    Examples:
      ctrpy attach web
      ctrpy attach --detach-keys ctrl-x web
    """
    from ctrpy.commands.tasks import exit_code
    from ctrpy.runtime import lifecycle
    from ctrpy.runtime.attach import parse_detach_keys, pump_with_detach
    from ctrpy.runtime.names import resolve

    client = obj.client
    cid = resolve(client, container)
    if not client.tasks.exists(cid) or lifecycle.state(client, client.containers.get(cid))["Status"] != "running":
        from ctrpy.runtime import errors

        raise errors.FailedPrecondition(f"container {container} is not running (start it: `ctrpy start -a {container}`)")
    keys = parse_detach_keys(detach_keys)
    attachment = client.tasks.attach(cid, stdin=not no_stdin)
    try:
        record, detached = pump_with_detach(attachment, None if no_stdin else sys.stdin.fileno(), keys,
                                            on_signal=lambda sig: client.tasks.kill(cid, sig))
    finally:
        attachment.close()
    if detached:
        click.echo("", err=True)
        raise click.exceptions.Exit(0)
    if record is None:
        record = client.tasks.wait(cid)
    raise click.exceptions.Exit(exit_code(record))


@click.command("cp")
@click.argument("source")
@click.argument("dest")
@click.option("--archive", "-a", is_flag=True, help="Keep owners (always done: ctrpy copies as root)")
@click.pass_obj
def cp(obj: Any, source: str, dest: str, archive: bool) -> None:
    """Copy files between a container and the host: CONTAINER:PATH HOSTPATH, or HOSTPATH CONTAINER:PATH.

    \b
    Examples:
      ctrpy cp web:/etc/hostname ./hostname
      ctrpy cp ./site/. web:/www
    """
    from ctrpy.runtime import copy
    from ctrpy.runtime.names import resolve

    def split(arg: str) -> tuple[str, str] | None:
        name, sep, path = arg.partition(":")
        if sep and name and "/" not in name and not arg.startswith((".", "/")):
            return name, path or "/"
        return None

    src, dst = split(source), split(dest)
    if bool(src) == bool(dst):
        raise click.UsageError("one of SOURCE and DEST must be CONTAINER:PATH, the other a host path")
    if src:
        copy.copy_out(obj.client, resolve(obj.client, src[0]), src[1], dest)
    else:
        assert dst is not None
        copy.copy_in(obj.client, resolve(obj.client, dst[0]), source, dst[1])


@click.command("diff")
@click.argument("container")
@click.pass_obj
def diff(obj: Any, container: str) -> None:
    """List the files a container added (A), changed (C) or deleted (D) against its image.

    \b
    Examples:
      ctrpy diff web
    """
    from ctrpy.runtime import commit as changes
    from ctrpy.runtime.names import resolve_container

    for kind, path in changes.diff(obj.client, resolve_container(obj.client, container)):
        click.echo(f"{kind} {path}")


@click.command("commit")
@click.argument("container")
@click.argument("name", metavar="REPOSITORY[:TAG]")
@click.option("--change", "-c", "changes", multiple=True, metavar="INSTRUCTION",
              help="Apply a Dockerfile instruction: CMD, ENTRYPOINT, ENV, WORKDIR, USER, LABEL, EXPOSE, ...")
@click.option("--message", "-m", default="", help="Commit message (in the image's history)")
@click.option("--author", "-a", default="", help="Author (in the image's config)")
@click.option("--pause/--no-pause", "-p", default=True, help="Pause the container while committing")
@click.pass_obj
def commit(obj: Any, container: str, name: str, changes: tuple[str, ...], message: str, author: str,
           pause: bool) -> None:
    """Create an image from a container's changes; prints the new image's name and digest.

    \b
    Examples:
      ctrpy commit web myweb:v2
      ctrpy commit -c 'CMD ["httpd", "-f"]' -c 'ENV MODE=prod' web myweb:v3
    """
    from ctrpy.runtime import commit as committing, lifecycle
    from ctrpy.runtime.names import resolve_container

    client = obj.client
    c = resolve_container(client, container)
    paused = pause and lifecycle.state(client, c)["Status"] == "running"
    if paused:
        client.tasks.pause(c.id)
    try:
        image = committing.commit(client, c, name, changes=list(changes), message=message, author=author)
    finally:
        if paused:
            client.tasks.resume(c.id)
    click.echo(f"{image.name} {image.target.digest}")
