"""Rows for the plain listings (`images ls`, `containers ls` without filters): plain tuples of the printed
columns, read in one query, without the stores' record classes.

The stores (images.py, containers.py) import dataclasses, the filter grammar and the content store's types,
which cost more start-up than such a listing's own work (issue 17); the fast path of commands/_root.py runs
these instead, and the Click commands do too when no filter is given, so both print the same.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ctrpy.runtime.metadata.db import DB


def has_images(db: DB, namespace: str) -> bool:
    """Whether `namespace` has any image (an empty `images ls` needs nothing else)."""
    with db.view() as tx:
        return tx.execute("SELECT 1 FROM images WHERE namespace = ? LIMIT 1", (namespace,)).fetchone() is not None


def container_rows(db: DB, namespace: str) -> list[tuple[str, str, str, str]]:
    """(id, image, runtime name, created at) of every container in `namespace`, sorted by ID, like
    ContainerStore.summaries()."""
    with db.view() as tx:
        cursor = tx.cursor()
        cursor.row_factory = None  # plain tuples: a sqlite3.Row per row costs more than reading it
        rows: list[tuple[str, str, str, str]] = cursor.execute(
            "SELECT id, image, runtime_name, created_at FROM containers WHERE namespace = ? ORDER BY id",
            (namespace,)).fetchall()
        return rows
