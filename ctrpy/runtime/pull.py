"""Pull: resolve a reference, fetch what the wanted platforms need, verify everything, record the image.

Pipeline (containerd's client.Pull, inside a lease):

    resolve (HEAD manifests/<tag>)  ->  root index/manifest  ->  manifests for the platforms
        ->  configs and layers in a bounded thread pool  ->  image record  ->  unpack (unless --no-unpack)

Every object goes through a content-store writer: bytes are hashed while they stream to the ingest file, and
commit checks size and digest before anything becomes visible. The writer is exclusive per ref, so a second
process pulling the same image waits and then finds the blob committed (each blob is downloaded once). An
interrupted download leaves its ingest behind; the next pull resumes it with a Range request.

Parents get containerd's GC labels (`containerd.io/gc.ref.content.m.<i>` on an index, `.config` and `.l.<i>`
on a manifest) and every blob `containerd.io/distribution.source.<domain>=<repository>`.

Streaming unpack (issue 17): with unpacking on, layers are applied while they download. Each layer being
downloaded by this process has a `_Feed`; the fetch thread flushes every chunk to the ingest file and
advances the feed, and the unpacker (in order, in the calling thread) reads the same file behind it. The
stream ends only once the blob committed (size and digest verified), so the snapshot is committed after
the digest matched and discarded otherwise; a resumed ingest is read from its first byte; a download that
starts over (Range ignored) restarts the layer's apply. Layers already stored, or downloaded by another
process meanwhile, are applied from the content store. The image record is written after the unpack.

Progress is reported through a callback of `Progress` events; the CLI renders them (commands/_progress.py).
A transfer that moves no byte for `progress_timeout` seconds fails; `deadline` bounds the whole pull.
"""

from __future__ import annotations

import contextlib
import io
import os
import threading
import time
from collections.abc import Callable
import queue
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ctrpy.runtime import errors, images as _images, platforms as _platforms
from ctrpy.runtime.content import Descriptor
from ctrpy.runtime.reference import Reference, parse
from ctrpy.runtime.remotes import RegistryOptions, pull_deadline, registry_options

if TYPE_CHECKING:
    from ctrpy.runtime.client import Client


# Bytes per second below which a layer download counts as stalled (measured over progress_timeout).
MIN_RATE = 1024


@dataclass
class Progress:
    """One progress event. `status`: resolving, resolved, waiting, downloading, exists, done, failed,
    unpacking, unpacked, warning."""

    key: str                      # "layer-sha256:...", "manifest-sha256:...", or the reference
    status: str
    kind: str = ""
    digest: str = ""
    offset: int = 0
    total: int = 0
    message: str = ""


ProgressFn = Callable[[Progress], None]


@dataclass
class PullOptions:
    registry: RegistryOptions = field(default_factory=RegistryOptions)
    platforms: list[str] = field(default_factory=list)
    all_platforms: bool = False
    unpack: bool = True
    snapshotter: str | None = None
    deadline: float = 0.0           # seconds for the whole pull; 0: none
    labels: dict[str, str] = field(default_factory=dict)
    credential: Any = None          # remotes.auth.Credential from --user


def options_from_config(config: Any, **overrides: Any) -> PullOptions:
    opts = PullOptions(registry=registry_options(config), deadline=pull_deadline(config))
    for key, value in overrides.items():
        setattr(opts, key, value)
    return opts


class _Cancelled(Exception):
    pass


def run_bounded(fn: Callable[[Any], None], items: list[Any], workers: int, cancel: threading.Event, *,
                check: Callable[[], None] | None = None, grace: float = 2.0) -> None:
    """Run fn(item) for every item on at most `workers` threads; the first failure cancels the rest and is
    raised. `check()` runs every 0.2 s in the caller (deadlines). The threads are daemons: a transfer stuck
    in a read can delay neither Ctrl-C nor the report of another failure by more than `grace` seconds."""
    if not items:
        return
    pending: queue.SimpleQueue[Any] = queue.SimpleQueue()
    for item in items:
        pending.put(item)
    failures: list[BaseException] = []
    lock = threading.Lock()

    def worker() -> None:
        while not cancel.is_set():
            try:
                item = pending.get_nowait()
            except queue.Empty:
                return
            try:
                fn(item)
            except BaseException as exc:  # noqa: BLE001 - handed to the caller below
                with lock:
                    failures.append(exc)
                cancel.set()

    threads = [threading.Thread(target=worker, name=f"transfer-{i}", daemon=True)
               for i in range(max(1, min(workers, len(items))))]
    for thread in threads:
        thread.start()
    try:
        while True:
            alive = [t for t in threads if t.is_alive()]
            if not alive or failures:
                break
            alive[0].join(0.2)
            if failures:
                break
            if check is not None:
                check()
    except BaseException:
        cancel.set()
        raise
    finally:
        if cancel.is_set():
            stop_at = time.monotonic() + grace
            for thread in threads:
                thread.join(max(0.0, stop_at - time.monotonic()))
    real = [f for f in failures if not isinstance(f, _Cancelled)]
    if real:
        raise real[0]
    if failures:
        raise failures[0]


class _Feed:
    """How far this process's download of one blob has got, for the unpacker reading behind it."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.state = "pending"          # pending, streaming, stored (in the content store), failed
        self.fd = -1                    # the ingest data file, read-only, while streaming
        self.written = 0                # bytes flushed to that file
        self.generation = 0             # bumped when the download starts over
        self.error: BaseException | None = None

    def stream(self, path: str, offset: int) -> None:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        with self.cond:
            self.fd, self.written, self.state = fd, offset, "streaming"
            self.cond.notify_all()

    def advance(self, offset: int) -> None:
        with self.cond:
            self.written = offset
            self.cond.notify_all()

    def restart(self) -> None:
        with self.cond:
            self.written = 0
            self.generation += 1
            self.cond.notify_all()

    def finish(self, state: str, error: BaseException | None = None) -> None:
        with self.cond:
            if self.state in ("stored", "failed"):
                return
            self.state, self.error = state, error
            if self.fd >= 0:
                os.close(self.fd)  # readers hold their own dup: a committed blob reads on from the inode
                self.fd = -1
            self.cond.notify_all()

    def wait_done(self, check: Callable[[], None]) -> BaseException | None:
        """Wait for the download to end; its error, or None once stored."""
        with self.cond:
            while self.state not in ("stored", "failed"):
                self.cond.wait(0.2)
                check()
            return self.error


class _FeedReader(io.RawIOBase):
    """Reads a blob from its first byte while it downloads; EOF only once it is committed (verified)."""

    def __init__(self, feed: _Feed, fd: int, check: Callable[[], None]) -> None:
        self.feed = feed
        self.fd = fd
        self.pos = 0
        self.generation = feed.generation
        self.check = check
        self.error: BaseException | None = None

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        try:
            return self._readinto(b)
        except BaseException as exc:
            # The decompressor thread wraps whatever it reads from us; keep the real cause for the opener.
            self.error = exc
            raise

    def _readinto(self, b: Any) -> int:
        feed = self.feed
        with feed.cond:
            while True:
                if feed.generation != self.generation:
                    from ctrpy.runtime.unpack import RestartLayer

                    raise RestartLayer()
                if self.pos < feed.written:
                    n = min(len(b), feed.written - self.pos)
                    break
                if feed.state == "failed":
                    raise feed.error or _Cancelled()
                if feed.state == "stored":
                    return 0
                feed.cond.wait(0.2)
                self.check()
        data = os.pread(self.fd, n, self.pos)
        if feed.generation != self.generation or not data:
            # The download started over (truncated the file) between our look and our read.
            from ctrpy.runtime.unpack import RestartLayer

            raise RestartLayer()
        b[: len(data)] = data
        self.pos += len(data)
        return len(data)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        super().close()


class _Puller:
    def __init__(self, client: Client, ref: Reference, opts: PullOptions, progress: ProgressFn | None) -> None:
        self.client = client
        self.store = client.content
        self.ref = ref
        self.opts = opts
        self.progress = progress or (lambda event: None)
        self.cancel = threading.Event()
        self.deadline_at = time.monotonic() + opts.deadline if opts.deadline else None
        self.matcher = _platforms.matcher_for(opts.platforms, opts.all_platforms)
        self.source_label = {f"{_images.DISTRIBUTION_SOURCE}.{ref.domain}": ref.path}
        self.lease_id: str | None = None
        self.session: Any = None
        self.feeds: dict[str, _Feed] = {}
        self.unpacker: Callable[[Any, Callable[[Descriptor], Any], Callable[[], None]], str | None] | None = None
        self.ingests: set[str] = set()    # ingest refs this pull wrote (given up if it fails)

    # -- helpers -------------------------------------------------------------------------------------------

    def _check_time(self) -> None:
        if self.cancel.is_set():
            raise _Cancelled()
        self._check_deadline()

    def _check_deadline(self) -> None:
        if self.deadline_at is not None and time.monotonic() > self.deadline_at:
            raise errors.DeadlineExceeded(f"pull {self.ref}: deadline of {self.opts.deadline:g}s exceeded")

    def _remaining(self) -> float | None:
        if self.deadline_at is None:
            return None
        return max(0.1, self.deadline_at - time.monotonic())

    def _timeout(self) -> float:
        remaining = self._remaining()
        base = self.opts.registry.progress_timeout
        return min(base, remaining) if remaining is not None else base

    def _lease_add(self, rtype: str, resource: str) -> None:
        if rtype == "ingests":
            self.ingests.add(resource)
        if self.lease_id:
            try:
                self.client.leases.add_resource(self.lease_id, rtype, resource)
            except errors.NotFound:
                # Someone removed our lease (`leases rm`) while we pulled: what we fetched is no longer
                # protected from a concurrent gc, so the pull lost the race and stops (retrying is safe).
                raise errors.Aborted(
                    f"pull {self.ref}: its lease {self.lease_id} was removed by a concurrent command; the "
                    f"content fetched so far was no longer protected from gc (pull again)") from None

    def _labels_for(self, desc: Descriptor, extra: dict[str, str] | None = None) -> dict[str, str]:
        labels = dict(self.source_label)
        labels.update(extra or {})
        return labels

    def _writer(self, key: str, desc: Descriptor) -> Any:
        """The ingest writer for `key`; while another process holds it (a concurrent pull of the same
        content), poll, so the deadline and Ctrl-C still apply, and then find its work committed."""
        while True:
            try:
                return self.store.writer(key, expected=desc.digest, total=desc.size, wait=False)
            except errors.Unavailable as exc:
                if "locked" not in str(exc):
                    raise
            self._check_time()
            time.sleep(0.05)

    def _key(self, desc: Descriptor) -> str:
        return f"{_images.kind(desc.media_type)}-{desc.digest}"

    def _merge_labels(self, digest: str, labels: dict[str, str]) -> None:
        """Add labels to a stored blob; distribution sources accumulate (containerd keeps a comma list)."""
        current = self.store.info(digest).labels
        merged = dict(labels)
        for key, value in labels.items():
            if key.startswith(_images.DISTRIBUTION_SOURCE + "."):
                repos = [r for r in current.get(key, "").split(",") if r]
                if value not in repos:
                    repos.append(value)
                merged[key] = ",".join(repos)
        self.store.update_labels(digest, merged)

    def _already_here(self, desc: Descriptor, labels: dict[str, str]) -> bool:
        if self.store.exists(desc.digest):
            self._merge_labels(desc.digest, labels)
            return True
        return False

    # -- small objects: manifests, indexes, configs --------------------------------------------------------

    def fetch_json(self, desc: Descriptor, data: bytes | None = None) -> dict[str, Any]:
        """Fetch (or reuse) a manifest/index/config, verify it, store it with its GC labels; return it parsed."""
        self._check_time()
        key = self._key(desc)
        # Lease first, look second: a concurrent GC must not collect the blob between the two.
        self._lease_add("content", desc.digest)
        if self.store.exists(desc.digest):
            obj = _images.read_json(self.store, desc)
            labels = self._labels_for(desc, _images.gc_labels(desc, self._wanted_children(desc, obj)))
            self._merge_labels(desc.digest, labels)
            self.progress(Progress(key, "exists", _images.kind(desc.media_type), desc.digest, desc.size, desc.size))
            return obj
        self.progress(Progress(key, "downloading", _images.kind(desc.media_type), desc.digest, 0, desc.size))
        if data is None:
            data = self.session.fetch_bytes(self.ref.path, desc)
        else:
            from ctrpy.runtime.remotes.docker import verify_bytes

            verify_bytes(data, desc, self.ref.domain)
        obj = _images.parse_json(data, desc)
        labels = self._labels_for(desc, _images.gc_labels(desc, self._wanted_children(desc, obj)))
        with self._writer(key, desc) as w:
            self._lease_add("ingests", key)
            if not w.committed_already:
                w.truncate(0)
                w.write(data)
            w.commit(desc.size, desc.digest, labels)
        self.progress(Progress(key, "done", _images.kind(desc.media_type), desc.digest, desc.size, desc.size))
        return obj

    def _wanted_children(self, desc: Descriptor, obj: dict[str, Any]) -> list[Descriptor]:
        kids = _images.children(desc, obj)
        if _images.is_index(desc.media_type):
            return self._select(kids)
        return kids

    def _select(self, manifests: list[Descriptor]) -> list[Descriptor]:
        """The manifests of an index to fetch: the best match per wanted platform, or all."""
        if isinstance(self.matcher, _platforms.Any_):
            return manifests
        nested = [m for m in manifests if _images.is_index(m.media_type)]
        candidates = [m for m in manifests if _images.is_manifest(m.media_type)]
        ranked = _images.select(candidates, self.matcher)
        if isinstance(self.matcher, _platforms.Exact):
            chosen = []
            for matcher in self.matcher.matchers:
                best = _images.select(candidates, matcher)
                if best and best[0] not in chosen:
                    chosen.append(best[0])
            return chosen + nested
        return ranked[:1] + nested

    # -- layers ----------------------------------------------------------------------------------------------

    def fetch_blob(self, desc: Descriptor) -> None:
        """Stream one blob into the content store, resuming a partial ingest, verifying before commit."""
        feed = self.feeds.get(desc.digest)
        try:
            self._fetch_blob(desc, feed)
        except BaseException as exc:
            if feed is not None:
                feed.finish("failed", exc)
            raise
        if feed is not None:
            feed.finish("stored")

    def _fetch_blob(self, desc: Descriptor, feed: _Feed | None) -> None:
        import httpx

        key = self._key(desc)
        kind = _images.kind(desc.media_type)
        labels = self._labels_for(desc)
        self._check_time()
        self._lease_add("content", desc.digest)
        if self._already_here(desc, labels):
            self.progress(Progress(key, "exists", kind, desc.digest, desc.size, desc.size))
            return
        self.progress(Progress(key, "waiting", kind, desc.digest, 0, desc.size))
        with self._writer(key, desc) as w:
            self._lease_add("ingests", key)
            if w.committed_already:
                w.commit(desc.size, desc.digest, labels)
                self.progress(Progress(key, "exists", kind, desc.digest, desc.size, desc.size))
                return
            offset = w.offset
            if offset > desc.size:
                w.truncate(0)
                offset = 0
            if feed is not None:
                feed.stream(str(w.data_path), offset)
            if offset < desc.size or desc.size == 0:
                host, resp = self.session.open_blob(self.ref.path, desc, offset, timeout=self._timeout())
                try:
                    declared = resp.headers.get("content-length", "")
                    if declared.isdigit() and int(declared) > desc.size - (offset if resp.status_code == 206 else 0):
                        raise errors.FailedPrecondition(
                            f"{kind} {desc.digest} from {host.host}: declares {int(declared)} bytes, more than the "
                            f"{desc.size} the descriptor says; refused without reading it")
                    if offset and resp.status_code != 206:
                        # The server ignored the Range: start over.
                        w.truncate(0)
                        offset = 0
                        if feed is not None:
                            feed.restart()
                    self.progress(Progress(key, "downloading", kind, desc.digest, offset, desc.size))
                    last_report = 0.0
                    window_start, window_bytes = time.monotonic(), 0
                    window = self.opts.registry.progress_timeout
                    for chunk in resp.iter_bytes():
                        self._check_time()
                        offset += len(chunk)
                        window_bytes += len(chunk)
                        if time.monotonic() - window_start >= window:
                            # A drip of a few bytes never trips the read timeout: like curl's
                            # --speed-limit, a transfer this slow over a whole window fails.
                            if window_bytes < MIN_RATE * window:
                                raise errors.DeadlineExceeded(
                                    f"fetch {kind} {desc.digest[:19]}: {host.host} sent only {window_bytes} bytes "
                                    f"in {window:g}s (stalled transfer); the partial download is kept")
                            window_start, window_bytes = time.monotonic(), 0
                        if offset > desc.size:
                            w.truncate(0)
                            raise errors.FailedPrecondition(
                                f"{kind} {desc.digest} from {host.host}: more than the {desc.size} bytes the "
                                f"descriptor declares; nothing stored")
                        w.write(chunk)
                        if feed is not None:
                            w.flush()
                            feed.advance(offset)
                        now = time.monotonic()
                        if now - last_report > 0.1:
                            last_report = now
                            self.progress(Progress(key, "downloading", kind, desc.digest, offset, desc.size))
                except httpx.HTTPError as exc:
                    raise self.session._translate(exc, host, f"fetch {kind} {desc.digest[:19]}") from None
                finally:
                    resp.close()
                if offset < desc.size:
                    raise errors.Unavailable(
                        f"fetch {kind} {desc.digest[:19]}: {host.host} sent {offset} of {desc.size} bytes "
                        f"(truncated body); the partial download is kept and resumes on the next pull")
            try:
                w.commit(desc.size, desc.digest, labels)
            except errors.FailedPrecondition as exc:
                raise errors.FailedPrecondition(
                    f"{kind} {desc.digest} failed verification ({exc}): the registry served corrupt or "
                    f"tampered content; nothing stored") from None
        self.progress(Progress(key, "done", kind, desc.digest, desc.size, desc.size))

    def fetch_all(self, blobs: list[Descriptor]) -> None:
        """Download blobs in parallel (bounded); the first failure cancels the rest."""
        unique: dict[str, Descriptor] = {}
        for desc in blobs:
            unique.setdefault(desc.digest, desc)
        run_bounded(self.fetch_blob, list(unique.values()), self.opts.registry.max_concurrent, self.cancel,
                    check=self._check_deadline)

    def open_layer(self, desc: Descriptor) -> Any:
        """The unpacker's source for a layer: the download in progress, else the content store."""
        feed = self.feeds.get(desc.digest)
        fd = -1
        if feed is not None:
            with feed.cond:
                while feed.state == "pending":
                    feed.cond.wait(0.2)
                    self._check_time()
                if feed.state == "failed":
                    raise feed.error or _Cancelled()
                if feed.state == "streaming":
                    fd = os.dup(feed.fd)
        if fd < 0:
            from ctrpy.runtime.unpack import _store_opener

            return _store_opener(self.client, desc)
        return _streamed_layer(_FeedReader(feed, fd, self._check_time))  # type: ignore[arg-type]

    def _fetch_and_unpack(self, image: Any, blobs: list[Descriptor]) -> None:
        """Download in a background thread while the unpacker applies layers in order here."""
        assert self.unpacker is not None
        self.feeds = {desc.digest: _Feed() for desc in blobs}
        failure: list[BaseException] = []

        def fetch() -> None:
            try:
                self.fetch_all(blobs)
            except BaseException as exc:  # noqa: BLE001 - reported by the calling thread
                failure.append(exc)
                for feed in self.feeds.values():
                    feed.finish("failed", exc)

        fetcher = threading.Thread(target=fetch, name="pull-fetch", daemon=True)
        fetcher.start()
        try:
            self.unpacker(image, self.open_layer, self._check_time)
            while fetcher.is_alive():
                fetcher.join(0.2)
                self._check_deadline()
        except BaseException as exc:
            self.cancel.set()
            fetcher.join(3.0)
            real = [f for f in failure if not isinstance(f, _Cancelled)]
            if real and not isinstance(exc, KeyboardInterrupt):
                raise real[0] from None  # the download's own failure, not its echo in the unpacker
            raise
        if failure:
            raise failure[0]

    # -- the whole pull ------------------------------------------------------------------------------------

    def run(self) -> Any:
        try:
            return self._run()
        except errors.DeadlineExceeded:
            # A read timeout cut short by the overall deadline is reported as the deadline.
            self._check_deadline()
            raise

    def _run(self) -> Any:
        from ctrpy.runtime.metadata.images import Image
        from ctrpy.runtime.remotes.docker import Session

        name = str(self.ref)
        self.progress(Progress(name, "resolving"))
        with Session(self.ref.domain, self.opts.registry, credential=self.opts.credential,
                     timeout=self._timeout()) as session:
            self.session = session
            root, data = session.resolve(self.ref)
            self.progress(Progress(name, "resolved", _images.kind(root.media_type), root.digest, 0, root.size))
            manifests = self._walk(root, data)
            blobs: list[Descriptor] = []
            for desc, manifest in manifests:
                kids = _images.children(desc, manifest)
                self.fetch_json(kids[0])        # the config: small, and it says which platform this is
                blobs.extend(kids[1:])
            image = Image(name=name, target=Descriptor(root.media_type, root.digest, root.size),
                          labels=dict(self.opts.labels))
            if self.unpacker is not None:
                self._fetch_and_unpack(image, blobs)
            else:
                self.fetch_all(blobs)
        return self.client.images.upsert(image)

    def _walk(self, root: Descriptor, data: bytes | None) -> list[tuple[Descriptor, dict[str, Any]]]:
        """Fetch the root and the wanted manifests below it; returns (manifest desc, manifest)."""
        out: list[tuple[Descriptor, dict[str, Any]]] = []
        pending: list[tuple[Descriptor, bytes | None, int]] = [(root, data, 0)]
        while pending:
            desc, raw, depth = pending.pop(0)
            if depth > 4:
                raise errors.InvalidArgument(f"{self.ref}: index nesting too deep")
            obj = self.fetch_json(desc, raw)
            if _images.is_manifest(desc.media_type):
                out.append((desc, obj))
                continue
            if not _images.is_index(desc.media_type):
                raise errors.NotImplemented_(f"{self.ref}: unsupported media type {desc.media_type!r}")
            wanted = self._wanted_children(desc, obj)
            if not wanted:
                available = ", ".join(sorted({_images.format_platform(m.platform) for m in
                                              _images.children(desc, obj)})) or "none"
                want = ", ".join(self.opts.platforms) or _platforms.format_platform(_platforms.host())
                raise errors.NotFound(f"{self.ref}: no manifest for platform {want} (available: {available})")
            pending.extend((child, None, depth + 1) for child in wanted)
        return out


def pull(client: Client, ref: str, opts: PullOptions | None = None, progress: ProgressFn | None = None) -> Any:
    """Pull `ref` into the client's namespace; returns the Image. Unpacks unless opts.unpack is False."""
    opts = opts or options_from_config(client.config)
    parsed = parse(ref)
    for spec in opts.platforms:
        _platforms.parse(spec)
    if opts.unpack:
        # An unknown snapshotter is bad input: refuse it before a byte is fetched.
        from ctrpy.runtime import plugins

        plugins.get(plugins.PluginType.SNAPSHOTTER, opts.snapshotter or client.config["default_snapshotter"])
    puller = _Puller(client, parsed, opts, progress)
    if opts.unpack:
        puller.unpacker = lambda image, opener, check: _unpack(client, image, opts, puller.progress, opener, check)
    # The image is recorded (in run()) only once the pull as asked for, unpack included, succeeded: a refused
    # layer must not leave an image that `images check` calls complete.
    with _lease(client) as lease_id, _abandon_on_failure(puller):
        puller.lease_id = lease_id
        image = puller.run()
    return image


@contextlib.contextmanager
def _streamed_layer(reader: _FeedReader) -> Any:
    try:
        yield reader
    except BaseException as exc:
        # The applier saw our failure wrapped ("cannot decompress", a truncated tar): report the cause.
        if reader.error is not None:
            raise reader.error from None
        if isinstance(exc, errors.CtrpyError):
            # Bad data before the digest was checked may be a corrupt download rather than a bad layer:
            # let the download finish, so the error (and what is stored) is what a non-streaming pull gives.
            failure = reader.feed.wait_done(reader.check)
            if failure is not None and not isinstance(failure, _Cancelled):
                raise failure from None
        raise
    finally:
        reader.close()


@contextlib.contextmanager
def _abandon_on_failure(puller: _Puller) -> Any:
    """A failed pull gives up its partial downloads: the next pull resumes them, and `gc` frees them until
    then (the pull's lease goes with it, as containerd's does). A killed pull keeps its lease, hence its
    ingests, for the lease's 24 h."""
    try:
        yield
    except BaseException:
        with contextlib.suppress(errors.CtrpyError):
            puller.store.abandon(sorted(puller.ingests))
        raise


@contextlib.contextmanager
def _lease(client: Client) -> Any:
    """A 24 h lease protecting the pull's content from GC until the image record holds it."""
    with client.leases.lease(expire=86400) as lease_id:
        yield lease_id


def _unpack(client: Client, image: Any, opts: PullOptions, progress: ProgressFn, opener: Any = None,
            check: Callable[[], None] | None = None) -> str | None:
    from ctrpy.runtime.unpack import unpack_image

    platform = opts.platforms[0] if opts.platforms else None
    progress(Progress(image.name, "unpacking"))

    def layer_event(event: Any) -> None:
        status = {"applying": "unpacking", "applied": "unpacked", "shared": "exists"}.get(event.status, event.status)
        progress(Progress(f"unpack-{event.digest}", status, "layer", event.digest, event.bytes, event.bytes))

    chain = unpack_image(client, image, snapshotter=opts.snapshotter, platform=platform, progress=layer_event,
                         opener=opener, check=check)
    progress(Progress(image.name, "unpacked", digest=str(chain)))
    return str(chain)
