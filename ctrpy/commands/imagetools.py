"""Images without a registry and docker's image verbs: save, load, import, export, rmi, tag, history; the
`images` listing when the group is called alone; `images prune`. The runtime lives in imagearchive.py,
rootfsarchive.py, imageinfo.py and space.py."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, BinaryIO

import click

from ctrpy.commands._output import emit_json, format_option, human_age, human_size, is_tty, quiet_option, table

if TYPE_CHECKING:
    from ctrpy.runtime.client import Client

platform_option = click.option("--platform", "platforms", multiple=True, metavar="OS/ARCH[/VARIANT]",
                               help="Platform to include (repeatable)  [default: this host's]")
all_platforms_option = click.option("--all-platforms", is_flag=True,
                                    help="Every platform of a multi-platform image")


def _age(stamp: str) -> str:
    """docker's relative CREATED; configs may carry fractions and offsets, which the store's stamps do not."""
    import time

    from ctrpy.runtime import timefmt

    try:
        seconds = int(timefmt.parse(stamp))
    except ValueError:
        return stamp or "-"
    delta = time.time() - seconds
    for unit, secs in (("year", 365 * 86400), ("month", 30 * 86400), ("week", 7 * 86400)):
        if delta >= 2 * secs:  # docker's units: "2 years ago", "3 months ago", "2 weeks ago"
            return f"{int(delta // secs)} {unit}s ago"
    return human_age(timefmt.format_seconds(seconds))


def short_id(digest: str, no_trunc: bool = False) -> str:
    return digest if no_trunc else digest.split(":", 1)[-1][:12]


@contextlib.contextmanager
def _output(path: str | None) -> Iterator[BinaryIO]:
    """-o FILE (written to FILE.tmp and renamed when complete) or stdout, which must not be a terminal."""
    if path in (None, "-"):
        if is_tty(sys.stdout):
            from ctrpy.runtime import errors

            raise errors.InvalidArgument("refusing to write an archive to a terminal: use -o FILE or a redirect")
        sys.stdout.flush()
        yield sys.stdout.buffer
        return
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            yield f
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


# ---------------------------------------------------------------------------------------------- archives

@click.command("save")
@click.argument("refs", nargs=-1, required=True)
@click.option("--output", "-o", type=click.Path(dir_okay=False, allow_dash=True), metavar="FILE",
              help="Write to FILE instead of stdout")
@platform_option
@all_platforms_option
@click.pass_obj
def save(obj: Any, refs: tuple[str, ...], output: str | None, platforms: tuple[str, ...],
         all_platforms: bool) -> None:
    """Save images to an OCI archive that docker, ctr and skopeo also read.

    The archive is an OCI image layout (index.json, blobs/) with docker's manifest.json and repositories
    beside it. Only this host's platform of a multi-platform image is saved unless --platform or
    --all-platforms says otherwise; index.json records which (io.ctrpy.archive.platforms).

    \b
    Examples:
      ctrpy save -o busybox.tar busybox
      ctrpy save busybox alpine:3.19 | gzip > images.tar.gz
      ctrpy images export --all-platforms -o multi.tar docker.io/library/alpine:3.19
    """
    from ctrpy.runtime.imagearchive import export, plan_export

    client = obj.client
    plan = plan_export(client, list(refs), platforms=list(platforms), all_platforms=all_platforms)  # before -o
    with _output(output) as out:
        export(client, list(refs), out, platforms=list(platforms), all_platforms=all_platforms, plan=plan)


@click.command("load")
@click.argument("source", required=False, type=click.Path(allow_dash=True), metavar="[FILE|DIR|-]")
@click.option("--input", "-i", "input_", type=click.Path(allow_dash=True), metavar="FILE|DIR",
              help="Read from FILE or OCI layout DIR (- : stdin)")
@platform_option
@all_platforms_option
@click.option("--digests", is_flag=True, help="Also name each image BASE@DIGEST (BASE: --base-name or import-DATE)")
@click.option("--index-name", metavar="NAME", help="Also keep the archive's whole index as the image NAME")
@click.option("--base-name", metavar="NAME", help="Repository for images the archive names only by a tag")
@click.option("--no-unpack", is_flag=True, help="Only import content; do not unpack layers into snapshots")
@click.option("--snapshotter", metavar="NAME", help="Snapshotter to unpack into  [default: config]")
@click.option("--quiet", "-q", is_flag=True, help="Print nothing")
@click.pass_obj
def load(obj: Any, source: str | None, input_: str | None, platforms: tuple[str, ...], all_platforms: bool,
         digests: bool, index_name: str | None, base_name: str | None, no_unpack: bool, snapshotter: str | None,
         quiet: bool) -> None:
    """Load images from an archive or OCI layout (docker save, ctr export, skopeo, ctrpy save).

    Reads OCI layouts, OCI archives and docker archives (also the old layout with per-layer directories),
    plain or gzip/zstd/xz compressed, from FILE, DIR or stdin. Every blob is checked against its digest;
    nothing is committed unless the whole archive is sound.

    \b
    Examples:
      ctrpy load -i busybox.tar
      gunzip -c images.tar.gz | ctrpy load
      ctrpy images import --all-platforms --no-unpack multi.tar
    """
    from ctrpy.runtime.imagearchive import ImportOptions, import_archive
    from ctrpy.runtime import errors

    where = input_ or source
    if input_ and source:
        raise errors.InvalidArgument("give the archive either as an argument or with -i, not both")
    opts = ImportOptions(platforms=list(platforms), all_platforms=all_platforms, digests=digests,
                         index_name=index_name, base_name=base_name, unpack=not no_unpack, snapshotter=snapshotter)
    if where in (None, "-"):
        if is_tty(sys.stdin):
            raise errors.InvalidArgument("no archive given: use -i FILE or pipe one to stdin")
        images = import_archive(obj.client, sys.stdin.buffer, opts)
    else:
        images = import_archive(obj.client, where, opts)
    if not quiet:
        for image in images:
            click.echo(f"Loaded image: {image.name} ({image.target.digest})")


@click.command("import")
@click.argument("source", type=click.Path(dir_okay=False, allow_dash=True), metavar="FILE|-")
@click.argument("ref", required=False)
@click.option("--change", "-c", "changes", multiple=True, metavar="INSTRUCTION",
              help="Dockerfile instruction for the config: CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, USER, WORKDIR, "
                   "VOLUME, STOPSIGNAL (repeatable)")
@click.option("--message", "-m", default="", help="Comment for the image's history")
@click.option("--platform", metavar="OS/ARCH[/VARIANT]", help="Platform to record  [default: this host's]")
@click.option("--no-unpack", is_flag=True, help="Do not unpack the new layer into a snapshot")
@click.pass_obj
def import_(obj: Any, source: str, ref: str | None, changes: tuple[str, ...], message: str,
            platform: str | None, no_unpack: bool) -> None:
    """Create a one-layer image from a root file system tarball (docker import).

    Prints the new image's ID.

    \b
    Examples:
      ctrpy import rootfs.tar myimage:1
      ctrpy export web | ctrpy import -c 'CMD ["/bin/sh"]' - web-snapshot:latest
      ctrpy import -c 'ENV DEBUG=1' -c 'WORKDIR /app' rootfs.tar.gz app:dev
    """
    from ctrpy.runtime import errors, images as rt
    from ctrpy.runtime.rootfsarchive import import_rootfs

    if source == "-":
        if is_tty(sys.stdin):
            raise errors.InvalidArgument("no tarball given: name a FILE or pipe one to stdin")
        image = import_rootfs(obj.client, sys.stdin.buffer, ref, changes=list(changes), message=message,
                              platform=platform, unpack=not no_unpack)
    else:
        try:
            f = open(source, "rb")
        except OSError as exc:
            raise errors.from_oserror(exc, f"cannot open {source}") from None
        with f:
            image = import_rootfs(obj.client, f, ref, changes=list(changes), message=message, platform=platform,
                                  unpack=not no_unpack)
    click.echo(rt.image_id(obj.client.content, image))


@click.command("export")
@click.argument("container_id")
@click.option("--output", "-o", type=click.Path(dir_okay=False, allow_dash=True), metavar="FILE",
              help="Write to FILE instead of stdout")
@click.pass_obj
def export(obj: Any, container_id: str, output: str | None) -> None:
    """Export a container's root file system as a tar archive (docker export).

    \b
    Examples:
      ctrpy export -o web-rootfs.tar web
      ctrpy export web | tar -t | head
    """
    from ctrpy.runtime.rootfsarchive import export_container

    with _output(output) as out:
        export_container(obj.client, container_id, out)


# ---------------------------------------------------------------------------------------------- docker verbs

def list_images(client: Client, quiet: bool, fmt: str, no_trunc: bool) -> None:
    """docker images / nerdctl images: one row per name."""
    from ctrpy.runtime.imageinfo import image_rows

    rows = image_rows(client)
    if quiet:
        seen: list[str] = []
        for row in rows:
            ident = short_id(row.id, no_trunc)
            if ident not in seen:
                seen.append(ident)
                click.echo(ident)
        return
    if fmt == "json":
        emit_json([r.to_dict() for r in rows])
        return
    table(["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "PLATFORM", "SIZE", "BLOB SIZE"],
          [[r.repository, r.tag, short_id(r.id, no_trunc), _age(r.created), r.platform, human_size(r.size),
            human_size(r.blob_size)] for r in rows])


@click.command("rmi")
@click.argument("refs", nargs=-1, required=True)
@click.option("--no-gc", is_flag=True, help="Remove only the names; leave freeing space to `ctrpy gc`")
@click.pass_context
def rmi(ctx: click.Context, refs: tuple[str, ...], no_gc: bool) -> None:
    """Remove images by name, short name or ID, and free the space nothing else uses.

    \b
    Examples:
      ctrpy rmi busybox
      ctrpy rmi 3f57d9401f8d alpine:3.19
    """
    remove_images(ctx, refs, no_gc)


def remove_images(ctx: click.Context, refs: tuple[str, ...], no_gc: bool) -> None:
    """Print each name removed (ctr style), one line per failure, then what the collection freed."""
    from ctrpy.runtime import errors
    from ctrpy.runtime.space import remove_images as rt_remove

    failed: list[errors.CtrpyError] = []

    def report(name: str, exc: errors.CtrpyError | None) -> None:
        if exc is None:
            click.echo(name)
        else:
            click.echo(f"ctrpy: {exc}", err=True)
            failed.append(exc)

    freed = rt_remove(ctx.obj.client, list(refs), sync=not no_gc, on_result=report)
    if freed:
        click.echo(f"freed {human_size(freed)}", err=True)
    if failed:
        ctx.exit(failed[0].exit_code)


@click.command("tag")
@click.argument("source")
@click.argument("targets", nargs=-1, required=True)
@click.option("--force", "-f", is_flag=True, help="Replace an existing image of that name")
@click.pass_context
def tag(ctx: click.Context, source: str, targets: tuple[str, ...], force: bool) -> None:
    """Give the image SOURCE (name, short name or ID) more names.

    \b
    Examples:
      ctrpy tag busybox localhost:5000/busybox:v1
      ctrpy tag 3f57d9401f8d mybox:stable
    """
    from ctrpy.commands.images import tag as images_tag

    ctx.invoke(images_tag, source=source, targets=targets, force=force)


@click.command("history")
@click.argument("ref")
@click.option("--no-trunc", is_flag=True, help="Do not truncate IDs and commands")
@quiet_option
@format_option
@click.pass_obj
def history(obj: Any, ref: str, no_trunc: bool, quiet: bool, fmt: str) -> None:
    """Show the history of an image: the step that made each layer and its size.

    \b
    Examples:
      ctrpy history busybox
      ctrpy image history --format json alpine:3.19
    """
    from ctrpy.runtime.imageinfo import history as rt_history

    rows = rt_history(obj.client, ref)
    if quiet:
        for row in rows:
            click.echo(short_id(row.id, no_trunc) if row.id != "<missing>" else row.id)
        return
    if fmt == "json":
        emit_json([r.to_dict() for r in rows])
        return

    def by(text: str) -> str:
        return text if no_trunc or len(text) <= 45 else text[:44] + "…"

    table(["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"],
          [[short_id(r.id, no_trunc) if r.id != "<missing>" else r.id, _age(r.created), by(r.created_by),
            human_size(r.size), r.comment] for r in rows])


@click.command("prune")
@click.option("--all", "-a", "all_", is_flag=True, help="Remove every image no container uses, not only dangling")
@click.option("--force", "-f", is_flag=True, help="Do not ask for confirmation")
@format_option
@click.pass_obj
def prune(obj: Any, all_: bool, force: bool, fmt: str) -> None:
    """Remove dangling images (-a: all unused ones) and free their space.

    \b
    Examples:
      ctrpy images prune -f
      ctrpy images prune -a -f --format json
    """
    from ctrpy.runtime.space import prune_images

    what = "all images without at least one container" if all_ else "all dangling images"
    if not force and not click.confirm(f"This will remove {what}. Are you sure you want to continue?",
                                       err=True):
        return
    report = prune_images(obj.client, all=all_)
    if fmt == "json":
        emit_json(report.to_dict())
        return
    for name in report.images:
        click.echo(f"deleted: {name}")
    click.echo(f"Total reclaimed space: {human_size(report.bytes_freed)}")
