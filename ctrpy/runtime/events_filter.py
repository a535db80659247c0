"""docker's `events --filter` keys over ctrpy's recorded events (containerd topics like /tasks/start)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ctrpy.runtime import errors

if TYPE_CHECKING:
    from ctrpy.runtime.client import Client

_TYPES = {"container": ("/containers/", "/tasks/"), "task": ("/tasks/",), "image": ("/images/",),
          "snapshot": ("/snapshot/", "/snapshots/"), "network": ("/networks/", "/network/"),
          "namespace": ("/namespaces/",), "content": ("/content/",), "lease": ("/leases/",)}


class EventFilter:
    """type=, event=, container= (name, ID or prefix), namespace=; values of one key are OR-ed, keys AND-ed."""

    def __init__(self, client: Client, filters: list[str]) -> None:
        self.by_key: dict[str, list[str]] = {}
        for item in filters:
            key, sep, value = item.partition("=")
            if not sep or key not in ("type", "event", "container", "namespace"):
                raise errors.InvalidArgument(f"invalid filter {item!r}: use type=, event=, container= or namespace=")
            if key == "type" and value not in _TYPES:
                raise errors.InvalidArgument(f"invalid filter {item!r}: type is one of {', '.join(sorted(_TYPES))}")
            if key == "container":
                from ctrpy.runtime.names import resolve

                try:
                    value = resolve(client, value)
                except errors.NotFound:
                    pass  # a container that does not exist yet may still be named by its future ID
            self.by_key.setdefault(key, []).append(value)

    def match(self, event: dict[str, Any]) -> bool:
        topic = str(event.get("topic", ""))
        payload = event.get("payload") or {}
        for key, values in self.by_key.items():
            if key == "type" and not any(topic.startswith(p) for v in values for p in _TYPES[v]):
                return False
            if key == "event" and topic.rsplit("/", 1)[-1] not in values:
                return False
            if key == "namespace" and event.get("namespace") not in values:
                return False
            if key == "container":
                cid = str(payload.get("container_id") or payload.get("id") or "")
                if not cid or not any(cid == v or cid.startswith(v) for v in values):
                    return False
        return True
