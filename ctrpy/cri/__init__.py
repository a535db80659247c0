"""ctrpy's CRI server: Kubernetes' Container Runtime Interface (runtime.v1) over ctrpy's own stores and runtime,
as containerd's CRI plugin is over containerd's.

    server.py           `serve()`: the gRPC server on a unix socket, error classes -> gRPC status codes
    runtime_service.py  RuntimeService: version/status, pod sandboxes, containers, exec, stats, logs
    image_service.py    ImageService: pull/list/status/remove, image file system usage
    sandbox.py          pod sandboxes: the pause process (csrc/pause.c), /etc files, pod networking
    container.py        CRI ContainerConfig -> OCI spec (security context, mounts, devices, resources)
    proto/              api.proto (the wire contract) and its generated stubs (proto/generate.sh)

Every object lives in the containerd-compatible namespace `k8s.io`: `ctrpy -n k8s.io images ls` shows what
kubelet pulled, and the CLI and the server see the same containers. The server keeps no state of its own
beyond the metadata database and the task directories: a restarted server finds its pods again (their pause
processes and container supervisors never depended on it).
"""

from __future__ import annotations

NAMESPACE = "k8s.io"
# Extension key of the CRI facts stored on a container record (configs as JSON, timestamps, pod facts).
EXTENSION = "ctrpy.io/cri"
# Labels on container records, to find sandboxes and containers by kind, name and pod.
LABEL_KIND = "io.ctrpy.cri.kind"
LABEL_NAME = "io.ctrpy.cri.name"
LABEL_SANDBOX = "io.ctrpy.cri.sandbox-id"
KIND_SANDBOX = "sandbox"
KIND_CONTAINER = "container"
RUNTIME_NAME = "ctrpy"
CRI_API_VERSION = "v1"
