"""Where ctrpy keeps things when neither a flag, the environment nor the config file says otherwise. Free to
import (no imports of its own): the completion fast path (commands/_complete.py) reads it too."""

DEFAULT_ROOT = "/var/lib/ctrpy"  # persistent data: metadata, content, snapshots (--root, CTRPY_ROOT)
DEFAULT_STATE = "/run/ctrpy"  # per-boot state: task directories, runtime state (--state, CTRPY_STATE)
DEFAULT_CONFIG_PATH = "/etc/ctrpy/config.toml"  # (--config, CTRPY_CONFIG)
