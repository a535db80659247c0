"""Registrations of the built-in snapshotters (containerd's plugins/snapshots/*/plugin/plugin.go).

A snapshotter plugin's init returns a backend (see ctrpy.runtime.snapshots.backend) rooted at
<root>/snapshots/<ID>; open_snapshotter puts the metadata layer in front of it. The implementation modules
are imported only when a snapshotter is opened.
"""

from __future__ import annotations

from typing import Any

from ctrpy.runtime.plugins import InitContext, PluginType, Registration, SkipPlugin, register


def _overlay_supported() -> bool:
    try:
        with open("/proc/filesystems") as f:
            return any(line.split()[-1:] == ["overlay"] for line in f)
    except OSError:
        return False


def _init_overlay(ic: InitContext) -> Any:
    from ctrpy.runtime.snapshots.overlay import OverlayBackend

    if ic.probe and not _overlay_supported():
        # Only probed when listing: mount reports the real error when overlay is used anyway.
        raise SkipPlugin("overlay is not in /proc/filesystems (modprobe overlay)")
    return OverlayBackend(ic.root, **ic.config)


def _init_native(ic: InitContext) -> Any:
    from ctrpy.runtime.snapshots.native import NativeBackend

    return NativeBackend(ic.root, **ic.config)


register(Registration(PluginType.SNAPSHOTTER, "overlayfs", _init_overlay, config="plugins.snapshotter.overlayfs",
                      requires=(), description="overlayfs lowerdir chains (the default)"))
register(Registration(PluginType.SNAPSHOTTER, "native", _init_native, config="plugins.snapshotter.native",
                      description="full copies; works on any file system"))
