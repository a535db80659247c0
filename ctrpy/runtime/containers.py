"""Containers: the creation step that turns user options (ctr's and docker's flags) into a stored spec and a
rootfs snapshot, and the deletion that removes both (containerd's client.NewContainer / container.Delete).
The task that runs a container is ctrpy.runtime.tasks."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ctrpy.runtime import errors, oci
from ctrpy.runtime.linux.proc import proc_alive, proc_id
from ctrpy.runtime.tasks import ETC_EXTENSION, MANIFEST_EXTENSION, TaskStatus, test_hook

if TYPE_CHECKING:
    from ctrpy.runtime.client import Client

@dataclass
class ContainerOptions:
    """What `containers create` and `run` accept (ctr's flags)."""

    id: str
    image: str = ""
    rootfs: str = ""
    args: list[str] = field(default_factory=list)
    env: list[str] = field(default_factory=list)
    env_files: list[str] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)
    cwd: str = ""
    user: str = ""
    group_add: list[str] = field(default_factory=list)  # GIDs or /etc/group names of the rootfs
    mounts: list[str] = field(default_factory=list)
    tty: bool = False
    snapshotter: str = ""
    runtime: str = ""
    hostname: str = ""
    read_only: bool = False
    privileged: bool = False
    cap_add: list[str] = field(default_factory=list)
    cap_drop: list[str] = field(default_factory=list)
    memory_limit: int | None = None
    cpus: float | None = None
    cpu_shares: int | None = None
    pids_limit: int | None = None
    net_host: bool = False
    extra_hosts: list[tuple[str, str]] = field(default_factory=list)
    dns: list[str] = field(default_factory=list)
    # A ctrpy.runtime.network.NetworkRequest (the --network/-p/--add-host/--dns flags): the task is then
    # connected by the network module (etc files before create, attach before start, detach on delete).
    # None: no networking beyond a private namespace with lo (ctr's default), or the host's with net_host.
    network: Any = None
    # Applied after every option above (the docker-shaped flags of ctrpy.runtime.dockerrun), and extra
    # extensions stored with the container.
    spec_opts: list[Any] = field(default_factory=list)
    extensions: dict[str, Any] = field(default_factory=dict)
    # The image's platform to run ("linux/arm64"): its manifest, layers and config; "" is this host's.
    platform: str = ""


def read_env_file(path: str) -> list[str]:
    """KEY=VALUE lines; blank lines and # comments skipped; a bare KEY takes the caller's value (docker)."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise errors.from_oserror(exc, "cannot read env file") from None
    entries = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if "=" not in line:
            if line in os.environ:
                entries.append(f"{line}={os.environ[line]}")
            continue
        entries.append(line)
    return entries


def _default_hostname(container_id: str) -> str:
    name = "".join(c if c.isalnum() or c in ".-" else "-" for c in container_id)[:63].strip("-.")
    return name or "container"


def create_container(client: Client, opts: ContainerOptions) -> Any:
    """Build the spec from `opts` (and the image config) and store the container; with an image, the
    rootfs snapshot (key = container id) is prepared from the image's top chain ID."""
    from ctrpy.runtime.metadata.containers import Container, validate_id
    from ctrpy.runtime.ociruntime import runtime_entry

    validate_id(opts.id)
    runtime_name, _ = runtime_entry(opts.runtime or client.config["default_runtime"], client.config)
    if bool(opts.image) == bool(opts.rootfs):
        raise errors.InvalidArgument("give either an image or --rootfs DIR")
    spec_opts: list[oci.SpecOpt] = []
    snapshotter_name = ""
    snapshot_key = ""
    prepared = False
    image_name = ""
    manifest = None
    try:
        try:
            client.containers.get(opts.id)
        except errors.NotFound:
            pass
        else:
            raise errors.AlreadyExists(f"container {opts.id!r} already exists")
        if opts.rootfs:
            rootfs = os.path.abspath(opts.rootfs)
            if not os.path.isdir(rootfs):
                raise errors.NotFound(f"rootfs directory {opts.rootfs} does not exist")
            reader = oci.rootfs_reader(rootfs)
            spec_opts.append(oci.with_rootfs(rootfs))
        else:
            from ctrpy.runtime.unpack import resolve_chain, unpack_image

            from ctrpy.runtime.images import find_image

            image = find_image(client, opts.image)
            image_name = image.name
            if opts.platform:  # strictly: NotFound naming the platforms the image provides
                from ctrpy.runtime.images import resolve_platform

                resolve_platform(client.content, image, opts.platform)
            snapshotter_name = opts.snapshotter or client.config["default_snapshotter"]
            chain_id = unpack_image(client, image, snapshotter_name, platform=opts.platform or None)
            manifest = resolve_chain(client, image, opts.platform or None)[0]
            image_config = manifest.config
            snapshotter = client.snapshotter(snapshotter_name)
            mounts = _prepare_rootfs(client, snapshotter, opts.id, chain_id)
            prepared = True
            test_hook("create-after-prepare")
            snapshot_key = opts.id
            reader = oci.mounts_reader(mounts)
            spec_opts.append(oci.with_image_config(image_config, reader))
        if opts.args:
            spec_opts.append(oci.with_process_args(opts.args))
        env = [e for f in opts.env_files for e in read_env_file(f)] + list(opts.env)
        if env:
            spec_opts.append(oci.with_env(env))
        if opts.cwd:
            spec_opts.append(oci.with_cwd(opts.cwd))
        if opts.user:
            uid, gid, extra = oci.resolve_user(opts.user, reader)
            spec_opts.append(oci.with_user(uid, gid, extra))
        if opts.group_add:
            spec_opts.append(oci.with_additional_gids(oci.resolve_groups(opts.group_add, reader)))
        if opts.tty:
            spec_opts.append(oci.with_tty(True))
        spec_opts.append(oci.with_hostname(opts.hostname or _default_hostname(opts.id)))
        if opts.read_only:
            spec_opts.append(oci.with_readonly_rootfs(True))
        if opts.privileged:
            spec_opts.append(oci.with_privileged())
        if opts.cap_add or opts.cap_drop:
            spec_opts.append(oci.with_capabilities(opts.cap_add, opts.cap_drop))
        if opts.mounts:
            spec_opts.append(oci.with_mounts([oci.parse_mount(m) for m in opts.mounts]))
        net_extension: dict[str, Any] | None = None
        if opts.network is not None:
            from ctrpy.runtime import network as net

            mode, _ = net.resolve(client, opts.network.network)  # an unknown network fails here, nothing made
            net_extension = opts.network.to_dict()
            if mode == "host":
                spec_opts.append(oci.with_net_host())
        elif opts.net_host:
            spec_opts.append(oci.with_net_host())
        if opts.memory_limit is not None:
            spec_opts.append(oci.with_memory_limit(opts.memory_limit))
        if opts.cpus is not None:
            spec_opts.append(oci.with_cpus(opts.cpus))
        if opts.cpu_shares is not None:
            spec_opts.append(oci.with_cpu_shares(opts.cpu_shares))
        if opts.pids_limit is not None:
            spec_opts.append(oci.with_pids_limit(opts.pids_limit))
        spec_opts.extend(opts.spec_opts)
        spec_opts.append(oci.with_cgroups_path(
            oci.cgroups_path(client.config.get("cgroup.parent", "ctrpy"), client.namespace, opts.id)))
        spec = oci.generate_spec(*spec_opts)
        if not spec["process"]["args"]:
            raise errors.InvalidArgument("no command given and the image has none")
        extensions: dict[str, Any] = {**opts.extensions, ETC_EXTENSION: {"net_host": opts.net_host,
                                                      "extra_hosts": [list(h) for h in opts.extra_hosts],
                                                      "dns": list(opts.dns)}}
        if net_extension is not None:
            from ctrpy.runtime.network import EXTENSION_KEY

            extensions[EXTENSION_KEY] = net_extension
        if manifest is not None:
            extensions[MANIFEST_EXTENSION] = manifest.descriptor()
        container = Container(id=opts.id, runtime_name=runtime_name, image=image_name,
                              snapshotter=snapshotter_name, snapshot_key=snapshot_key, spec=spec,
                              extensions=extensions, labels=dict(opts.labels))
        return client.containers.create(container)
    except BaseException:
        if prepared:
            try:
                client.snapshotter(snapshotter_name).remove(opts.id)
            except errors.CtrpyError:
                pass
        raise


CREATOR_LABEL = "ctrpy.io/creator"  # "<pid> <start time>" of the command that prepared a rootfs snapshot


def _prepare_rootfs(client: Client, snapshotter: Any, key: str, chain_id: str) -> Any:
    """Prepare the container's rootfs snapshot (key = container id). One left by a killed `run`/`create`/`rm`
    (no container names it, and the command that made it is gone) is removed and made again."""
    labels = {CREATOR_LABEL: proc_id(os.getpid())}
    try:
        return snapshotter.prepare(key, chain_id, labels)
    except errors.AlreadyExists:
        if not orphan_rootfs(client, snapshotter, key):
            raise
    snapshotter.remove(key)
    return snapshotter.prepare(key, chain_id, labels)


def orphan_rootfs(client: Client, snapshotter: Any, key: str) -> bool:
    """True if snapshot `key` is a container rootfs whose creator is gone and that no container uses."""
    try:
        info = snapshotter.stat(key)
    except errors.NotFound:
        return False
    creator = info.labels.get(CREATOR_LABEL)
    if not creator or proc_alive(creator):
        return False
    return not any(c.snapshot_key == key for c in client.containers.list())


def delete_container(client: Client, container_id: str, *, force: bool = False, keep_snapshot: bool = False) -> None:
    """Remove a container: a live task is refused unless `force` (then killed); a stopped task is cleaned up;
    the rootfs snapshot is removed unless `keep_snapshot`."""
    container = client.containers.get(container_id)
    tasks = client.tasks
    if tasks.exists(container_id):
        state = tasks.state(container_id)
        if state.status in (TaskStatus.RUNNING, TaskStatus.PAUSED, TaskStatus.UNKNOWN, TaskStatus.CREATED,
                            TaskStatus.RESTARTING) and not force:
            raise errors.FailedPrecondition(
                f"container {container_id!r} has a {state.status.value} task: stop it first "
                f"(`ctrpy stop {container_id}`) or use --force")
        tasks.delete(container_id, force=True)
    elif tasks.dir(container_id).path.exists() and not tasks.repair(container_id):
        raise errors.FailedPrecondition(f"container {container_id!r}: its task is being created")
    test_hook("rm-after-task")
    if container.snapshot_key and not keep_snapshot:
        # The snapshot goes before the record, as containerd does: a kill in between leaves a record that
        # `rm` removes again, never a snapshot that blocks the id. The record stops naming it first (the
        # snapshotter refuses to remove a container's root file system).
        from ctrpy.runtime.metadata.containers import Container

        client.containers.update(Container(id=container_id, runtime_name=container.runtime_name, snapshot_key=""),
                                 ["snapshotkey"])
        test_hook("rm-after-unref")
        try:
            client.snapshotter(container.snapshotter).remove(container.snapshot_key)
        except errors.NotFound:
            pass
        test_hook("rm-after-snapshot")
    client.containers.delete(container_id)

