"""`ctrpy events`: the recorded event log (containerd streams events; ctrpy keeps them in the database)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import click

from ctrpy.commands._dockerfmt import template_format_option
from ctrpy.commands._output import emit_json, table

if TYPE_CHECKING:
    from ctrpy.runtime.client import Client


@click.command("events")
@click.option("--since", "since_seq", type=int, default=0, help="Only events after this sequence number")
@click.option("--topic", default=None, help="Only topics starting with this prefix (e.g. /images/)")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Only the newest N events")
@click.option("--all-namespaces", "-A", is_flag=True, help="Events of every namespace")
@click.option("--follow", "-f", is_flag=True, help="Keep printing new events as they happen (Ctrl-C stops)")
@click.option("--filter", "filters", multiple=True, metavar="KEY=VALUE",
              help="type=container|task|image|..., event=start|exit|..., container=NAME|ID (docker's keys)")
@template_format_option()
@click.pass_obj
def events(obj: Any, since_seq: int, topic: str | None, limit: int | None, all_namespaces: bool, follow: bool,
           filters: tuple[str, ...], fmt: str) -> None:
    """List recorded events, oldest first (-f: then the new ones, live).

    \b
    Examples:
      ctrpy events --limit 20
      ctrpy events --topic /images/ --since 100
      ctrpy events -f --filter container=web --format '{{.Topic}} {{json .Payload}}'
    """
    if follow or filters or fmt not in ("json", "table"):
        _follow(obj.client, since_seq, topic, limit, all_namespaces, follow, list(filters), fmt)
        return
    items = obj.client.events.list(since_seq, topic, limit, all_namespaces=all_namespaces)
    if fmt == "json":
        emit_json([e.to_dict() for e in items])
        return
    table(["SEQ", "TIMESTAMP", "NAMESPACE", "TOPIC", "EVENT"],
          [(e.seq, e.timestamp, e.namespace, e.topic, json.dumps(e.payload, sort_keys=True)) for e in items])


def _follow(client: Client, since_seq: int, topic: str | None, limit: int | None, all_namespaces: bool, follow: bool,
            filters: list[str], fmt: str) -> None:
    """Print matching events (one line each: a table row, a JSON object or the template), then, with
    `follow`, poll the event log for new ones until interrupted."""
    import time

    from ctrpy.runtime.events_filter import EventFilter
    from ctrpy.runtime.gotemplate import Template

    flt = EventFilter(client, filters)
    template = Template(fmt) if fmt not in ("json", "table") else None
    seq = since_seq
    items = client.events.list(seq, topic, None if follow else limit, all_namespaces=all_namespaces)
    if follow and since_seq == 0:
        seq = max((e.seq for e in items), default=0)
        items = items[-limit:] if limit else []  # -f without --since: only what happens from now on
    while True:
        for e in items:
            seq = max(seq, e.seq)
            data = e.to_dict()
            if not flt.match(data):
                continue
            if template is not None:
                click.echo(template.render({**data, **{k.capitalize(): v for k, v in data.items()}}))
            elif fmt == "json":
                click.echo(json.dumps(data, sort_keys=True, default=str))
            else:
                click.echo(f"{e.timestamp} {e.namespace} {e.topic} {json.dumps(e.payload, sort_keys=True)}")
        if not follow:
            return
        time.sleep(0.2)
        items = client.events.list(seq, topic, None, all_namespaces=all_namespaces)
