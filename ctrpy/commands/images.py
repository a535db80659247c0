"""`ctrpy images` (alias i, image): ls, inspect, tag, rm, check, pull, push; top-level `pull` and `push`."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from ctrpy.commands._output import (
    emit_json, format_option, human_size, json_format_option, quiet_option, table,
)

if TYPE_CHECKING:
    from ctrpy.runtime.client import Client


def registry_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Flags shared by every command that talks to a registry (ctr's RegistryFlags)."""
    fn = tls_options(fn)
    return click.option("--user", "-u", metavar="USER[:PASSWORD]",
                        help="Registry credentials (prompts for a missing password)")(fn)


def tls_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """How to reach a registry: scheme, TLS trust, hosts.toml directories, stall timeout."""
    options = [
        click.option("--plain-http", is_flag=True, help="Use plain HTTP instead of HTTPS"),
        click.option("--skip-verify", "-k", is_flag=True, help="Do not verify the registry's TLS certificate"),
        click.option("--tlscacert", multiple=True, metavar="FILE", help="CA certificate(s) for the registry"),
        click.option("--tlscert", metavar="FILE", help="Client TLS certificate"),
        click.option("--tlskey", metavar="FILE", help="Client TLS key"),
        click.option("--hosts-dir", multiple=True, metavar="DIR",
                     help="Directories holding <host>/hosts.toml  [default: config registry.config_path]"),
        click.option("--progress-timeout", type=click.FloatRange(min=0.1), metavar="SECONDS",
                     help="Fail a transfer that receives nothing for this long  [default: config, 60]"),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _registry(ctx: click.Context, kw: dict[str, Any], *, uploads: bool) -> tuple[Any, Any]:
    """RegistryOptions and credential from flags over the config."""
    from ctrpy.runtime.remotes import registry_options
    from ctrpy.runtime.remotes.auth import parse_user

    reg = registry_options(ctx.obj.config, uploads=uploads, plain_http=kw.get("plain_http"),
                           skip_verify=kw.get("skip_verify"), tlscacert=kw.get("tlscacert"), tlscert=kw.get("tlscert"),
                           tlskey=kw.get("tlskey"), hosts_dirs=kw.get("hosts_dir"),
                           progress_timeout=kw.get("progress_timeout"), max_concurrent=kw.get("max_concurrent"))
    credential = parse_user(kw["user"]) if kw.get("user") else None
    return reg, credential


def _silent_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--quiet", "-q", is_flag=True, help="Print nothing (no progress, no result line)")(fn)


def _find(client: Client, name: str) -> Any:
    from ctrpy.runtime.images import find_image

    return find_image(client, name)


@click.group("images", invoke_without_command=True)
@click.option("--quiet", "-q", is_flag=True, help="Alone: print only image IDs")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True,
              help="Alone: output format")
@click.option("--no-trunc", is_flag=True, help="Alone: show full image IDs")
@click.pass_context
def images(ctx: click.Context, quiet: bool, fmt: str, no_trunc: bool) -> None:
    """Manage images; alone, list them as docker does (REPOSITORY, TAG, IMAGE ID...).

    `images ls` keeps containerd's shape (REF, TYPE, DIGEST...).

    \b
    Examples:
      ctrpy images
      ctrpy images pull docker.io/library/busybox:latest
      ctrpy images ls -q
      ctrpy i rm docker.io/library/busybox:latest
    """
    if ctx.invoked_subcommand is None:
        from ctrpy.commands.imagetools import list_images

        list_images(ctx.obj.client, quiet, fmt, no_trunc)


@click.command("pull")
@click.argument("ref")
@click.option("--platform", "platforms", multiple=True, metavar="OS/ARCH[/VARIANT]",
              help="Platform to pull (repeatable)  [default: this host's]")
@click.option("--all-platforms", is_flag=True, help="Pull every platform of an index")
@click.option("--no-unpack", is_flag=True, help="Only fetch content; do not unpack layers into snapshots")
@click.option("--snapshotter", metavar="NAME", help="Snapshotter to unpack into  [default: config]")
@click.option("--max-concurrent-downloads", "max_concurrent", type=click.IntRange(min=1), metavar="N",
              help="Parallel layer downloads  [default: config, 3]")
@click.option("--deadline", type=click.FloatRange(min=0), metavar="SECONDS",
              help="Fail the pull if it is not done after this long (0: none)  [default: config, 0]")
@registry_options
@_silent_option
@click.pass_context
def pull(ctx: click.Context, ref: str, platforms: tuple[str, ...], all_platforms: bool, no_unpack: bool,
         snapshotter: str | None, deadline: float | None, quiet: bool, **kw: Any) -> None:
    """Pull an image from a registry.

    REF is a name like busybox, docker.io/library/busybox:latest or host:port/repo@sha256:<digest>. The layers
    are unpacked into snapshots unless --no-unpack; prints the stored name and the digest pulled.

    \b
    Examples:
      ctrpy pull docker.io/library/busybox:latest
      ctrpy pull --platform linux/arm64 --no-unpack alpine:3.19
      ctrpy images pull --plain-http -u user:secret localhost:5000/team/app:v1
    """
    from ctrpy.commands._progress import make_progress
    from ctrpy.runtime.pull import PullOptions, pull as do_pull
    from ctrpy.runtime.remotes import pull_deadline

    client = ctx.obj.client
    reg, credential = _registry(ctx, kw, uploads=False)
    opts = PullOptions(registry=reg, platforms=list(platforms), all_platforms=all_platforms, unpack=not no_unpack,
                       snapshotter=snapshotter, credential=credential,
                       deadline=deadline if deadline is not None else pull_deadline(ctx.obj.config))
    progress = make_progress(quiet)
    try:
        image = do_pull(client, ref, opts, progress)
    finally:
        progress.close()
    if not quiet:
        click.echo(f"{image.name} {image.target.digest}")


@click.command("push")
@click.argument("ref")
@click.argument("local", required=False)
@click.option("--platform", "platforms", multiple=True, metavar="OS/ARCH[/VARIANT]",
              help="Push only this platform's manifest of an index")
@click.option("--max-concurrent-uploads", "max_concurrent", type=click.IntRange(min=1), metavar="N",
              help="Parallel blob uploads  [default: config, 3]")
@registry_options
@_silent_option
@click.pass_context
def push(ctx: click.Context, ref: str, local: str | None, platforms: tuple[str, ...], quiet: bool,
         **kw: Any) -> None:
    """Push the local image LOCAL (default REF) to the registry reference REF.

    \b
    Examples:
      ctrpy push localhost:5000/library/busybox:latest
      ctrpy push --plain-http localhost:5000/mirror/busybox:1 docker.io/library/busybox:latest
      ctrpy images push --platform linux/amd64 -u user:secret registry.example.com/team/app:v1
    """
    from ctrpy.commands._progress import make_progress
    from ctrpy.runtime.push import PushOptions, push as do_push

    client = ctx.obj.client
    reg, credential = _registry(ctx, kw, uploads=True)
    progress = make_progress(quiet)
    try:
        desc = do_push(client, ref, local, PushOptions(registry=reg, platforms=list(platforms),
                                                       credential=credential), progress)
    finally:
        progress.close()
    if not quiet:
        from ctrpy.runtime.reference import normalize

        click.echo(f"{normalize(ref)} {desc.digest}")


images.add_command(pull)
images.add_command(push)


@images.command("ls")
@click.argument("filters", nargs=-1)
@quiet_option
@format_option
@click.pass_context
def ls(ctx: click.Context, filters: tuple[str, ...], quiet: bool, fmt: str) -> None:
    """List images; FILTERS like name==docker.io/library/busybox:latest or labels."k"==v.

    \b
    Examples:
      ctrpy images ls
      ctrpy images ls -q 'name~=busybox'
      ctrpy images ls --format json 'labels."env"==prod'
    """
    from ctrpy.commands._listings import images_ls

    images_ls(ctx.obj, list(filters), quiet, fmt)


@images.command("inspect")
@click.argument("refs", nargs=-1, required=True)
@click.option("--mode", type=click.Choice(["dockercompat", "native"]), default="dockercompat", show_default=True,
              help="dockercompat: docker's image inspect JSON; native: the record, index, manifest and config")
@click.option("--platform", metavar="OS/ARCH[/VARIANT]", help="Platform whose manifest and config to show")
@json_format_option
@click.pass_context
def inspect(ctx: click.Context, refs: tuple[str, ...], mode: str, platform: str | None, fmt: str) -> None:
    """Show images as JSON: docker's shape, or ctr's with --mode native.

    \b
    Examples:
      ctrpy image inspect busybox
      ctrpy images inspect --mode native --platform linux/arm64 alpine:3.19
    """
    client = ctx.obj.client
    if mode == "dockercompat":
        from ctrpy.runtime.imageinfo import image_inspect

        emit_json([image_inspect(client, ref, platform or "") for ref in refs])
        return
    for ref in refs:
        emit_json(_native_inspect(client, ref, platform))


def _native_inspect(client: Client, ref: str, platform: str | None) -> dict[str, Any]:
    from ctrpy.runtime import errors, images as rt, platforms as plat

    image = _find(client, ref)
    out: dict[str, Any] = {"name": image.name, "target": image.target.to_dict(), "labels": image.labels,
                           "created_at": image.created_at, "updated_at": image.updated_at,
                           "size": rt.image_size(client.content, image)}
    out["platforms"] = [{"platform": st.platform, "manifest": st.manifest, "status": st.status}
                        for st in rt.check(client.content, image)]
    if client.content.exists(image.target.digest) and rt.is_index(image.target.media_type):
        out["index"] = rt.read_json(client.content, image.target)
    matcher = plat.matcher_for([platform] if platform else None)
    try:
        resolved = rt.resolve(client.content, image, matcher)
        out["manifest_digest"] = resolved.desc.digest
        out["manifest"] = resolved.manifest
        out["config"] = resolved.config
        out["chain_id"] = resolved.chain_id if resolved.diff_ids else None
    except errors.CtrpyError as exc:  # an incomplete image still shows what is there
        out["manifest_error"] = str(exc)
    return out


@images.command("tag")
@click.argument("source")
@click.argument("targets", nargs=-1, required=True)
@click.option("--force", "-f", is_flag=True, help="Replace an existing image of that name")
@click.pass_context
def tag(ctx: click.Context, source: str, targets: tuple[str, ...], force: bool) -> None:
    """Give the image SOURCE more names (TARGET...).

    \b
    Examples:
      ctrpy images tag docker.io/library/busybox:latest localhost:5000/busybox:v1
      ctrpy images tag --force busybox:latest busybox:stable
    """
    from ctrpy.runtime import errors
    from ctrpy.runtime.metadata.images import Image
    from ctrpy.runtime.reference import normalize

    client = ctx.obj.client
    image = _find(client, source)
    for target in targets:
        name = normalize(target)
        new = Image(name=name, target=image.target, labels=dict(image.labels))
        if force:
            client.images.upsert(new)
        else:
            try:
                client.images.create(new)
            except errors.AlreadyExists:
                raise errors.AlreadyExists(f"image {name!r} already exists (use --force to replace it)") from None
        click.echo(name)


@images.command("rm")
@click.argument("refs", nargs=-1, required=True)
@click.option("--no-gc", is_flag=True, help="Remove only the names; leave freeing space to `ctrpy gc`")
@click.pass_context
def rm(ctx: click.Context, refs: tuple[str, ...], no_gc: bool) -> None:
    """Remove images (by name, short name or ID) and free at once what nothing else references.

    Like containerd's `images rm --sync`: a garbage collection runs after the names are gone.

    \b
    Examples:
      ctrpy images rm docker.io/library/busybox:latest
      ctrpy images rm --no-gc busybox:latest alpine:3.19 && ctrpy gc
    """
    from ctrpy.commands.imagetools import remove_images

    remove_images(ctx, refs, no_gc)


@images.command("check")
@click.argument("filters", nargs=-1)
@quiet_option
@format_option
@click.pass_context
def check(ctx: click.Context, filters: tuple[str, ...], quiet: bool, fmt: str) -> None:
    """Show per platform whether each image's content is complete in the store.

    \b
    Examples:
      ctrpy images check
      ctrpy images check --format json 'name==docker.io/library/busybox:latest'
    """
    from ctrpy.runtime import images as rt

    client = ctx.obj.client
    rows = []
    for image in client.images.list(list(filters)):
        for st in rt.check(client.content, image):
            rows.append({"name": image.name, "media_type": image.target.media_type, "manifest": st.manifest,
                         "platform": st.platform, "status": st.status, "complete": st.complete,
                         "present": st.present, "required": st.required, "size": st.size})
    if quiet:
        for row in rows:
            if row["complete"]:
                click.echo(f"{row['name']} {row['platform']}")
        return
    if fmt == "json":
        emit_json(rows)
        return
    table(["REF", "TYPE", "PLATFORM", "DIGEST", "STATUS", "SIZE"],
          [[r["name"], r["media_type"], r["platform"], r["manifest"], r["status"], human_size(r["size"])]
           for r in rows])


@images.command("unpack")
@click.argument("ref")
@click.option("--snapshotter", metavar="NAME", help="Snapshotter to unpack into  [default: config]")
@click.option("--platform", metavar="OS/ARCH[/VARIANT]", help="Platform to unpack  [default: this host]")
@click.pass_context
def unpack(ctx: click.Context, ref: str, snapshotter: str | None, platform: str | None) -> None:
    """Unpack an image's layers into snapshots; prints the top chain ID.

    \b
    Examples:
      ctrpy images unpack docker.io/library/busybox:latest
      ctrpy images unpack --snapshotter native --platform linux/arm64 alpine:3.19
    """
    from ctrpy.runtime.unpack import unpack_image

    client = ctx.obj.client
    click.echo(unpack_image(client, _find(client, ref).name, snapshotter, platform=platform))

# Archives and docker's verbs (commands/imagetools.py); ctr's names for the archive verbs.
from ctrpy.commands import imagetools as _tools  # noqa: E402

images.add_command(_tools.save, "export")
images.add_command(_tools.load, "import")
images.add_command(_tools.prune)
images.add_command(_tools.history)

# ctr's aliases for the verbs.
images.add_command(ls, "list")
images.add_command(rm, "remove")
images.add_command(rm, "delete")
