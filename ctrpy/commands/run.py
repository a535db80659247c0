"""`ctrpy run` and `ctrpy create`, shaped like `nerdctl run`/`docker run`: IMAGE [COMMAND [ARG...]].

The ID is generated (64 hex digits) and the name is `--name` or a generated one; both, and any unique ID
prefix, name the container in every other command. ctr's shape stays where docker has nothing to say:
`--rootfs DIR ID COMMAND...` (no image), and `ctrpy containers create/run IMAGE ID [COMMAND...]`.

The hot path: imports only click and the runtime's task module (never httpx, rich or pyroute2; a pull for a
missing image loads them then). Exit status: the task's own; 125 when the runtime fails, 126 when the command
cannot be executed, 127 when it is not found (as docker and podman).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from ctrpy.commands._netopts import network_options

if TYPE_CHECKING:
    from ctrpy.runtime.client import Client

PULL_POLICIES = ("missing", "always", "never")

_DOCKER_OPTIONS = [
    click.option("--name", default="", help="Name of the container (default: a generated one)"),
    click.option("--cidfile", default="", metavar="FILE", help="Write the container ID to FILE"),
    click.option("--interactive", "-i", is_flag=True, help="Keep stdin open (attached unless -d)"),
    click.option("--tty", "-t", is_flag=True, help="Allocate a terminal"),
    click.option("--env", "-e", "env", multiple=True, metavar="KEY[=VALUE]",
                 help="Set an environment variable (KEY alone takes this shell's value)"),
    click.option("--env-file", multiple=True, type=click.Path(), help="Read environment variables from a file"),
    click.option("--volume", "-v", "volumes", multiple=True, metavar="SRC:DST[:ro|rw|z|...]",
                 help="Bind a host path or a named volume (DST alone: an anonymous volume)"),
    click.option("--mount", "mounts", multiple=True, metavar="type=bind,source=DIR,target=DIR[,readonly]",
                 help="Add a mount (docker's or ctr's syntax; type bind, volume or tmpfs)"),
    click.option("--tmpfs", multiple=True, metavar="PATH[:OPTIONS]", help="Mount a tmpfs"),
    click.option("--workdir", "-w", "--cwd", "workdir", default="", help="Working directory of the process"),
    click.option("--user", "-u", default="", help="User name or uid[:gid] (resolved in the rootfs)"),
    click.option("--group-add", multiple=True, metavar="GROUP",
                 help="Add a supplementary group (a GID, or a name from the image's /etc/group)"),
    click.option("--hostname", "-h", default="", help="Container host name (default: the ID's first 12 digits)"),
    click.option("--domainname", default="", help="Container NIS domain name"),
    click.option("--label", "-l", "labels", multiple=True, metavar="KEY=VALUE", help="Set a container label"),
    click.option("--label-file", multiple=True, type=click.Path(), help="Read labels from a file"),
    click.option("--entrypoint", default=None, help="Override the image's entrypoint"),
    click.option("--memory", "-m", "--memory-limit", "memory", default=None, metavar="BYTES",
                 help="Memory limit (e.g. 64m)"),
    click.option("--memory-swap", default=None, metavar="BYTES", help="Memory plus swap limit (-1: unlimited)"),
    click.option("--cpus", type=float, default=None, help="CPU quota in CPUs (e.g. 0.5)"),
    click.option("--cpu-shares", "-c", type=int, default=None, help="CPU shares (relative weight)"),
    click.option("--cpuset-cpus", default="", metavar="LIST", help="CPUs the container may use (0-1, 0,2)"),
    click.option("--pids-limit", type=int, default=None, help="Maximum number of processes (-1: unlimited)"),
    click.option("--ulimit", "ulimits", multiple=True, metavar="NAME=SOFT[:HARD]", help="Set a ulimit"),
    click.option("--cap-add", multiple=True, help="Add a capability (e.g. NET_ADMIN, or ALL)"),
    click.option("--cap-drop", multiple=True, help="Drop a capability (or ALL)"),
    click.option("--privileged", is_flag=True, help="All capabilities, no masked paths, all devices"),
    click.option("--security-opt", multiple=True, metavar="OPT",
                 help="no-new-privileges[=false], seccomp=unconfined|FILE, systempaths=unconfined"),
    click.option("--userns-remap", default="", metavar="USER[:GROUP]|HOSTID:SIZE",
                 help="Run in a user namespace: ids from /etc/subuid and /etc/subgid, or a host range"),
    click.option("--read-only", is_flag=True, help="Mount the rootfs read-only"),
    click.option("--device", "devices", multiple=True, metavar="HOST[:CONTAINER][:rwm]", help="Add a device"),
    click.option("--init", is_flag=True,
                 help="Run ctrpy-init as PID 1: it forwards signals and reaps zombies (docker's --init)"),
    click.option("--pid", default="", metavar="host|container:NAME", help="PID namespace to join"),
    click.option("--ipc", default="", metavar="host|container:NAME", help="IPC namespace to join"),
    click.option("--uts", default="", metavar="host", help="UTS namespace to join"),
    click.option("--net-host", is_flag=True, hidden=True, help="ctr's spelling of --network host"),
    click.option("--publish-all", "-P", is_flag=True, help="Publish the image's exposed ports on free host ports"),
    click.option("--stop-signal", default="", metavar="SIGNAL", help="Signal `ctrpy stop` sends (default SIGTERM)"),
    click.option("--stop-timeout", type=int, default=None, metavar="SECONDS",
                 help="Seconds `ctrpy stop` waits before SIGKILL (default 10)"),
    click.option("--restart", default="no", metavar="POLICY", help="no, always, on-failure[:N], unless-stopped"),
    click.option("--pull", default="missing", type=click.Choice(PULL_POLICIES), show_default=True,
                 help="Pull the image before creating"),
    click.option("--platform", default="", metavar="OS/ARCH", help="Platform of the image to pull and run (default: this host's)"),
    click.option("--runtime", default="", help="Runtime: ctrpy, runc, crun or a configured name"),
    click.option("--snapshotter", default="", help="Snapshotter for the rootfs (default from config)"),
    click.option("--log-opt", "log_opts", multiple=True, metavar="max-size=SIZE|max-file=N",
                 help="Log rotation"),
    click.option("--rootfs", default="", metavar="DIR",
                 help="Use DIR as the root filesystem (no image; ctr's shape: ID COMMAND...)"),
]


def docker_flags(fn: Callable[..., Any]) -> Callable[..., Any]:
    """The flags of `run` and `create` (docker's names)."""
    for decorator in reversed(_DOCKER_OPTIONS):
        fn = decorator(fn)
    return network_options(fn)


SETTINGS = {"allow_interspersed_args": False, "help_option_names": ["--help"]}


def build_request(positional: tuple[str, ...], flags: dict[str, Any], remove: bool) -> Any:
    """RunRequest from the parsed flags and IMAGE [COMMAND...] (or, with --rootfs, [ID] COMMAND...)."""
    from ctrpy.runtime.dockerrun import RunRequest

    image, ctr_id = "", ""
    args = list(positional)
    if flags["rootfs"]:
        if not flags["name"]:
            if not args:
                raise click.UsageError("missing container ID (--rootfs DIR ID COMMAND..., or --name NAME)")
            ctr_id = args.pop(0)
    else:
        if not args:
            raise click.UsageError("missing IMAGE")
        image = args.pop(0)
    network = flags["network"]
    if flags["net_host"]:
        if network and network != "host":
            raise click.UsageError(f"--net-host conflicts with --network {network}")
        network = "host"
    return RunRequest(
        image=image, command=args, name=flags["name"], rootfs=flags["rootfs"], ctr_id=ctr_id,
        entrypoint=flags["entrypoint"], env=list(flags["env"]), env_files=list(flags["env_file"]),
        labels=list(flags["labels"]), label_files=list(flags["label_file"]), volumes=list(flags["volumes"]),
        mounts=list(flags["mounts"]), tmpfs=list(flags["tmpfs"]), workdir=flags["workdir"], user=flags["user"],
        group_add=list(flags["group_add"]), hostname=flags["hostname"], domainname=flags["domainname"],
        tty=flags["tty"], interactive=flags["interactive"], auto_remove=remove, memory=flags["memory"],
        memory_swap=flags["memory_swap"], cpus=flags["cpus"], cpu_shares=flags["cpu_shares"],
        cpuset_cpus=flags["cpuset_cpus"], pids_limit=flags["pids_limit"], ulimits=list(flags["ulimits"]),
        cap_add=list(flags["cap_add"]), cap_drop=list(flags["cap_drop"]), privileged=flags["privileged"],
        security_opt=list(flags["security_opt"]), userns_remap=flags["userns_remap"], read_only=flags["read_only"], devices=list(flags["devices"]),
        init=flags["init"], pid=flags["pid"], ipc=flags["ipc"], uts=flags["uts"], network=network,
        ip=flags["ip"], publish=list(flags["publish"]), publish_all=flags["publish_all"], dns=list(flags["dns"]),
        dns_search=list(flags["dns_search"]), dns_option=list(flags["dns_option"]),
        add_host=list(flags["add_host"]), stop_signal=flags["stop_signal"], stop_timeout=flags["stop_timeout"],
        restart=flags["restart"], platform=flags["platform"], runtime=flags["runtime"],
        snapshotter=flags["snapshotter"], log_opts=list(flags["log_opts"]))


def ensure_image(obj: Any, image: str, policy: str, platform: str) -> None:
    """--pull missing|always|never: pull with `pull`'s progress (on stderr) when the policy asks for it."""
    if not image:
        return
    from ctrpy.runtime import errors
    from ctrpy.runtime.images import PlatformNotPulled, find_image, resolve_platform

    if policy != "always":
        try:
            found = find_image(obj.client, image)
        except errors.NotFound:
            if policy == "never":
                raise errors.NotFound(f"image {image!r} not found locally (and --pull never): "
                                      f"`ctrpy pull {image}` first") from None
        else:
            try:
                if platform:  # it must provide the platform; pulled only when its index lists it
                    resolve_platform(obj.client.content, found, platform)
                return
            except PlatformNotPulled:
                if policy == "never":
                    raise
    from ctrpy.commands._progress import make_progress
    from ctrpy.runtime.pull import options_from_config, pull as do_pull

    opts = options_from_config(obj.config, platforms=[platform] if platform else [])
    progress = make_progress(False)
    try:
        do_pull(obj.client, image, opts, progress)
    finally:
        progress.close()


def _create(obj: Any, positional: tuple[str, ...], flags: dict[str, Any], remove: bool) -> Any:
    import os

    from ctrpy.runtime import dockerrun

    if remove and flags["restart"] not in ("", "no"):
        # Two flags that contradict each other: a usage error (2), as `containers run --rm -d`; the runtime's
        # own check (dockerrun.parse_restart, InvalidArgument) stays for callers that bypass the CLI.
        raise click.UsageError("--rm and --restart cannot be used together")
    req = build_request(positional, flags, remove)
    cidfile = flags["cidfile"]
    if cidfile and os.path.exists(cidfile):
        raise click.UsageError(f"--cidfile {cidfile} already exists")
    ensure_image(obj, req.image, flags["pull"], req.platform)
    container = dockerrun.create(obj.client, req)
    if cidfile:
        with open(cidfile, "x") as f:
            f.write(container.id)
    return container, req


@click.command("run", context_settings=SETTINGS)
@click.option("--rm", "remove", is_flag=True, help="Delete the container when it exits")
@click.option("--detach", "-d", is_flag=True, help="Run in the background and print the container ID")
@click.option("--detach-keys", default="ctrl-p,ctrl-q", show_default=True,
              help="Keys that detach from a container run with -it (it keeps running)")
@docker_flags
@click.argument("positional", nargs=-1, required=True, type=click.UNPROCESSED, metavar="IMAGE [COMMAND [ARG...]]")
@click.pass_obj
def run(obj: Any, remove: bool, detach: bool, detach_keys: str, positional: tuple[str, ...], **flags: Any) -> None:
    """Create and start a container: IMAGE [COMMAND [ARG...]] (nerdctl/docker shape).

    With --rootfs DIR the first argument is the container ID, as in ctr: --rootfs DIR ID COMMAND [ARG...].

    \b
    Examples:
      ctrpy run --rm busybox echo hello
      ctrpy run -d --name web -p 8080:80 -m 64m busybox httpd -f
      ctrpy run -it --rm -v /srv/data:/data busybox sh
      ctrpy run --rm --rootfs /srv/rootfs demo sh -c 'echo hi'
    """
    from ctrpy.commands.tasks import run_attached, run_failed
    from ctrpy.runtime import errors
    from ctrpy.runtime import lifecycle, peers
    from ctrpy.runtime.peers import wants_peers

    container, req = _create(obj, positional, flags, remove)
    container_id = container.id
    client = obj.client
    # ctr's shape always attached stdin; docker's attaches it only with -i.
    stdin = not detach and (req.interactive or bool(req.ctr_id))
    code = 0
    try:
        client.tasks.create(container_id, stdin=stdin or (detach and req.interactive))
        if wants_peers(req.network):
            peers.refresh(client)
        if detach:
            client.tasks.start(container_id)
            if not req.ctr_id:
                click.echo(container_id)
            return
        attachment = client.tasks.attach(container_id, stdin=stdin)
        oom = False
        try:
            if req.tty and req.interactive and sys.stdin is not None and sys.stdin.isatty():
                detached, code = _run_tty(client, container_id, attachment, detach_keys)
                if detached:  # ctrl-p ctrl-q: the container keeps running, as with docker
                    click.echo(container_id[:12], err=True)
                    raise click.exceptions.Exit(0)
            else:
                code = run_attached(client, container_id, attachment, start=True, stdin=stdin)
            oom = code == 137 and lifecycle.was_oom_killed(client, container_id)
        finally:
            lifecycle.reap(client, container_id, record=not remove)
            if wants_peers(req.network):
                peers.refresh(client)
    except errors.CtrpyError as exc:
        run_failed(client, container_id, exc, remove=remove)
        raise
    if oom:
        click.echo(f"ctrpy: container {container_id[:12]} was killed: out of memory (OOM)", err=True)
    if remove:
        lifecycle.remove(client, container_id, force=True, volumes=True)
    raise click.exceptions.Exit(code)


def _run_tty(client: Client, container_id: str, attachment: Any, detach_keys: str) -> tuple[bool, int]:
    """Start and attach through a terminal watching for the detach keys: (detached, exit code)."""
    from ctrpy.commands.tasks import exit_code
    from ctrpy.runtime.attach import parse_detach_keys, pump_with_detach

    keys = parse_detach_keys(detach_keys)
    try:
        client.tasks.start(container_id)
        record, detached = pump_with_detach(attachment, sys.stdin.fileno(), keys,
                                            on_signal=lambda sig: client.tasks.kill(container_id, sig))
    finally:
        attachment.close()
    if detached:
        return True, 0
    return False, exit_code(record if record is not None else client.tasks.wait(container_id))


@click.command("create", context_settings=SETTINGS)
@click.option("--rm", "remove", is_flag=True, help="Delete the container when it exits (after `ctrpy start -a`)")
@docker_flags
@click.argument("positional", nargs=-1, required=True, type=click.UNPROCESSED, metavar="IMAGE [COMMAND [ARG...]]")
@click.pass_obj
def create(obj: Any, remove: bool, positional: tuple[str, ...], **flags: Any) -> None:
    """Create a container without starting it and print its ID: IMAGE [COMMAND [ARG...]].

    \b
    Examples:
      ctrpy create --name web -p 8080:80 busybox httpd -f
      ctrpy create -it --name shell busybox sh
    """
    container, req = _create(obj, positional, flags, remove)
    click.echo(container.id)
    sys.stdout.flush()
