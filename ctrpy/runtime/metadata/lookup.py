"""Read-only name lookups for shell completion: one short query, no store, no migration, no write lock.

`ctrpy __complete` calls these on every <Tab> before anything else of ctrpy is imported, so this module
imports only sqlite3 (and json for labels), and only when it queries. The file is opened read-only (SQLite may
leave the usual -wal/-shm files beside it, as any reader of a WAL database does); a missing or unreadable
store answers nothing.
"""

from __future__ import annotations

import os

DB_FILENAME = "meta.db"

# kind -> (query with the namespace as its first parameter when it has one, whether it takes the namespace)
_QUERIES: dict[str, tuple[str, bool]] = {
    "image": ("SELECT name FROM images WHERE namespace = ? ORDER BY name", True),
    "container": ("SELECT id FROM containers WHERE namespace = ? ORDER BY id", True),
    "snapshot": ("SELECT DISTINCT key FROM snapshots WHERE namespace = ? ORDER BY key", True),
    "namespace": ("SELECT name FROM namespaces ORDER BY name", False),
    "network": ("SELECT name FROM networks ORDER BY name", False),
    "lease": ("SELECT id FROM leases WHERE namespace = ? ORDER BY id", True),
    "content": ("SELECT digest FROM content WHERE namespace = ? ORDER BY digest", True),
}
KINDS = tuple(_QUERIES)
_SNAPSHOTS_OF = "SELECT key FROM snapshots WHERE namespace = ? AND snapshotter = ? ORDER BY key"
NAME_LABEL = "ctrpy.io/name"


def _rows(root: str, sql: str, params: tuple[object, ...]) -> list[tuple[object, ...]]:
    import sqlite3

    path = os.path.join(root, DB_FILENAME)
    if not os.path.exists(path):
        return []
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=0.5)
        try:
            return list(conn.execute(sql, params))
        finally:
            conn.close()
    except sqlite3.Error:
        return []


def names(root: str, kind: str, namespace: str, snapshotter: str | None = None) -> list[str]:
    """The names of one kind of object (see KINDS) in `namespace`, sorted; [] when the store is unreadable."""
    if kind == "snapshot" and snapshotter:
        return [str(r[0]) for r in _rows(root, _SNAPSHOTS_OF, (namespace, snapshotter))]
    sql, namespaced = _QUERIES[kind]
    return [str(r[0]) for r in _rows(root, sql, (namespace,) if namespaced else ())]


def container_names(root: str, namespace: str) -> dict[str, str]:
    """Container ID -> the name docker-shaped commands accept (the ctrpy.io/name label, else the ID)."""
    import json

    out: dict[str, str] = {}
    for cid, labels in _rows(root, "SELECT id, labels FROM containers WHERE namespace = ? ORDER BY id",
                             (namespace,)):
        try:
            out[str(cid)] = str((json.loads(str(labels or "{}")) or {}).get(NAME_LABEL) or cid)
        except ValueError:
            out[str(cid)] = str(cid)
    return out
