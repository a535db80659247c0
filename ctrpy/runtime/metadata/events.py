"""The append-only event log (containerd's event stream, recorded): topics like /images/create, /tasks/exit.

Stores append events in the same transaction as the change they describe (metadata.append_event);
`publish` is for events with no row change of their own (task exits, OOM).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from ctrpy.runtime import errors
from ctrpy.runtime.metadata import append_event


@dataclass
class Event:
    """One recorded event."""

    seq: int
    timestamp: str
    namespace: str
    topic: str
    payload: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"seq": self.seq, "timestamp": self.timestamp, "namespace": self.namespace, "topic": self.topic,
                "payload": self.payload}


class EventStore:
    """Publish and read events of one namespace (or of all, for listing)."""

    def __init__(self, db: Any, namespace: str) -> None:
        self.db = db
        self.namespace = namespace

    def publish(self, topic: str, payload: dict[str, Any] | None = None) -> None:
        if not topic.startswith("/"):
            raise errors.InvalidArgument(f"invalid event topic {topic!r}: must start with '/'")
        with self.db.update() as tx:
            append_event(tx, self.namespace, topic, dict(payload or {}))

    def list(
        self, since_seq: int = 0, topic_prefix: str | None = None, limit: int | None = None,
        all_namespaces: bool = False,
    ) -> list[Event]:
        """Events after `since_seq`, oldest first; `limit` keeps the newest N."""
        sql = "SELECT seq, timestamp, namespace, topic, payload FROM events WHERE seq > ?"
        args: list[Any] = [since_seq]
        if not all_namespaces:
            sql += " AND namespace = ?"
            args.append(self.namespace)
        if topic_prefix:
            sql += " AND substr(topic, 1, ?) = ?"
            args += [len(topic_prefix), topic_prefix]
        sql += " ORDER BY seq DESC"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(int(limit))
        with self.db.view() as tx:
            rows = tx.execute(sql, args).fetchall()
        return [
            Event(r["seq"], r["timestamp"], r["namespace"], r["topic"], json.loads(r["payload"] or "{}"))
            for r in reversed(rows)
        ]
