"""`ctrpy tasks` (start/ls/kill/exec/ps/pause/resume/wait/rm/metrics/attach) and the top-level
`ctrpy ps`, `ctrpy exec`, `ctrpy logs`, like `ctr tasks`.

Foreground commands exit with the process's own exit status (128+N when killed by signal N).
"""

from __future__ import annotations

import signal as _signal
import sys
from typing import TYPE_CHECKING, Any

import click

from ctrpy.commands._listings import print_tasks
from ctrpy.commands._output import AliasGroup, emit_json, format_option, human_size, quiet_option, table

if TYPE_CHECKING:
    from ctrpy.runtime.client import Client


def parse_signal(text: str) -> int:
    """SIGTERM, TERM or 15."""
    if text.isdigit():
        return int(text)
    name = text.upper()
    name = name if name.startswith("SIG") else "SIG" + name
    try:
        return int(_signal.Signals[name])
    except KeyError:
        raise click.BadParameter(f"unknown signal {text!r}") from None


def exit_code(record: dict[str, Any] | None, fallback: Any = None) -> int:
    """A process's exit status as our exit code; 255 when it is unknown."""
    if record is None and fallback is not None:
        record = {"exit_status": fallback.exit_status}
    status = (record or {}).get("exit_status")
    if (status is None or status == 255) and (record or {}).get("reason"):
        # The status could not be observed: say why rather than pass 255 off as the process's own.
        click.echo(f"ctrpy: warning: exit status unknown: {record['reason']}", err=True)  # type: ignore[index]
    return 255 if status is None else int(status)


def run_failed(client: Client, container_id: str, exc: Any, *, remove: bool) -> None:
    """After a `run` failed: give `exc` run's reserved codes (125/126/127) and drop its task (and with --rm
    the container). A full disk keeps its own class (i15)."""
    from ctrpy.runtime import errors
    from ctrpy.runtime.containers import delete_container

    if not isinstance(exc, errors.NoSpace):
        exc.exit_code = getattr(exc, "run_exit_code", errors.EXIT_RUNTIME_FAILURE)
    if client.tasks.exists(container_id):
        client.tasks.delete(container_id, force=True)
    if remove:
        delete_container(client, container_id, force=True)


def run_attached(client: Client, container_id: str, attachment: Any, *, start: bool = False,
                 owner: bool = True, stdin: bool = True) -> int:
    """Start (optionally) and stream the task's stdio until it exits; returns its exit code."""
    tasks = client.tasks

    def forward(sig: int) -> None:
        try:
            tasks.kill(container_id, sig)
        except Exception:  # noqa: BLE001 - the task may be gone already
            pass

    try:
        if start:
            tasks.start(container_id)
        stdin_fd = sys.stdin.fileno() if sys.stdin is not None and stdin else None
        record = attachment.pump(stdin_fd, sys.stdout.fileno(), sys.stderr.fileno(), on_signal=forward,
                                 close_empty_stdin=owner)
    finally:
        attachment.close()
    if record is None:
        record = tasks.wait(container_id)
    return exit_code(record)


@click.group("tasks", cls=AliasGroup)
def tasks() -> None:
    """Manage tasks (the running processes of containers).

    \b
    Examples:
      ctrpy tasks start -d web
      ctrpy tasks ls
      ctrpy tasks kill -s SIGKILL web
    """


@tasks.command("start")
@click.argument("container_id")
@click.option("--detach", "-d", is_flag=True, help="Do not wait for the task; its output goes to `ctrpy logs`")
@click.pass_obj
def start(obj: Any, container_id: str, detach: bool) -> None:
    """Create and start the task of a container (attached unless -d).

    \b
    Examples:
      ctrpy tasks start web
      ctrpy tasks start -d web
    """
    client = obj.client
    client.tasks.create(container_id, stdin=not detach)
    if detach:
        client.tasks.start(container_id)
        return
    try:
        code = run_attached(client, container_id, client.tasks.attach(container_id, stdin=True), start=True)
    finally:
        client.tasks.delete(container_id, force=True)
    raise click.exceptions.Exit(code)


@tasks.command("ls")
@quiet_option
@format_option
@click.pass_obj
def ls(obj: Any, quiet: bool, fmt: str) -> None:
    """List tasks with their pid and status (and exit status once stopped).

    \b
    Examples:
      ctrpy tasks ls
      ctrpy tasks ls -q
      ctrpy tasks ls --format json
    """
    print_tasks(obj.client.tasks.list(), quiet, fmt)


@click.command("ps")
@quiet_option
@format_option
@click.pass_obj
def ps_all(obj: Any, quiet: bool, fmt: str) -> None:
    """List tasks (same as `tasks ls`).

    \b
    Examples:
      ctrpy ps
      ctrpy ps --format json
    """
    print_tasks(obj.client.tasks.list(), quiet, fmt)


@tasks.command("kill")
@click.argument("container_id")
@click.option("--signal", "-s", "sig", default="SIGTERM", show_default=True, help="Signal name or number")
@click.option("--all", "-a", "all_", is_flag=True, help="Signal every process of the task")
@click.option("--exec-id", default="", help="Signal an exec process instead")
@click.pass_obj
def kill(obj: Any, container_id: str, sig: str, all_: bool, exec_id: str) -> None:
    """Send a signal to a task.

    \b
    Examples:
      ctrpy tasks kill web
      ctrpy tasks kill -s SIGKILL --all web
      ctrpy tasks kill --exec-id bg -s 9 web
    """
    obj.client.tasks.kill(container_id, parse_signal(sig), all=all_, exec_id=exec_id)


@click.command("exec", context_settings={"allow_interspersed_args": False, "ignore_unknown_options": True})
@click.option("--exec-id", default="", help="Exec process id (generated when not given)")
@click.option("--tty", "-t", is_flag=True, help="Allocate a terminal")
@click.option("--detach", "-d", is_flag=True, help="Do not wait for the process")
@click.option("--env", "-e", multiple=True, metavar="KEY=VALUE", help="Set an environment variable")
@click.option("--cwd", default="", help="Working directory")
@click.option("--user", "-u", default="", help="User name or uid[:gid]")
@click.argument("container_id")
@click.argument("args", nargs=-1, required=True, type=click.UNPROCESSED)
@click.pass_obj
def exec_(obj: Any, exec_id: str, tty: bool, detach: bool, env: tuple[str, ...], cwd: str, user: str,
          container_id: str, args: tuple[str, ...]) -> None:
    """Run a process in a running task: ID COMMAND [ARG...]; exits with its exit status.

    \b
    Examples:
      ctrpy exec web cat /etc/hostname
      ctrpy exec -t web sh
      ctrpy tasks exec --exec-id bg -d web sleep 60
    """
    attachment = obj.client.tasks.exec(container_id, exec_id, list(args), tty=tty, stdin=not detach,
                                       env=list(env), cwd=cwd, user=user)
    exec_id = attachment.exec_id
    if detach:
        attachment.close()
        click.echo(exec_id)
        return
    try:
        record = attachment.pump(sys.stdin.fileno(), sys.stdout.fileno(), sys.stderr.fileno(),
                                 on_signal=lambda sig: obj.client.tasks.kill(container_id, sig, exec_id=exec_id))
    finally:
        attachment.close()
    if record is None:
        record = obj.client.tasks.wait(container_id, exec_id)
    raise click.exceptions.Exit(exit_code(record))


tasks.add_command(exec_, "exec")


@tasks.command("ps")
@click.argument("container_id")
@quiet_option
@format_option
@click.pass_obj
def ps(obj: Any, container_id: str, quiet: bool, fmt: str) -> None:
    """List the processes of a task (host pids).

    \b
    Examples:
      ctrpy tasks ps web
      ctrpy tasks ps -q web
    """
    procs = obj.client.tasks.ps(container_id)
    if quiet:
        for p in procs:
            click.echo(p["pid"])
    elif fmt == "json":
        emit_json(procs)
    else:
        table(["PID", "STATE", "COMMAND"], [(p["pid"], p["state"], p["command"]) for p in procs])


@tasks.command("pause")
@click.argument("container_ids", nargs=-1, required=True)
@click.pass_obj
def pause(obj: Any, container_ids: tuple[str, ...]) -> None:
    """Freeze every process of a task.

    \b
    Examples:
      ctrpy tasks pause web
    """
    for container_id in container_ids:
        obj.client.tasks.pause(container_id)


@tasks.command("resume")
@click.argument("container_ids", nargs=-1, required=True)
@click.pass_obj
def resume(obj: Any, container_ids: tuple[str, ...]) -> None:
    """Thaw a paused task.

    \b
    Examples:
      ctrpy tasks resume web
    """
    for container_id in container_ids:
        obj.client.tasks.resume(container_id)


@tasks.command("wait")
@click.argument("container_id")
@click.option("--exec-id", default="", help="Wait for an exec process instead")
@click.pass_obj
def wait(obj: Any, container_id: str, exec_id: str) -> None:
    """Wait for a task to exit; exits with its exit status (also after the supervisor is gone).

    \b
    Examples:
      ctrpy tasks wait web; echo $?
      ctrpy tasks wait --exec-id bg web
    """
    record = obj.client.tasks.wait(container_id, exec_id)
    raise click.exceptions.Exit(exit_code(record))


@tasks.command("rm")
@click.argument("container_ids", nargs=-1, required=True)
@click.option("--force", "-f", is_flag=True, help="Kill a running task first")
@click.pass_obj
def rm(obj: Any, container_ids: tuple[str, ...], force: bool) -> None:
    """Delete stopped tasks (running ones need --force); prints ID and exit status like ctr.

    \b
    Examples:
      ctrpy tasks rm web
      ctrpy tasks delete --force web
    """
    for container_id in container_ids:
        state = obj.client.tasks.delete(container_id, force=force)
        click.echo(f"{container_id}\t{'' if state.exit_status is None else state.exit_status}".rstrip())


@tasks.command("metrics")
@click.argument("container_id")
@format_option
@click.pass_obj
def metrics(obj: Any, container_id: str, fmt: str) -> None:
    """Show a task's cgroup metrics: memory usage/limit, cpu usage, pids.

    \b
    Examples:
      ctrpy tasks metrics web
      ctrpy tasks metrics --format json web
    """
    m = obj.client.tasks.metrics(container_id)
    if fmt == "json":
        emit_json(m)
        return
    mem, cpu, pids = m.get("memory", {}), m.get("cpu", {}), m.get("pids", {})
    table(["ID", "MEMORY", "LIMIT", "OOM KILLS", "CPU (ns)", "PIDS", "PIDS LIMIT"],
          [(container_id, human_size(mem.get("usage")), human_size(mem.get("limit")), mem.get("oom_kills", 0),
            cpu.get("usage_ns", 0), pids.get("current") if pids.get("current") is not None else "-",
            pids.get("limit") if pids.get("limit") is not None else "-")])


@tasks.command("attach")
@click.argument("container_id")
@click.pass_obj
def attach(obj: Any, container_id: str) -> None:
    """Attach to a task's stdio until it exits; exits with its exit status.

    \b
    Examples:
      ctrpy tasks attach web
    """
    attachment = obj.client.tasks.attach(container_id, stdin=True)
    raise click.exceptions.Exit(run_attached(obj.client, container_id, attachment, owner=False))


@click.command("logs")
@click.argument("container_id")
@click.option("--follow", "-f", is_flag=True, help="Keep printing new output until the task exits")
@click.option("--tail", type=int, default=None, help="Only the last N lines")
@click.pass_obj
def logs(obj: Any, container_id: str, follow: bool, tail: int | None) -> None:
    """Show a task's output.

    \b
    Examples:
      ctrpy logs web
      ctrpy logs -f --tail 20 web
    """
    out = sys.stdout.buffer
    for chunk in obj.client.tasks.logs(container_id, tail=tail, follow=follow):
        out.write(chunk)
        out.flush()
