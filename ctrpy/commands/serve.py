"""`ctrpy serve`: the CRI server kubelet, crictl and critest talk to (ctrpy/cri)."""

from __future__ import annotations

from typing import Any

import click


@click.command("serve")
@click.option("--address", default=None, metavar="unix:///PATH",
              help="Socket to listen on  [default: [cri] address, unix:///run/ctrpy/ctrpy.sock]")
@click.pass_obj
def serve(obj: Any, address: str | None) -> None:
    """Serve the Kubernetes CRI (runtime.v1 RuntimeService and ImageService) over gRPC.

    Pods and containers live in namespace k8s.io, in the same stores as the CLI's (`ctrpy -n k8s.io
    images ls` shows what kubelet pulled). Stopping or restarting the server never stops a pod.

    \b
    Examples:
      ctrpy serve
      ctrpy serve --address unix:///tmp/ctrpy-cri.sock
      crictl --runtime-endpoint unix:///run/ctrpy/ctrpy.sock ps
    """
    from ctrpy.cri.server import serve as run_server
    from ctrpy.runtime.client import require_root

    require_root("ctrpy serve")
    run_server(obj.client, address or obj.config.get("cri.address"),
               on_ready=lambda path: click.echo(f"ctrpy: serving CRI on unix://{path}", err=True))
