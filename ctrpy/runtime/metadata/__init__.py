"""The metadata layer: the only owner of SQL in ctrpy (containerd's core/metadata owns its bolt buckets).

Stores over the one SQLite file live in this package: namespaces, images, containers, leases, events,
content (the namespaced view over the local blob store), snapshots (the namespaced view over a snapshotter
backend), networks, the garbage collector's mark and metadata sweep (gc), and `lookup`, the read-only queries
of shell completion. Everything else calls their methods and never writes a statement itself.

The database itself (DB, transactions, label and namespace checks) is in `db`; its names are re-exported
here, imported on first use, so that `lookup` (imported by the completion fast path, which must not pay for
pathlib, typing or threading) can live in this package.
"""

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ctrpy.runtime.metadata.db import DB as DB
    from ctrpy.runtime.metadata.db import append_event as append_event
    from ctrpy.runtime.metadata.db import dump_labels as dump_labels
    from ctrpy.runtime.metadata.db import ensure_namespace as ensure_namespace
    from ctrpy.runtime.metadata.db import load_json as load_json
    from ctrpy.runtime.metadata.db import now as now
    from ctrpy.runtime.metadata.db import validate_labels as validate_labels
    from ctrpy.runtime.metadata.db import validate_namespace as validate_namespace

_LAZY = frozenset({"DB", "append_event", "dump_labels", "ensure_namespace", "load_json", "now", "validate_labels",
                   "validate_namespace"})


def __getattr__(name: str) -> object:
    if name in _LAZY:
        from ctrpy.runtime.metadata import db

        value = getattr(db, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
