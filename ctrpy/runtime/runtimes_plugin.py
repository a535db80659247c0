"""Registrations of the runtime types: `builtin` (ctrpy's own, through the C helper) and `oci` (any runc-
compatible binary: runc, crun, ...).

A `[runtimes.<name>]` config entry picks its plugin with `type`, as containerd's `runtime_type` picks a shim;
the entry itself is the plugin's config (`ic.config`) and `<name>` is `ic.name`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ctrpy.runtime import errors
from ctrpy.runtime.plugins import InitContext, PluginType, Registration, SkipPlugin, register


def _root(ic: InitContext) -> Path:
    return Path(ic.config.get("root") or ic.state / "runtime" / ic.name)


def _init_builtin(ic: InitContext) -> Any:
    try:
        from ctrpy.runtime.builtin import BuiltinRuntime  # type: ignore[import-not-found,unused-ignore]
    except ImportError as exc:
        raise errors.NotImplemented_(
            f"runtime {ic.name!r}: the built-in runtime is not available in this build ({exc}); use --runtime runc"
        ) from None
    return BuiltinRuntime(_root(ic))


def _init_oci(ic: InitContext) -> Any:
    binary = ic.config.get("binary") or ic.name
    import shutil

    if ic.probe and shutil.which(binary) is None:
        raise SkipPlugin(f"{binary} is not installed")
    from ctrpy.runtime.ociruntime import OCICliRuntime

    return OCICliRuntime(ic.name, binary, _root(ic), tuple(ic.config.get("args", ())))


register(Registration(PluginType.RUNTIME, "builtin", _init_builtin, config="runtimes.ctrpy",
                      description="ctrpy's runtime, through the C helper"))
register(Registration(PluginType.RUNTIME, "oci", _init_oci, config="runtimes.runc",
                      description="a runc-compatible binary (runc, crun)"))
