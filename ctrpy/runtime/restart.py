"""Restart policies without a daemon (docker's `--restart`), and `ctrpy system boot`.

The policy is the container label `containerd.io/restart.policy` (`run --restart P` sets it): `no`, `always`,
`on-failure[:N]`, `unless-stopped`. It is copied into the task's task.json at create, and the task's C
supervisor acts on it (csrc/supervisor.c): when the init exits and the policy asks for it, the supervisor
runs the runtime's delete/create/start again in place, after docker's back-off (100 ms, doubling on each
restart, back to 100 ms once a run lasted 10 s; at most 1 min), and records the back-off in the task's
`restart.json` (count, failures, delay, next start, last start) and `restart.log` (one line per restart: number, exit
status, delay in ms). `on-failure:N` stops after N restarts that followed a failure. During the back-off
the task is RESTARTING, which `ps`/`inspect` show as docker does (`Restarting (N) ...`, State.Restarting,
RestartCount; ctrpy.runtime.lifecycle.state).

An explicit stop (`tasks kill`, which `stop`/`kill` use) ends the restarts: the CLI leaves a marker in the
task dir and tells the supervisor (frame S); the container gets the label `ctrpy.io/restart.stopped`, so a
boot leaves an `unless-stopped` container alone. Starting the container again clears it.

After a host reboot nothing runs and the state directory (a tmpfs, usually) is empty: `ctrpy system boot`
(the shipped systemd unit contrib/systemd/ctrpy-boot.service runs it) starts, in every namespace, each
container whose policy asks for it:
    always          always
    unless-stopped  unless stopped explicitly
    on-failure[:N]  unless stopped explicitly or its last recorded exit (the /tasks/exit event) was 0
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ctrpy.runtime import errors

if TYPE_CHECKING:
    from ctrpy.runtime.client import Client

LABEL = "containerd.io/restart.policy"
STOPPED_LABEL = "ctrpy.io/restart.stopped"
_POLICY = re.compile(r"^(no|always|unless-stopped|on-failure(:[0-9]+)?)$")


def validate_policy(policy: str) -> str:
    """The policy text, checked (a clear one-line error otherwise)."""
    if not _POLICY.match(policy or ""):
        raise errors.InvalidArgument(f"invalid restart policy {policy!r}: use no, always, on-failure[:N] "
                                     "or unless-stopped")
    return policy


def mark_stopped(client: Client, container_id: str, stopped: bool) -> None:
    """Remember (in the container record, which survives a reboot) that the user stopped it."""
    from ctrpy.runtime.metadata.containers import Container

    try:
        current = client.containers.get(container_id)
    except errors.NotFound:
        return
    if (current.labels.get(STOPPED_LABEL) == "true") == stopped:
        return
    update = Container(id=container_id, runtime_name=current.runtime_name,
                       labels={STOPPED_LABEL: "true"} if stopped else {})
    client.containers.update(update, [f"labels.{STOPPED_LABEL}"])


def _last_exit(client: Client, container_id: str) -> int | None:
    for event in reversed(client.events.list(topic_prefix="/tasks/exit")):
        if event.payload.get("container_id") == container_id:
            status = event.payload.get("exit_status")
            return int(status) if status is not None else None
    return None


def wants_boot(client: Client, container: Any) -> str:
    """Why the container is to be started at boot, or "" if it is not."""
    policy: str = container.labels.get(LABEL, "no")
    stopped = container.labels.get(STOPPED_LABEL) == "true"
    if policy == "always":
        return "always"
    if policy == "unless-stopped" and not stopped:
        return "unless-stopped"
    if policy.startswith("on-failure") and not stopped and _last_exit(client, container.id) != 0:
        return policy
    return ""


@dataclass
class BootResult:
    namespace: str
    id: str
    policy: str
    started: bool
    error: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"namespace": self.namespace, "id": self.id, "policy": self.policy, "started": self.started,
                **({"error": self.error} if self.error else {})}


def boot(client: Client) -> list[BootResult]:
    """Start, in every namespace, the containers whose restart policy asks for it and that have no live task
    (a stale task left by the reboot is deleted first). One container's failure does not stop the others."""
    from ctrpy.runtime.tasks import TaskStatus

    results = []
    names = sorted({ns.name for ns in client.namespaces.list()} | {client.namespace})
    for ns in names:
        nsclient = client.with_namespace(ns)
        for container in nsclient.containers.list():
            policy = container.labels.get(LABEL, "no")
            if policy in ("", "no") or not wants_boot(nsclient, container):
                continue
            tasks = nsclient.tasks
            try:
                if tasks.exists(container.id):
                    state = tasks.state(container.id)
                    if state.status in (TaskStatus.RUNNING, TaskStatus.PAUSED, TaskStatus.RESTARTING):
                        continue
                    tasks.delete(container.id, force=True)
                tasks.create(container.id)
                tasks.start(container.id)
                results.append(BootResult(ns, container.id, policy, True))
            except errors.CtrpyError as exc:
                if tasks.exists(container.id):
                    try:
                        tasks.delete(container.id, force=True)
                    except errors.CtrpyError:
                        pass
                results.append(BootResult(ns, container.id, policy, False, str(exc)))
    return results

