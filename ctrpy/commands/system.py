"""`ctrpy version` and `ctrpy info`."""

from __future__ import annotations

from typing import Any

import click

from ctrpy.commands._output import AliasGroup, emit_json, format_option, table


@click.command("version")
@format_option
def version(fmt: str) -> None:
    """Show ctrpy's and the C helper's versions.

    \b
    Examples:
      ctrpy version
      ctrpy version --format json
    """
    import ctrpy
    from ctrpy.runtime.system import helper_version

    helper = helper_version()
    if fmt == "json":
        emit_json({"version": ctrpy.__version__, "helper_version": helper})
        return
    click.echo(f"ctrpy: {ctrpy.__version__}")
    click.echo(f"helper: {helper or 'missing (reinstall ctrpy: the C helper was not built)'}")


@click.command("info")
@format_option
@click.pass_obj
def info(obj: Any, fmt: str) -> None:
    """Show root/state dirs, snapshotters, runtimes and the cgroup mode.

    \b
    Examples:
      ctrpy info
      ctrpy --root /srv/ctrpy info --format json
    """
    from ctrpy.runtime import system

    data = system.info(obj.config, obj.root, obj.state, obj.namespace)
    if fmt == "json":
        emit_json(data)
        return
    rows = [("Version", data["version"]), ("Helper", data["helper_version"] or "missing"),
            ("Root", data["root"]), ("State", data["state"]), ("Namespace", data["namespace"]),
            ("Config", data["config"] or "(defaults)"), ("Cgroup mode", data["cgroup_mode"])]
    for sn in data["snapshotters"]:
        rows.append((f"Snapshotter {sn['name']}",
                     ("supported" if sn["supported"] else "unsupported") + (" (default)" if sn["default"] else "")))
    for rt in data["runtimes"]:
        found = (rt["path"] or "built in") if rt["found"] else "missing"
        detail = f"{found}" + (f", {rt['version']}" if rt["version"] else "") + (" (default)" if rt["default"] else "")
        rows.append((f"Runtime {rt['name']}", detail))
    table(["KEY", "VALUE"], rows)


@click.group("system", cls=AliasGroup)
def system() -> None:
    """Host-level jobs: disk usage and pruning (df, prune), boot, and the same info as `ctrpy info`.

    \b
    Examples:
      ctrpy system df -v
      ctrpy system prune -a -f
      ctrpy system boot
    """


system.add_command(info)


@system.command("df")
@click.option("--verbose", "-v", is_flag=True, help="Per image (shared and unique size) and per container")
@format_option
@click.pass_obj
def df(obj: Any, verbose: bool, fmt: str) -> None:
    """Show disk usage of images, containers, volumes and build cache.

    Image sizes are blobs plus unpacked snapshots measured on disk; SHARED SIZE is what other images also hold.

    \b
    Examples:
      ctrpy system df
      ctrpy system df -v --format json
    """
    from ctrpy.commands._output import human_size
    from ctrpy.commands.imagetools import _age, short_id
    from ctrpy.runtime.space import disk_usage

    usage = disk_usage(obj.client)
    if fmt == "json":
        emit_json(usage.to_dict() if verbose else usage.summary())
        return

    def reclaim(row: dict[str, Any]) -> str:
        pct = f" ({row['Reclaimable'] * 100 // row['Size']}%)" if row["Size"] else ""
        return human_size(row["Reclaimable"]) + pct

    table(["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"],
          [[r["Type"], r["TotalCount"], r["Active"], human_size(r["Size"]),
            reclaim(r)] for r in usage.summary()])
    if not verbose:
        return
    click.echo("\nImages space usage:\n")
    table(["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE", "SHARED SIZE", "UNIQUE SIZE", "CONTAINERS"],
          [[i.repository, i.tag, short_id(i.id), _age(i.created), human_size(i.size), human_size(i.shared_size),
            human_size(i.unique_size), i.containers] for i in usage.images])
    click.echo("\nContainers space usage:\n")
    table(["CONTAINER ID", "IMAGE", "STATUS", "SIZE"],
          [[c.id, c.image, c.status, human_size(c.size)] for c in usage.containers])


@system.command("prune")
@click.option("--all", "-a", "all_", is_flag=True, help="Remove every unused image, not only dangling ones")
@click.option("--volumes", is_flag=True, help="Also remove unused local volumes")
@click.option("--force", "-f", is_flag=True, help="Do not ask for confirmation")
@format_option
@click.pass_obj
def prune(obj: Any, all_: bool, volumes: bool, force: bool, fmt: str) -> None:
    """Remove stopped containers, dangling (-a: unused) images, and free the space.

    \b
    Examples:
      ctrpy system prune -f
      ctrpy system prune -a --volumes -f
    """
    from ctrpy.commands._output import human_size
    from ctrpy.runtime.space import system_prune

    if not force:
        what = ["all stopped containers", "all images without at least one container" if all_
                else "all dangling images"]
        if volumes:
            what.append("all local volumes not used by at least one container")
        text = "This will remove:\n" + "".join(f"  - {w}\n" for w in what) + "Are you sure you want to continue?"
        if not click.confirm(text, err=True):
            return
    report = system_prune(obj.client, all=all_, volumes=volumes)
    for note in report.notes + report.failures:
        click.echo(f"ctrpy: warning: {note}", err=True)
    if fmt == "json":
        emit_json(report.to_dict())
        return
    for cid in report.containers:
        click.echo(f"deleted container: {cid}")
    for name in report.images:
        click.echo(f"deleted image: {name}")
    for volume in report.volumes:
        click.echo(f"deleted volume: {volume}")
    click.echo(f"Total reclaimed space: {human_size(report.bytes_freed)}")


# ---- `ctrpy system boot` (restart policies after a host reboot; runtime/restart.py) ---------------------

@system.command("boot")
@format_option
@click.pass_obj
def boot(obj: Any, fmt: str) -> None:
    """Start the containers whose restart policy asks for it, in every namespace.

    Run at host boot by contrib/systemd/ctrpy-boot.service.

    \b
    Examples:
      ctrpy system boot
      ctrpy --state /run/ctrpy system boot --format json
    """
    from ctrpy.runtime import errors, restart

    results = restart.boot(obj.client)
    if fmt == "json":
        emit_json([r.to_dict() for r in results])
    else:
        table(["NAMESPACE", "CONTAINER", "POLICY", "RESULT"],
              [(r.namespace, r.id, r.policy, "started" if r.started else f"failed: {r.error}") for r in results])
    failed = [r for r in results if not r.started]
    if failed:
        raise errors.Unavailable(f"{len(failed)} container(s) could not be started at boot: "
                                 + ", ".join(f"{r.namespace}/{r.id}" for r in failed))
