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


# ---- `ctrpy system boot` (restart policies after a host reboot; runtime/restart.py) ---------------------

@click.group("system", cls=AliasGroup)
def system() -> None:
    """Host-level jobs.

    \b
    Examples:
      ctrpy system boot
    """


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
