"""CNI: networks defined by conflists in `[network] cni_conf_dir`, run through the plugins in `cni_bin_dir`.

As the CNI specification (SPEC.md, 1.0.0) has it: every plugin of a list is executed with CNI_COMMAND,
CNI_CONTAINERID, CNI_NETNS, CNI_IFNAME, CNI_ARGS and CNI_PATH in its environment and its network
configuration on stdin (the list's `cniVersion` and `name` added, `prevResult` chained from the plugin
before, `runtimeConfig` holding the capability arguments it declares, such as `portMappings`). ADD runs the
list in order; DEL in reverse order with the cached ADD result as prevResult; CHECK in order with it. A
failed ADD is undone with a DEL of the whole list. A plugin reports failure by a non-zero exit and a JSON
error `{code, msg, details}` on stdout, which becomes one line here.

The final ADD result is cached in the attachment row (the metadata store) rather than libcni's
/var/lib/cni/results, so DEL and CHECK work after a restart and prune can find it.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ctrpy.runtime import errors

SUPPORTED_VERSIONS = ("0.3.0", "0.3.1", "0.4.0", "1.0.0")


@dataclass(frozen=True)
class ConfList:
    name: str
    cni_version: str
    plugins: list[dict[str, Any]]
    path: str

    def capability(self, name: str) -> bool:
        return any(p.get("capabilities", {}).get(name) for p in self.plugins)


def load_conflists(conf_dir: str) -> dict[str, ConfList]:
    """Every *.conflist (and single-plugin *.conf/*.json) in `conf_dir`, by network name; first file wins."""
    out: dict[str, ConfList] = {}
    if not conf_dir or not os.path.isdir(conf_dir):
        return out
    for path in sorted(Path(conf_dir).iterdir()):
        if path.suffix not in (".conflist", ".conf", ".json"):
            continue
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise errors.InvalidArgument(f"invalid CNI configuration {path}: {exc}") from None
        if "plugins" not in data:
            if "type" not in data:
                continue
            data = {"cniVersion": data.get("cniVersion", "0.3.1"), "name": data.get("name"), "plugins": [data]}
        name = data.get("name")
        if not isinstance(name, str) or not isinstance(data.get("plugins"), list) or not data["plugins"]:
            raise errors.InvalidArgument(f"invalid CNI configuration {path}: needs a name and a plugin list")
        out.setdefault(name, ConfList(name, str(data.get("cniVersion", "0.3.1")), data["plugins"], str(path)))
    return out


class CNI:
    """Runs one conflist's plugins for one container."""

    def __init__(self, conflist: ConfList, bin_dirs: str, timeout: float = 60) -> None:
        self.conflist = conflist
        self.bin_dirs = [d for d in bin_dirs.split(":") if d]
        self.timeout = timeout

    def _binary(self, kind: str) -> str:
        for directory in self.bin_dirs:
            candidate = os.path.join(directory, kind)
            if os.access(candidate, os.X_OK):
                return candidate
        raise errors.NotFound(f"CNI plugin {kind!r} not found in {':'.join(self.bin_dirs)}")

    def _exec(self, command: str, plugin: dict[str, Any], container_id: str, netns: str, ifname: str,
              prev_result: dict[str, Any] | None, runtime_config: dict[str, Any]) -> dict[str, Any]:
        conf = dict(plugin)
        conf["cniVersion"] = self.conflist.cni_version
        conf["name"] = self.conflist.name
        if prev_result is not None:
            conf["prevResult"] = prev_result
        wanted = {k: v for k, v in runtime_config.items() if plugin.get("capabilities", {}).get(k)}
        if wanted:
            conf["runtimeConfig"] = wanted
        env = {
            "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
            "CNI_COMMAND": command,
            "CNI_CONTAINERID": container_id,
            "CNI_NETNS": netns,
            "CNI_IFNAME": ifname,
            "CNI_ARGS": f"IgnoreUnknown=1;K8S_POD_INFRA_CONTAINER_ID={container_id}",
            "CNI_PATH": ":".join(self.bin_dirs),
        }
        binary = self._binary(str(plugin.get("type", "")))
        try:
            proc = subprocess.run([binary], input=json.dumps(conf).encode(), env=env, capture_output=True,
                                  timeout=self.timeout)
        except subprocess.TimeoutExpired:
            raise errors.DeadlineExceeded(f"CNI plugin {plugin['type']} {command} timed out") from None
        if proc.returncode != 0:
            message = proc.stdout.decode(errors="replace").strip() or proc.stderr.decode(errors="replace").strip()
            try:
                err = json.loads(message)
                message = err.get("msg", message) + (f": {err['details']}" if err.get("details") else "")
            except ValueError:
                pass
            raise errors.Unavailable(
                f"CNI plugin {plugin['type']} {command} failed for network {self.conflist.name!r}: "
                f"{' '.join(message.split())}")
        if command != "ADD" or not proc.stdout.strip():
            return prev_result or {}
        try:
            return dict(json.loads(proc.stdout))
        except ValueError:
            raise errors.Internal(f"CNI plugin {plugin['type']} returned invalid JSON") from None

    def add(self, container_id: str, netns: str, ifname: str, runtime_config: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] | None = None
        try:
            for plugin in self.conflist.plugins:
                result = self._exec("ADD", plugin, container_id, netns, ifname, result, runtime_config)
        except errors.CtrpyError:
            try:
                self.delete(container_id, netns, ifname, result or {}, runtime_config)
            except errors.CtrpyError:
                pass  # the ADD error is the one the user needs; prune retries the DEL
            raise
        return result or {}

    def delete(self, container_id: str, netns: str, ifname: str, result: dict[str, Any],
               runtime_config: dict[str, Any]) -> None:
        prev = result if result and self.conflist.cni_version >= "0.4.0" else None
        failures = []
        for plugin in reversed(self.conflist.plugins):
            try:
                self._exec("DEL", plugin, container_id, netns, ifname, prev, runtime_config)
            except errors.CtrpyError as exc:
                failures.append(str(exc))
        if failures:
            raise errors.Unavailable("; ".join(failures))

    def check(self, container_id: str, netns: str, ifname: str, result: dict[str, Any],
              runtime_config: dict[str, Any]) -> None:
        if self.conflist.cni_version < "0.4.0":
            raise errors.NotImplemented_(f"CNI CHECK needs cniVersion 0.4.0 or later "
                                         f"(network {self.conflist.name!r} has {self.conflist.cni_version})")
        for plugin in self.conflist.plugins:
            self._exec("CHECK", plugin, container_id, netns, ifname, result, runtime_config)


def primary_address(result: dict[str, Any], ifname: str = "eth0") -> tuple[str | None, int | None, str | None]:
    """(address, prefixlen, gateway) of the container interface from a CNI result (0.2.0 to 1.0.0)."""
    interfaces = result.get("interfaces") or []
    ips = result.get("ips") or []
    for entry in ips:
        index = entry.get("interface")
        if index is not None and 0 <= index < len(interfaces) and interfaces[index].get("name") != ifname:
            continue
        address = entry.get("address", "")
        if ":" in address:  # IPv6 later if at all
            continue
        ip, _, prefix = address.partition("/")
        return ip, int(prefix or 32), entry.get("gateway")
    ip4 = result.get("ip4")
    if ip4 and ip4.get("ip"):
        ip, _, prefix = ip4["ip"].partition("/")
        return ip, int(prefix or 32), ip4.get("gateway")
    return None, None, None
