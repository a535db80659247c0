"""Registrations of the network drivers: bridge (built-in), cni, host and none.

A driver connects a task's network namespace and undoes it; the network package resolves a `--network`
value to a driver ID (ctrpy.runtime.network.resolve) and calls the driver through the registry, so a
package can add a driver by entry point (type io.ctrpy.network.v1). The work itself stays in the network
package; these classes are the seam.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Protocol

from ctrpy.runtime.plugins import InitContext, PluginType, Registration, SkipPlugin, register

if TYPE_CHECKING:
    from ctrpy.runtime.client import Client
    from ctrpy.runtime.network import NetworkRequest, NetworkResult
    from ctrpy.runtime.metadata.networks import NetworkStore
    from ctrpy.runtime.network.store import Attachment


class Driver(Protocol):
    """What a network driver does for one task."""

    def reserve(self, client: Client, container_id: str, spec: NetworkRequest, target: Any) -> NetworkResult:
        """Claim what must be known before the task exists (the bridge's address and host ports)."""
        ...

    def attach(self, client: Client, container_id: str, netns_path: str, spec: NetworkRequest,
               target: Any) -> NetworkResult: ...

    def detach(self, client: Client, netstore: NetworkStore, att: Attachment) -> bool:
        """Undo the kernel side of `att`; True when it had published ports (the nft table may go)."""
        ...

    def check(self, client: Client, att: Attachment) -> None: ...


class _NoReservation:
    mode = ""

    def reserve(self, client: Client, container_id: str, spec: NetworkRequest, target: Any) -> NetworkResult:
        from ctrpy.runtime.network import NetworkResult

        return NetworkResult(self.mode, getattr(target, "name", None))


class HostDriver(_NoReservation):
    """The host's network namespace: nothing to do."""

    mode = "host"

    def attach(self, client: Client, container_id: str, netns_path: str, spec: NetworkRequest,
               target: Any) -> NetworkResult:
        from ctrpy.runtime.network import NetworkResult

        return NetworkResult("host")

    def detach(self, client: Client, netstore: NetworkStore, att: Attachment) -> bool:
        return False

    def check(self, client: Client, att: Attachment) -> None:
        pass


class NoneDriver(HostDriver):
    """A private namespace with only loopback up."""

    mode = "none"

    def attach(self, client: Client, container_id: str, netns_path: str, spec: NetworkRequest,
               target: Any) -> NetworkResult:
        from ctrpy.runtime.network import NetworkResult, netlink

        netlink.loopback_up(netns_path)
        return NetworkResult("none")


class BridgeDriver:
    """ctrpy's own bridge + veth + nftables port publishing."""

    def reserve(self, client: Client, container_id: str, spec: NetworkRequest, target: Any) -> NetworkResult:
        from ctrpy.runtime.network import _reserve_bridge

        return _reserve_bridge(client, container_id, spec, target)

    def attach(self, client: Client, container_id: str, netns_path: str, spec: NetworkRequest,
               target: Any) -> NetworkResult:
        from ctrpy.runtime.network import _attach_bridge

        return _attach_bridge(client, container_id, netns_path, spec, target)

    def detach(self, client: Client, netstore: NetworkStore, att: Attachment) -> bool:
        from ctrpy.runtime.network import _detach_bridge

        return _detach_bridge(client, netstore, att)

    def check(self, client: Client, att: Attachment) -> None:
        from ctrpy.runtime.network import _check_bridge

        _check_bridge(client, att)


class CNIDriver(_NoReservation):
    """CNI plugins from a conflist (containerd's go-cni); the address is known only after ADD."""

    mode = "cni"

    def attach(self, client: Client, container_id: str, netns_path: str, spec: NetworkRequest,
               target: Any) -> NetworkResult:
        from ctrpy.runtime.network import _attach_cni

        return _attach_cni(client, container_id, netns_path, spec, target)

    def detach(self, client: Client, netstore: NetworkStore, att: Attachment) -> bool:
        from ctrpy.runtime.network import _detach_cni

        _detach_cni(client, att)
        return False

    def check(self, client: Client, att: Attachment) -> None:
        from ctrpy.runtime.network import _check_cni

        _check_cni(client, att)


def _init_cni(ic: InitContext) -> Any:
    bin_dir = str(ic.config.get("cni_bin_dir") or "/usr/lib/cni")
    if ic.probe and not os.path.isdir(bin_dir):
        raise SkipPlugin(f"no CNI plugin directory {bin_dir}")
    return CNIDriver()


register(Registration(PluginType.NETWORK, "bridge", lambda ic: BridgeDriver(), config="network",
                      description="ctrpy's bridge, veth pairs and nftables port publishing"))
register(Registration(PluginType.NETWORK, "cni", _init_cni, config="network",
                      description="CNI plugins from conflists in network.cni_conf_dir"))
register(Registration(PluginType.NETWORK, "host", lambda ic: HostDriver(), description="the host's network"))
register(Registration(PluginType.NETWORK, "none", lambda ic: NoneDriver(), description="loopback only"))
