"""The docker/nerdctl lifecycle over containers and tasks: state, start, stop, restart, rm, inspect, ps rows.

A container's docker state comes from its task when it has one, else from the last exit recorded in its
record when the task was reaped:

    task RUNNING / PAUSED / CREATED     -> running / paused / created (Up ...)
    task RESTARTING (policy back-off)   -> restarting (Restarting (N) ... ago), Running and Restarting true
    task STOPPED (not reaped yet)       -> exited, with the task's exit status
    no task, an exit recorded           -> exited (the record's STATE_KEY in the DOCKER_EXT extension)
    no task, nothing recorded           -> created (never started)

`reap()` records a stopped task's exit in the container record and deletes the task (its mounts, cgroup
and network go), which is what `run` without --rm, `stop` and `start` of an exited container do: an exited
container holds no resources, as with docker, and starts again with `start`.
"""

from __future__ import annotations

import re
import signal as _signal
import time
from typing import TYPE_CHECKING, Any

from ctrpy.runtime import errors
from ctrpy.runtime.dockerrun import DEFAULT_STOP_TIMEOUT, DOCKER_EXT, command_of, docker_config
from ctrpy.runtime.names import NAME_LABEL, name_of, resolve
from ctrpy.runtime.tasks import MANIFEST_EXTENSION, TaskStatus

if TYPE_CHECKING:
    from ctrpy.runtime.client import Client

STATE_KEY = "state"
ZERO_TIME = "0001-01-01T00:00:00Z"


def parse_signal(text: str | int) -> int:
    """SIGTERM, TERM or 15."""
    if isinstance(text, int) or str(text).isdigit():
        return int(text)
    name = str(text).upper()
    name = name if name.startswith("SIG") else "SIG" + name
    try:
        return int(_signal.Signals[name])
    except KeyError:
        raise errors.InvalidArgument(f"unknown signal {text!r}") from None


# ------------------------------------------------------------------------------------------------ state

def state(client: Client, container: Any, tasks_known: dict[str, Any] | None = None) -> dict[str, Any]:
    """docker's State object for a container record. `tasks_known` (listings: every task's TaskState by ID,
    from one TaskManager.list()) saves the per-container look-ups."""
    cid = container.id
    recorded = docker_config(container).get(STATE_KEY) or {}
    out = {"Status": "created", "Running": False, "Paused": False, "Restarting": False, "OOMKilled": False,
           "Dead": False, "Pid": 0, "ExitCode": 0, "Error": "", "StartedAt": recorded.get("started_at") or ZERO_TIME,
           "FinishedAt": recorded.get("finished_at") or ZERO_TIME}
    if recorded:
        out.update(Status="exited", ExitCode=int(recorded.get("exit_code") or 0),
                   OOMKilled=bool(recorded.get("oom_killed")))
    tasks = client.tasks
    if tasks_known is not None:
        st = tasks_known.get(cid)
        if st is None:
            return out
    elif not tasks.exists(cid):
        return out
    else:
        try:
            st = tasks.state(cid)
        except errors.NotFound:
            return out
    td = tasks.dir(cid)
    rs = td.restart() if st.status != TaskStatus.CREATED else {}
    # The last start: the supervisor's last restart, else the task's creation.
    started = rs.get("started_at") or (td.task() or {}).get("created_at") or ZERO_TIME
    out.update(StartedAt=started, FinishedAt=ZERO_TIME, ExitCode=0, OOMKilled=False, Pid=st.pid)
    if st.status == TaskStatus.RESTARTING:
        # In the supervisor's back-off between two runs: docker counts it as running (no process though).
        out.update(Status="restarting", Running=True, Restarting=True, Pid=0,
                   ExitCode=int(st.exit_status if st.exit_status is not None else rs.get("last_exit_status") or 0),
                   FinishedAt=_backoff_began(rs))
    elif st.status == TaskStatus.RUNNING:
        out.update(Status="running", Running=True)
    elif st.status == TaskStatus.PAUSED:
        out.update(Status="paused", Running=True, Paused=True)
    elif st.status == TaskStatus.CREATED:
        out.update(Status="created", Pid=st.pid)
    elif st.status == TaskStatus.STOPPED:
        out.update(Status="exited", Pid=0, ExitCode=int(st.exit_status if st.exit_status is not None else 255),
                   OOMKilled=st.oom_killed, FinishedAt=st.exited_at or ZERO_TIME)
    else:
        out.update(Status="unknown", Error=st.reason)
    return out


def _backoff_began(rs: dict[str, Any]) -> str:
    """When the back-off began (the last exit): restart.json's next start minus its delay."""
    nxt = str(rs.get("next_start_at") or "")
    if not nxt:
        return ZERO_TIME
    from ctrpy.runtime import timefmt

    return timefmt.format(timefmt.parse(nxt) - int(rs.get("delay_ms") or 0) / 1000)


def restart_count(client: Client, container: Any) -> int:
    """docker's RestartCount: restarts by the policy since the container was last started by hand."""
    tasks = client.tasks
    if tasks.exists(container.id):
        td = tasks.dir(container.id)
        return int(td.restart().get("restart_count") or (td.exit() or {}).get("restart_count") or 0)
    return int((docker_config(container).get(STATE_KEY) or {}).get("restart_count") or 0)


def reap(client: Client, container_id: str, record: bool = True) -> None:
    """Record a stopped task's exit in the container record (unless not `record`), then delete the task."""
    tasks = client.tasks
    if not tasks.exists(container_id):
        return
    st = tasks.state(container_id)
    if st.status != TaskStatus.STOPPED:
        return
    if record:
        try:
            container = client.containers.get(container_id)
        except errors.NotFound:
            container = None
        if container is not None:
            td = tasks.dir(container_id)
            started = td.restart().get("started_at") or (td.task() or {}).get("created_at") or ""
            ext = dict(docker_config(container))
            ext[STATE_KEY] = {"exit_code": st.exit_status if st.exit_status is not None else 255,
                              "finished_at": st.exited_at, "started_at": started, "oom_killed": st.oom_killed,
                              "restart_count": restart_count(client, container)}
            container.extensions = {**container.extensions, DOCKER_EXT: ext}
            client.containers.update(container, [f"extensions.{DOCKER_EXT}"])
        from ctrpy.runtime import logs

        logs.save(client, container_id)
    tasks.delete(container_id, force=True)


def was_oom_killed(client: Client, container_id: str) -> bool:
    try:
        container = client.containers.get(container_id)
    except errors.NotFound:
        return False
    return bool(state(client, container).get("OOMKilled"))


def _running(st: dict[str, Any]) -> bool:
    return st["Status"] in ("running", "paused", "restarting", "unknown")


# ---------------------------------------------------------------------------------------------- actions

def start(client: Client, ref: str, *, stdin: bool | None = None, begin: bool = True) -> tuple[str, bool]:
    """Create the container's task (anew after an exit) and, with `begin`, start it. Returns (ID, created):
    `created` is False when it was already running (docker's start is then a no-op)."""
    cid = resolve(client, ref)
    container = client.containers.get(cid)
    tasks = client.tasks
    if tasks.exists(cid):
        st = tasks.state(cid)
        if st.status in (TaskStatus.RUNNING, TaskStatus.PAUSED, TaskStatus.RESTARTING):
            return cid, False  # RESTARTING: its supervisor starts it again after the back-off
        if st.status == TaskStatus.CREATED:
            if begin:
                tasks.start(cid)
            return cid, True
        reap(client, cid)
    open_stdin = bool(docker_config(container).get("open_stdin")) if stdin is None else stdin
    tasks.create(cid, stdin=open_stdin)
    _refresh_peers(client, container)
    if begin:
        tasks.start(cid)
    return cid, True


def stop(client: Client, ref: str, timeout: int | None = None, signal: str | int | None = None) -> str:
    """The stop signal, then SIGKILL after `timeout` seconds; the stopped task is reaped."""
    cid = resolve(client, ref)
    container = client.containers.get(cid)
    tasks = client.tasks
    if not tasks.exists(cid):
        return cid
    cfg = docker_config(container)
    sig = parse_signal(signal or cfg.get("stop_signal") or "SIGTERM")
    if timeout is None:
        timeout = cfg.get("stop_timeout")
        timeout = DEFAULT_STOP_TIMEOUT if timeout is None else int(timeout)
    st = tasks.state(cid)
    if st.status == TaskStatus.CREATED:
        tasks.delete(cid, force=True)
        return cid
    if st.status in (TaskStatus.RUNNING, TaskStatus.PAUSED, TaskStatus.UNKNOWN, TaskStatus.RESTARTING):
        # RESTARTING: the kill ends the back-off (no further restart), and the supervisor records the exit.
        if st.status == TaskStatus.PAUSED:
            tasks.resume(cid)
        try:
            tasks.kill(cid, sig, all=False)
        except errors.FailedPrecondition:
            pass
        if not _wait_exit(client, cid, max(0, timeout)):
            try:
                tasks.kill(cid, _signal.SIGKILL, all=True)
            except errors.FailedPrecondition:
                pass
            _wait_exit(client, cid, 10)
    reap(client, cid)
    _refresh_peers(client, container)
    client.events.publish("/containers/stop", {"id": cid})
    return cid


def _refresh_peers(client: Client, container: Any) -> None:
    from ctrpy.runtime import peers
    from ctrpy.runtime.network import EXTENSION_KEY

    if peers.wants_peers((container.extensions.get(EXTENSION_KEY) or {}).get("network")):
        peers.refresh(client)


def _wait_exit(client: Client, cid: str, seconds: float) -> bool:
    td = client.tasks.dir(cid)
    deadline = time.monotonic() + seconds
    while True:
        if td.exit() is not None or not td.exists():
            return True
        if td.supervisor_pid() is None:
            return client.tasks.state(cid).status == TaskStatus.STOPPED
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


def kill(client: Client, ref: str, signal: str | int = "SIGKILL") -> str:
    cid = resolve(client, ref)
    sig = parse_signal(signal)
    st = state(client, client.containers.get(cid))
    if not _running(st):
        raise errors.FailedPrecondition(f"container {ref} is not running (start it: `ctrpy start {ref}`)")
    client.tasks.kill(cid, sig)
    return cid


def remove(client: Client, ref: str, *, force: bool = False, volumes: bool = False) -> str:
    from ctrpy.runtime.containers import delete_container

    cid = resolve(client, ref)
    container = client.containers.get(cid)
    st = state(client, container)
    if _running(st) and not force:
        raise errors.FailedPrecondition(
            f"container {ref} is {st['Status']}: stop it first (`ctrpy stop {ref}`) or use `ctrpy rm -f {ref}`")
    delete_container(client, cid, force=True)
    _refresh_peers(client, container)
    from ctrpy.runtime import logs

    logs.discard(client, cid)
    if volumes:
        from ctrpy.runtime.volumes import VolumeStore

        store = VolumeStore(client)
        for vol in docker_config(container).get("volumes") or []:
            if re.fullmatch(r"[0-9a-f]{64}", vol) and not store.users(vol):  # anonymous ones only, as docker
                try:
                    store.remove(vol)
                except errors.NotFound:
                    pass
    return cid


def auto_remove_due(client: Client, container: Any) -> bool:
    """`run -d --rm`: with no daemon to watch it, a container whose task exited is removed by the next
    command that looks at it (ps, wait, start). True when it was removed."""
    if not docker_config(container).get("auto_remove") or not client.tasks.exists(container.id):
        return False
    if client.tasks.state(container.id).status != TaskStatus.STOPPED:
        return False
    try:
        remove(client, container.id, force=True, volumes=True)
    except errors.NotFound:
        pass
    return True


def wait(client: Client, ref: str) -> int:
    cid = resolve(client, ref)
    if client.tasks.exists(cid):
        record = client.tasks.wait(cid)
        status = record.get("exit_status")
        auto_remove_due(client, client.containers.get(cid))
        return 255 if status is None else int(status)
    st = state(client, client.containers.get(cid))
    return int(st["ExitCode"])


def pause(client: Client, ref: str) -> str:
    cid = resolve(client, ref)
    if not client.tasks.exists(cid):
        raise errors.FailedPrecondition(f"container {ref} is not running (start it: `ctrpy start {ref}`)")
    client.tasks.pause(cid)
    return cid


def unpause(client: Client, ref: str) -> str:
    cid = resolve(client, ref)
    if not client.tasks.exists(cid):
        raise errors.FailedPrecondition(f"container {ref} is not paused")
    client.tasks.resume(cid)
    return cid


# ------------------------------------------------------------------------------------------- inspection

def _ports(client: Client, container: Any) -> dict[str, list[dict[str, str]] | None]:
    """docker's NetworkSettings.Ports: {"80/tcp": [{"HostIp", "HostPort"}]} (None for unpublished)."""
    from ctrpy.runtime.network import EXTENSION_KEY

    requested = (container.extensions.get(EXTENSION_KEY) or {}).get("ports") or []
    out: dict[str, list[dict[str, str]] | None] = {}
    for p in requested:
        out.setdefault(f"{p['container_port']}/{p['protocol']}", None)
    if requested:
        from ctrpy.runtime.network import network_store

        for row in network_store(client).ports(client.namespace, container.id):
            key = f"{row['container_port']}/{row['protocol']}"
            entries = out.get(key) or []
            entries.append({"HostIp": row["host_ip"], "HostPort": str(row["host_port"])})
            out[key] = entries
    return out


def _networks(client: Client, container: Any) -> dict[str, dict[str, Any]]:
    from ctrpy.runtime.network import EXTENSION_KEY

    request = container.extensions.get(EXTENSION_KEY)
    if request is None:
        return {}
    name = request.get("network") or str(client.config.get("network.default", "bridge") or "bridge")
    if name in ("host", "none"):
        return {name: {"IPAddress": "", "Gateway": "", "IPPrefixLen": 0, "MacAddress": ""}}
    from ctrpy.runtime.network import network_store

    out = {}
    for att in network_store(client).attachments(client.namespace, container.id):
        if att.netns:
            out[att.network] = {"IPAddress": att.address or "", "Gateway": "", "IPPrefixLen": 0,
                                "MacAddress": "", "NetworkID": att.network}
    return out


def port_strings(ports: dict[str, list[dict[str, str]] | None]) -> list[str]:
    """`0.0.0.0:8080->80/tcp` for each published port (docker's PORTS column)."""
    out = []
    for key, bindings in ports.items():
        for b in bindings or []:
            out.append(f"{b['HostIp']}:{b['HostPort']}->{key}")
    return out


def inspect(client: Client, ref: str) -> dict[str, Any]:
    """docker-shaped JSON of a container."""
    container = client.containers.get(resolve(client, ref))
    cfg = docker_config(container)
    spec = container.spec or {}
    process = spec.get("process") or {}
    st = state(client, container)
    ports = _ports(client, container) if st["Running"] else {}
    networks = _networks(client, container) if st["Running"] else {}
    mounts = []
    volumes = set(cfg.get("volumes") or [])
    for m in cfg.get("mounts") or []:
        src = m.get("source", "")
        vol = src.split("/")[-2] if src.endswith("/_data") else ""
        kind = "volume" if vol in volumes else m.get("type")
        mounts.append({"Type": kind, **({"Name": vol, "Driver": "local"} if kind == "volume" else {}),
                       "Source": src, "Destination": m.get("destination", ""), "Mode": "",
                       "RW": "ro" not in (m.get("options") or []),
                       "Propagation": next((o for o in m.get("options") or [] if o.startswith("r") and
                                            o in ("rshared", "rslave", "rprivate")), "")})
    address = next((n["IPAddress"] for n in networks.values() if n.get("IPAddress")), "")
    host_config = dict(cfg.get("host_config") or {})
    host_config.setdefault("NetworkMode", "bridge")
    host_config["RestartPolicy"] = _restart_policy(container)
    host_config["LogConfig"] = {"Type": "json-file", "Config": cfg.get("log_opts") or {}}
    host_config["Runtime"] = container.runtime_name
    manifest = container.extensions.get(MANIFEST_EXTENSION) or {}
    return {
        "Id": container.id,
        "Name": "/" + name_of(container),
        "Created": container.created_at,
        "Path": (command_of(container) or [""])[0],
        "Args": command_of(container)[1:],
        "State": st,
        "Image": container.image,
        "RestartCount": restart_count(client, container),
        "Platform": (manifest.get("platform") or {}).get("os") or "linux",
        "ImageManifestDescriptor": manifest or None,
        "Driver": container.snapshotter or "",
        "Mounts": mounts,
        "Config": {
            "Hostname": spec.get("hostname", ""), "Domainname": spec.get("domainname", ""),
            "User": _user(process), "Tty": bool(process.get("terminal")), "OpenStdin": bool(cfg.get("open_stdin")),
            "Env": list(process.get("env") or []), "Cmd": cfg.get("cmd") or command_of(container),
            "Entrypoint": [cfg["entrypoint"]] if cfg.get("entrypoint") else None,
            "Image": cfg.get("image") or container.image, "WorkingDir": process.get("cwd", ""),
            "Labels": {k: v for k, v in container.labels.items()},
            "StopSignal": cfg.get("stop_signal") or "SIGTERM",
            "StopTimeout": cfg.get("stop_timeout"),
            "ExposedPorts": {k: {} for k in ports} if ports else None,
        },
        "HostConfig": host_config,
        "NetworkSettings": {"IPAddress": address, "Ports": ports, "Networks": networks},
    }


def _user(process: dict[str, Any]) -> str:
    user = process.get("user") or {}
    uid, gid = user.get("uid", 0), user.get("gid", 0)
    return "" if not uid and not gid else f"{uid}:{gid}"


def _restart_policy(container: Any) -> dict[str, Any]:
    from ctrpy.runtime.restart import LABEL

    policy = container.labels.get(LABEL, "no")
    name, _, count = policy.partition(":")
    return {"Name": name, "MaximumRetryCount": int(count or 0)}


def _short_command(container: Any) -> str:
    return " ".join(command_of(container))


def _human_duration(seconds: float) -> str:
    """docker's units.HumanDuration: 'Less than a second', '3 seconds', 'About a minute', '2 hours'..."""
    s = int(seconds)
    if s < 1:
        return "Less than a second"
    if s == 1:
        return "1 second"
    if s < 60:
        return f"{s} seconds"
    minutes = s // 60
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = round(s / 3600)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    return f"{hours // (24 * 7)} weeks"


def _since(stamp: str) -> float:
    from ctrpy.runtime import timefmt

    if not stamp or stamp.startswith("0001"):
        return 0.0
    return max(0.0, time.time() - timefmt.parse(stamp))


def status_text(st: dict[str, Any]) -> str:
    """docker's STATUS column: Up 3 seconds, Up 2 minutes (Paused), Exited (0) 5 seconds ago, Created."""
    if st["Status"] == "running":
        return "Up " + _human_duration(_since(st["StartedAt"]))
    if st["Status"] == "paused":
        return "Up " + _human_duration(_since(st["StartedAt"])) + " (Paused)"
    if st["Status"] == "exited":
        return f"Exited ({st['ExitCode']}) {_human_duration(_since(st['FinishedAt']))} ago"
    if st["Status"] == "restarting":
        return f"Restarting ({st['ExitCode']}) {_human_duration(_since(st['FinishedAt']))} ago"
    if st["Status"] == "unknown":
        return "Unknown"
    return "Created"


def summary(client: Client, container: Any, *, size: bool = False, st: dict[str, Any] | None = None) -> dict[str, Any]:
    """One `ps` row (docker's field names, for --format templates too); `st` is state() if known already."""
    st = st or state(client, container)
    ports = port_strings(_ports(client, container)) if st["Running"] else []
    cfg = docker_config(container)
    row = {
        "ID": container.id, "Image": cfg.get("image") or container.image or "-",
        "Command": _short_command(container), "CreatedAt": container.created_at,
        "RunningFor": _human_duration(_since(container.created_at)) + " ago",
        "Status": status_text(st), "State": st["Status"], "Ports": ", ".join(ports), "Names": name_of(container),
        "Labels": ",".join(f"{k}={v}" for k, v in sorted(container.labels.items())),
        "LabelsMap": dict(container.labels), "ExitCode": st["ExitCode"],
    }
    if size:
        row["Size"] = _upper_size(client, container)
    return row


def _upper_size(client: Client, container: Any) -> str:
    """The container's writable layer size (docker's SIZE column)."""
    if not container.snapshot_key:
        return "0B"
    try:
        usage = client.snapshotter(container.snapshotter).usage(container.snapshot_key)
        return f"{getattr(usage, 'size', 0)}B"
    except errors.CtrpyError:
        return "-"


def _match(client: Client, container: Any, flt: dict[str, list[str]], st: dict[str, Any]) -> bool:
    for key, values in flt.items():
        ok = False
        for value in values:
            if key == "status":
                ok = ok or st["Status"] == value
            elif key == "name":
                ok = ok or value in name_of(container)
            elif key == "id":
                ok = ok or container.id.startswith(value)
            elif key == "label":
                k, sep, v = value.partition("=")
                ok = ok or (k in container.labels and (not sep or container.labels[k] == v))
            elif key == "ancestor":
                image = docker_config(container).get("image") or container.image
                ok = ok or value in (image, container.image) or container.image.startswith(value + ":") \
                    or container.image.endswith("/" + value) or container.image.endswith("/" + value + ":latest") \
                    or image.split(":")[0] == value
            elif key == "exited":
                ok = ok or (st["Status"] == "exited" and str(st["ExitCode"]) == value)
            else:
                raise errors.InvalidArgument(f"invalid filter {key!r}: use status, name, label, ancestor, id, exited")
        if not ok:
            return False
    return True


def parse_filters(filters: list[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for f in filters:
        key, sep, value = f.partition("=")
        if not sep:
            raise errors.InvalidArgument(f"invalid filter {f!r}: expected KEY=VALUE")
        if key == "status" and value not in ("created", "running", "paused", "exited", "restarting", "removing",
                                             "dead", "unknown"):
            raise errors.InvalidArgument(f"invalid filter status={value}: use created, running, paused, restarting or exited")
        out.setdefault(key, []).append(value)
    return out


def list_containers(client: Client, *, all: bool = False, filters: list[str] | None = None, last: int = 0,
                    size: bool = False) -> list[dict[str, Any]]:
    """`ps` rows, newest first: running ones only unless `all` (or a filter, or -n/-l, as docker)."""
    from ctrpy.runtime.network import EXTENSION_KEY

    flt = parse_filters(filters or [])
    rows = []
    # Only what a row shows is read (PS_FIELDS below): no spec or extension document is parsed whole.
    views = client.containers.views(spec=[("process", "args")],
                                    extensions=[(DOCKER_EXT, key) for key in PS_DOCKER_FIELDS] +
                                    [(EXTENSION_KEY, "ports")])
    containers = sorted(views, key=lambda c: c.created_at, reverse=True)
    if last:
        containers = containers[:last]
        all = True
    known = {t.id: t for t in client.tasks.list()}
    for c in containers:
        st = state(client, c, known)
        if st["Status"] == "exited" and auto_remove_due(client, c):
            continue
        if not all and not flt.get("status") and not _running(st):
            continue
        if not _match(client, c, flt, st):
            continue
        rows.append(summary(client, c, size=size, st=st))
    return rows


# The docker-extension fields a `ps` row reads (state, summary, command_of, _match, auto_remove_due): list_containers
# extracts only these. A new field read on that path must be added here.
PS_DOCKER_FIELDS = ("image", "auto_remove", "init", STATE_KEY)


def top(client: Client, ref: str) -> list[dict[str, Any]]:
    cid = resolve(client, ref)
    if not client.tasks.exists(cid):
        raise errors.FailedPrecondition(f"container {ref} is not running (start it: `ctrpy start {ref}`)")
    procs: list[dict[str, Any]] = client.tasks.ps(cid)
    return procs


def stats(client: Client, ref: str) -> dict[str, Any]:
    cid = resolve(client, ref)
    container = client.containers.get(cid)
    out: dict[str, Any] = {"ID": cid, "Name": name_of(container), "memory": {}, "cpu": {}, "pids": {}}
    # Not while restarting: between two runs there is no process (and its cgroup may be gone), as docker.
    if client.tasks.exists(cid) and state(client, container)["Status"] in ("running", "paused", "unknown"):
        try:
            out.update(client.tasks.metrics(cid))
        except (errors.NotFound, errors.FailedPrecondition):
            pass  # it stopped meanwhile: nothing to show, as for a stopped one
        out["ID"] = cid
    return out


class StatsSampler:
    """docker stats' figures over time: a container's CPU % is the CPU time it used between two samples
    (0 on the first), as a share of one CPU (so a busy container on 2 CPUs may show up to 200%)."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.previous: dict[str, tuple[float, int]] = {}

    def prime(self, refs: list[str], seconds: float = 0.25) -> None:
        """A first sample of each, `seconds` before the one shown (docker's one-shot takes a second or two)."""
        if refs:
            self.sample_all(refs, skip_missing=True)
            time.sleep(seconds)

    def sample_all(self, refs: list[str], *, skip_missing: bool = False) -> list[dict[str, Any]]:
        """A sample of each container; with `skip_missing`, one removed meanwhile is left out."""
        out = []
        for ref in refs:
            try:
                out.append(self.sample(ref))
            except errors.NotFound:
                if not skip_missing:
                    raise
        return out

    def sample(self, ref: str) -> dict[str, Any]:
        """{ref, ID, Name, cpu_percent, mem_usage, mem_limit, pids} (bytes; None if unknown)."""
        s = stats(self.client, ref)
        mem, cpu, pids = s.get("memory") or {}, s.get("cpu") or {}, s.get("pids") or {}
        now, usage = time.monotonic(), int(cpu.get("usage_ns") or 0)
        before = self.previous.get(s["ID"])
        percent = 0.0
        if before and now > before[0] and usage >= before[1]:
            percent = 100.0 * (usage - before[1]) / ((now - before[0]) * 1e9)
        self.previous[s["ID"]] = (now, usage)
        limit = mem.get("limit")
        if not limit and mem.get("usage") is not None:
            limit = _host_memory()  # unlimited: docker shows (and divides by) the host's memory
        return {"ref": ref, "ID": s["ID"], "Name": s["Name"], "cpu_percent": percent, "mem_usage": mem.get("usage"),
                "mem_limit": limit, "pids": int(pids.get("current") or 0)}


def _host_memory() -> int | None:
    import os

    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return None


def container_names(client: Client) -> list[tuple[str, str]]:
    """(ID, name) of every container, for completion."""
    return [(c.id, c.labels.get(NAME_LABEL, "")) for c in client.containers.list()]
