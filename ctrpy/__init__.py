"""ctrpy: a containerd-class container runtime.

Importing this package must stay cheap: the CLI imports it on every call.
"""

__version__ = "0.1.0"
