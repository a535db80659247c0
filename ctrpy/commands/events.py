"""`ctrpy events`: the recorded event log (containerd streams events; ctrpy keeps them in the database)."""

from __future__ import annotations

import json
from typing import Any

import click

from ctrpy.commands._output import emit_json, format_option, table


@click.command("events")
@click.option("--since", "since_seq", type=int, default=0, help="Only events after this sequence number")
@click.option("--topic", default=None, help="Only topics starting with this prefix (e.g. /images/)")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Only the newest N events")
@click.option("--all-namespaces", "-A", is_flag=True, help="Events of every namespace")
@format_option
@click.pass_obj
def events(obj: Any, since_seq: int, topic: str | None, limit: int | None, all_namespaces: bool, fmt: str) -> None:
    """List recorded events, oldest first.

    \b
    Examples:
      ctrpy events --limit 20
      ctrpy events --topic /images/ --since 100
      ctrpy events -A --format json
    """
    items = obj.client.events.list(since_seq, topic, limit, all_namespaces=all_namespaces)
    if fmt == "json":
        emit_json([e.to_dict() for e in items])
        return
    table(["SEQ", "TIMESTAMP", "NAMESPACE", "TOPIC", "EVENT"],
          [(e.seq, e.timestamp, e.namespace, e.topic, json.dumps(e.payload, sort_keys=True)) for e in items])
