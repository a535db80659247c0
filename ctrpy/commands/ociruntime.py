"""`ctrpy runtime`: the built-in runtime behind a runc-compatible command line.

    ctrpy runtime [--root DIR] create --bundle B [--pid-file F] [--console-socket S] ID
    ctrpy runtime start ID | state ID | kill [--all] ID [SIGNAL] | delete [--force] ID
    ctrpy runtime exec [--process JSON] [--pid-file F] [-d] [-t] ID [-- ARGS...]
    ctrpy runtime ps ID | pause ID | resume ID | list | run --bundle B ID

The verbs, flags and outputs follow runc's, so OCI tooling (and our tests) can drive ctrpy and runc the
same way. The default root is `<state>/runtime/ctrpy`, where `ctrpy tasks` keeps the same containers.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from ctrpy.commands._output import emit_json, table


def _runtime(ctx: click.Context) -> Any:
    from ctrpy.runtime.builtin import BuiltinRuntime

    return BuiltinRuntime(ctx.obj.runtime_root)


class RuncGroup(click.Group):
    """Like runc, also write a failure to --log (as a JSON line with --log-format json), where tools that
    drive OCI runtimes (containerd's shim, ctrpy's own OCI driver) look for the reason."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except Exception as exc:
            from ctrpy.runtime.errors import CtrpyError

            log = ctx.params.get("log")
            if log and isinstance(exc, CtrpyError):
                _log_error(log, ctx.params.get("log_format") or "text", str(exc))
            raise


def _log_error(path: str, fmt: str, message: str) -> None:
    from ctrpy.runtime import timefmt

    stamp = timefmt.format_seconds()
    line = json.dumps({"level": "error", "msg": message, "time": stamp}) if fmt == "json" else \
        f'time="{stamp}" level=error msg="{message}"'
    try:
        with open(path, "a") as f:
            f.write(line + "\n")
    except OSError:
        pass  # the error itself still reaches stderr


def _signal_number(text: str) -> int:
    import signal

    name = text.upper()
    if name.isdigit():
        return int(name)
    if not name.startswith("SIG"):
        name = "SIG" + name
    try:
        return int(getattr(signal.Signals, name))
    except AttributeError:
        raise click.BadParameter(f"unknown signal {text!r}") from None


@click.group("runtime", cls=RuncGroup)
@click.option("--root", "runtime_root", default=None, metavar="DIR",
              help="Runtime state directory  [default: <state>/runtime/ctrpy]")
@click.option("--log", default=None, metavar="FILE", help="Also write errors to FILE (as runc)")
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option("--systemd-cgroup", is_flag=True, help="Not supported: cgroupfs paths only")
@click.pass_context
def runtime(ctx: click.Context, runtime_root: str | None, log: str | None, log_format: str,
            systemd_cgroup: bool) -> None:
    """The built-in OCI runtime, driven like runc.

    \b
    Examples:
      ctrpy runtime run --bundle /tmp/bundle demo
      ctrpy runtime --root /run/ctrpy-rt list -q
    """
    if systemd_cgroup:
        raise click.UsageError("--systemd-cgroup is not supported: the built-in runtime manages cgroupfs paths")
    ctx.obj.runtime_root = runtime_root or str(Path(ctx.obj.state) / "runtime" / "ctrpy")


@runtime.command()
@click.option("--bundle", "-b", default=".", show_default=True, help="Bundle directory (holds config.json)")
@click.option("--pid-file", default=None, help="Write the init's pid here")
@click.option("--console-socket", default=None, help="Unix socket that receives the pty master")
@click.option("--preserve-fds", default=0, type=click.IntRange(0), help="Pass fds 3..3+N-1 to the container")
@click.option("--no-pivot", is_flag=True, hidden=True, help="Accepted for runc compatibility; always pivots")
@click.option("--no-new-keyring", is_flag=True, hidden=True, help="Accepted for runc compatibility")
@click.argument("container_id")
@click.pass_context
def create(ctx: click.Context, bundle: str, pid_file: str | None, console_socket: str | None, preserve_fds: int,
           no_pivot: bool, no_new_keyring: bool, container_id: str) -> None:
    """Create a container; its process waits until `start`.

    \b
    Examples:
      ctrpy runtime create --bundle /tmp/bundle --pid-file /tmp/demo.pid demo
      ctrpy runtime start demo
    """
    _runtime(ctx).create(container_id, Path(bundle), pid_file=Path(pid_file) if pid_file else None,
                         console_socket=Path(console_socket) if console_socket else None,
                         preserve_fds=preserve_fds)


@runtime.command()
@click.argument("container_id")
@click.pass_context
def start(ctx: click.Context, container_id: str) -> None:
    """Start a created container's process.

    \b
    Examples:
      ctrpy runtime create --bundle /tmp/bundle demo && ctrpy runtime start demo
    """
    _runtime(ctx).start(container_id)


@runtime.command()
@click.option("--bundle", "-b", default=".", show_default=True, help="Bundle directory (holds config.json)")
@click.option("--pid-file", default=None, help="Write the init's pid here")
@click.option("--console-socket", default=None, help="Unix socket that receives the pty master")
@click.option("--detach", "-d", is_flag=True, help="Do not wait for the container")
@click.option("--preserve-fds", default=0, type=click.IntRange(0), help="Pass fds 3..3+N-1 to the container")
@click.argument("container_id")
@click.pass_context
def run(ctx: click.Context, bundle: str, pid_file: str | None, console_socket: str | None, detach: bool,
        preserve_fds: int, container_id: str) -> None:
    """Create and start a container, wait for it and delete it; exits with its status.

    \b
    Examples:
      ctrpy runtime run --bundle /tmp/bundle demo
      ctrpy runtime run -d --pid-file /tmp/demo.pid -b /tmp/bundle demo
    """
    code = _runtime(ctx).run(container_id, Path(bundle), pid_file=Path(pid_file) if pid_file else None,
                             console_socket=Path(console_socket) if console_socket else None, detach=detach,
                             preserve_fds=preserve_fds)
    if code:
        ctx.exit(code)


@runtime.command()
@click.argument("container_id")
@click.pass_context
def state(ctx: click.Context, container_id: str) -> None:
    """Print a container's state as JSON.

    \b
    Examples:
      ctrpy runtime state demo
    """
    click.echo(json.dumps(_runtime(ctx).state(container_id), indent=2))


@runtime.command()
@click.option("--all", "-a", "all_", is_flag=True, help="Signal every process of the container")
@click.argument("container_id")
@click.argument("signal", default="SIGTERM")
@click.pass_context
def kill(ctx: click.Context, all_: bool, container_id: str, signal: str) -> None:
    """Send a signal (default SIGTERM) to the container's init.

    \b
    Examples:
      ctrpy runtime kill demo
      ctrpy runtime kill --all demo KILL
    """
    _runtime(ctx).kill(container_id, _signal_number(signal), all=all_)


@runtime.command()
@click.option("--force", "-f", is_flag=True, help="Kill a running container first")
@click.argument("container_id")
@click.pass_context
def delete(ctx: click.Context, force: bool, container_id: str) -> None:
    """Delete a stopped container (its state and cgroup).

    \b
    Examples:
      ctrpy runtime delete demo
      ctrpy runtime delete --force demo
    """
    _runtime(ctx).delete(container_id, force=force)


@runtime.command(name="exec", context_settings={"ignore_unknown_options": True})
@click.option("--process", "-p", "process_file", default=None, help="OCI process JSON file")
@click.option("--pid-file", default=None, help="Write the process's pid here")
@click.option("--console-socket", default=None, help="Unix socket that receives the pty master")
@click.option("--detach", "-d", is_flag=True, help="Return once the process runs")
@click.option("--tty", "-t", is_flag=True, help="Allocate a pty (needs --console-socket)")
@click.option("--cwd", default=None, help="Working directory")
@click.option("--env", "-e", multiple=True, help="KEY=VALUE, repeatable")
@click.option("--user", "-u", default=None, help="UID[:GID]")
@click.argument("container_id")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def exec_(ctx: click.Context, process_file: str | None, pid_file: str | None, console_socket: str | None,
          detach: bool, tty: bool, cwd: str | None, env: tuple[str, ...], user: str | None, container_id: str,
          args: tuple[str, ...]) -> None:
    """Run a process in a running container (exits with its status unless -d).

    \b
    Examples:
      ctrpy runtime exec demo ps
      ctrpy runtime exec --env DEBUG=1 --cwd /tmp demo sh -c 'echo $DEBUG'
      ctrpy runtime exec -d --process /tmp/process.json demo
    """
    rt = _runtime(ctx)
    if process_file:
        try:
            process = json.loads(Path(process_file).read_text())
        except (OSError, ValueError) as exc:
            raise click.BadParameter(f"cannot read process file {process_file}: {exc}") from None
    else:
        if not args:
            raise click.UsageError("give --process or the command to run after the container id")
        process = dict(rt.config(container_id).get("process") or {})
        process["args"] = list(args)
        process["terminal"] = tty
        if cwd:
            process["cwd"] = cwd
        process["env"] = list(process.get("env") or []) + list(env)
        if user:
            uid, _, gid = user.partition(":")
            process["user"] = {"uid": int(uid), "gid": int(gid or 0)}
    socket = Path(console_socket) if console_socket else None
    pidf = Path(pid_file) if pid_file else None
    if detach:
        rt.exec(container_id, process, pid_file=pidf, console_socket=socket)
        return
    code = rt.exec_wait(container_id, process, pid_file=pidf, console_socket=socket)
    if code:
        ctx.exit(code)


@runtime.command()
@click.option("--format", "-f", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.argument("container_id")
@click.pass_context
def ps(ctx: click.Context, fmt: str, container_id: str) -> None:
    """List the host pids of a container's processes.

    \b
    Examples:
      ctrpy runtime ps demo
      ctrpy runtime ps --format json demo
    """
    pids = _runtime(ctx).ps(container_id)
    if fmt == "json":
        click.echo(json.dumps(pids))
    else:
        table(["PID"], [[p] for p in pids])


@runtime.command()
@click.argument("container_id")
@click.pass_context
def pause(ctx: click.Context, container_id: str) -> None:
    """Freeze every process of a container.

    \b
    Examples:
      ctrpy runtime pause demo
    """
    _runtime(ctx).pause(container_id)


@runtime.command()
@click.argument("container_id")
@click.pass_context
def resume(ctx: click.Context, container_id: str) -> None:
    """Thaw a paused container.

    \b
    Examples:
      ctrpy runtime resume demo
    """
    _runtime(ctx).resume(container_id)


@runtime.command(name="list")
@click.option("--format", "-f", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.option("--quiet", "-q", is_flag=True, help="Print only container ids")
@click.pass_context
def list_(ctx: click.Context, fmt: str, quiet: bool) -> None:
    """List containers of this runtime root.

    \b
    Examples:
      ctrpy runtime list
      ctrpy runtime list -q
      ctrpy runtime --root /run/ctrpy-rt list --format json
    """
    states = _runtime(ctx).list()
    if quiet:
        for s in states:
            click.echo(s["id"])
    elif fmt == "json":
        emit_json(states)
    else:
        table(["ID", "PID", "STATUS", "BUNDLE", "CREATED"],
              [[s["id"], s["pid"], s["status"], s["bundle"], s["created"]] for s in states])
