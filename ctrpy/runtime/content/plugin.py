"""Registration of the local content store (containerd's plugins/content/local/plugin).

Init returns the blob store under <root>/content; with a client it returns that namespace's metadata view.
"""

from __future__ import annotations

from typing import Any

from ctrpy.runtime.plugins import InitContext, PluginType, Registration, register


def _init_local(ic: InitContext) -> Any:
    if ic.client is not None:
        from ctrpy.runtime.content import Store
        from ctrpy.runtime.metadata.content import ContentStore

        store: Store = ContentStore(ic.client.db, ic.root, ic.client.namespace)
        return store
    from ctrpy.runtime.content.local import LocalStore

    return LocalStore(ic.root)


register(Registration(PluginType.CONTENT, "local", _init_local, description="blobs and ingests on the local disk"))
