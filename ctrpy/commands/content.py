"""`ctrpy content`: the content store, like `ctr content`."""

from __future__ import annotations

import sys
from typing import Any

import click

from ctrpy.commands._kinds import kind
from ctrpy.commands._output import (
    AliasGroup,
    emit_json,
    format_labels,
    format_option,
    human_age,
    human_size,
    parse_labels,
    quiet_option,
    remove_each,
    table,
)


@click.group(cls=AliasGroup)
def content() -> None:
    """Manage the content store (blobs by digest).

    \b
    Examples:
      ctrpy content ls -q
      ctrpy content get "$(ctrpy content ls -q | head -n 1)" | head -c 200
    """


@content.command("ls")
@click.argument("filters", nargs=-1)
@quiet_option
@format_option
@click.pass_obj
def ls(obj: Any, filters: tuple[str, ...], quiet: bool, fmt: str) -> None:
    """List blobs visible in the namespace. FILTERS: e.g. 'labels."k"==v', 'digest~=^sha256:ab'.

    \b
    Examples:
      ctrpy content ls
      ctrpy content ls -q 'digest~=^sha256:ab'
      ctrpy content ls --format json 'labels."containerd.io/gc.root"'
    """
    infos = obj.client.content.list(list(filters))
    if quiet:
        for info in infos:
            click.echo(info.digest)
    elif fmt == "json":
        emit_json([info.__dict__ for info in infos])
    else:
        table(["DIGEST", "SIZE", "AGE", "LABELS"],
              [(i.digest, human_size(i.size), human_age(i.created_at), format_labels(i.labels)) for i in infos])


@content.command("get")
@click.argument("digest")
@click.pass_obj
def get(obj: Any, digest: str) -> None:
    """Write a blob to stdout.

    \b
    Examples:
      ctrpy content get "$DIGEST" > blob
      ctrpy content get "$(ctrpy content ls -q | head -n 1)" | sha256sum
    """
    out = sys.stdout.buffer  # click.get_binary_stream is deprecated (click 8.3) and untyped
    for chunk in obj.client.content.iter_chunks(digest):
        out.write(chunk)
    out.flush()


@content.command("ingest")
@click.argument("ref", shell_complete=kind())
@click.option("--expected-digest", default=None, help="Digest the data must have (sha256:...)")
@click.option("--expected-size", type=int, default=None, help="Size in bytes the data must have")
@click.option("--label", "labels", multiple=True, metavar="KEY=VALUE", help="Label the committed blob")
@click.pass_obj
def ingest(obj: Any, ref: str, expected_digest: str | None, expected_size: int | None,
           labels: tuple[str, ...]) -> None:
    """Store stdin as a blob under ingest REF (resumes an interrupted ingest of the same REF).

    \b
    Examples:
      ctrpy content ingest my-upload < layer.tar.gz
      ctrpy content ingest --expected-digest "$DIGEST" --label app=web my-upload < config.json
    """
    info = obj.client.content.write_blob(ref, sys.stdin.buffer, expected=expected_digest,
                                         size=expected_size, labels=parse_labels(labels))
    click.echo(info.digest)


@content.command("active")
@quiet_option
@format_option
@click.pass_obj
def active(obj: Any, quiet: bool, fmt: str) -> None:
    """List ingests in progress or interrupted (resumable).

    \b
    Examples:
      ctrpy content active
      ctrpy content active -q | xargs -r ctrpy content abort
    """
    statuses = obj.client.content.statuses()
    if quiet:
        for st in statuses:
            click.echo(st.ref)
    elif fmt == "json":
        emit_json([st.__dict__ for st in statuses])
    else:
        table(["REF", "OFFSET", "TOTAL", "EXPECTED", "UPDATED"],
              [(s.ref, s.offset, "-" if s.total is None else s.total, s.expected or "-", human_age(s.updated_at))
               for s in statuses])


@content.command("abort")
@click.argument("refs", nargs=-1, required=True, shell_complete=kind())
@click.pass_obj
def abort(obj: Any, refs: tuple[str, ...]) -> None:
    """Discard interrupted ingests.

    \b
    Examples:
      ctrpy content abort my-upload
      ctrpy content active -q | xargs -r ctrpy content abort
    """
    for ref in refs:
        obj.client.content.abort(ref)
        click.echo(ref)


@content.command("rm")
@click.argument("digests", nargs=-1, required=True)
@click.pass_context
def rm(ctx: click.Context, digests: tuple[str, ...]) -> None:
    """Remove blobs from the namespace (the file goes once no namespace holds it).

    \b
    Examples:
      ctrpy content rm "$DIGEST"
      ctrpy content ls -q 'labels."app"==web' | xargs -r ctrpy content rm
    """
    remove_each(ctx, digests, ctx.obj.client.content.delete)


@content.command("label")
@click.argument("digest")
@click.argument("labels", nargs=-1)
@click.pass_obj
def label(obj: Any, digest: str, labels: tuple[str, ...]) -> None:
    """Set labels on a blob (KEY=VALUE; KEY or KEY= removes the label).

    \b
    Examples:
      ctrpy content label "$DIGEST" containerd.io/gc.root=keep
      ctrpy content label "$DIGEST" containerd.io/gc.root=
    """
    info = obj.client.content.update_labels(digest, parse_labels(labels))
    click.echo(f"updated labels of {info.digest}: {format_labels(info.labels)}")
