"""`ctrpy config default/dump` and how a config file is read: errors name the key and line."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import tomllib as tomli

from ctrpy.runtime.config import DEFAULTS


def write_config(dirs: Any, text: str) -> Path:
    # The `ctrpy` fixture points CTRPY_CONFIG here.
    path = dirs.root.parent / "config.toml"
    path.write_text(text)
    return path


def test_config_default_is_the_full_default_toml(ctrpy: Any) -> None:
    r = ctrpy("config", "default")
    assert r.returncode == 0, r.stderr
    assert tomli.loads(r.stdout) == DEFAULTS
    assert "[registry]" in r.stdout and 'config_path = "/etc/ctrpy/certs.d' in r.stdout


def test_config_dump_shows_file_over_defaults_and_command_line(ctrpy: Any, dirs: Any) -> None:
    write_config(dirs, 'version = 1\ndefault_snapshotter = "native"\n[registry]\nmax_concurrent_downloads = 7\n'
                       '[plugins.snapshotter.overlayfs]\nmount_program = "/bin/true"\n')
    r = ctrpy("config", "dump")
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""  # plugin sections are open: no unknown-key warning
    dumped = tomli.loads(r.stdout)
    assert dumped["default_snapshotter"] == "native"
    assert dumped["registry"]["max_concurrent_downloads"] == 7
    assert dumped["registry"]["max_concurrent_uploads"] == DEFAULTS["registry"]["max_concurrent_uploads"]
    assert dumped["plugins"]["snapshotter"]["overlayfs"] == {"mount_program": "/bin/true"}
    assert dumped["root"] == str(dirs.root) and dumped["state"] == str(dirs.state)


def test_invalid_toml_is_a_clear_error(ctrpy: Any, dirs: Any) -> None:
    path = write_config(dirs, 'version = 1\n[registry\nx = 1\n')
    r = ctrpy("config", "dump")
    assert r.returncode == 3
    assert r.stderr.startswith(f"ctrpy: {path}: invalid TOML: ")
    assert "line 2" in r.stderr and len(r.stderr.splitlines()) == 1
    # Every command that reads the config fails the same way.
    assert ctrpy("namespaces", "ls").returncode == 3


def test_wrong_type_names_key_and_line(ctrpy: Any, dirs: Any) -> None:
    path = write_config(dirs, '# ctrpy\nversion = 1\n\n[registry]\nconfig_path = "/x"\n'
                              'max_concurrent_downloads = "three"\n')
    r = ctrpy("config", "dump")
    assert r.returncode == 3
    assert r.stderr == (f"ctrpy: {path}:6: registry.max_concurrent_downloads must be integer, not string "
                        "('three')\n")
    write_config(dirs, 'version = 1\ncgroup = "ctrpy"\n')
    r = ctrpy("config", "dump")
    assert r.returncode == 3 and ":2: cgroup must be a table, not string" in r.stderr
    write_config(dirs, 'cri.restrict_oom_score_adj = 1\n')
    r = ctrpy("config", "dump")
    assert r.returncode == 3 and ":1: cri.restrict_oom_score_adj must be boolean, not integer" in r.stderr
    write_config(dirs, 'version = 2\n')
    r = ctrpy("config", "dump")
    assert r.returncode == 3 and "unsupported config version 2" in r.stderr


def test_unknown_keys_warn_and_are_ignored(ctrpy: Any, dirs: Any) -> None:
    path = write_config(dirs, 'version = 1\nbogus = 2\n[registry]\nmirrors = ["x"]\n')
    r = ctrpy("config", "dump")
    assert r.returncode == 0
    assert r.stderr.splitlines() == [
        f"ctrpy: warning: {path}:2: unknown key 'bogus' ignored",
        f"ctrpy: warning: {path}:4: unknown key 'registry.mirrors' ignored",
    ]
    dumped = tomli.loads(r.stdout)
    assert "bogus" not in dumped and "mirrors" not in dumped["registry"]


def test_explicit_missing_config_fails_but_default_may_be_absent(ctrpy: Any, dirs: Any) -> None:
    missing = dirs.root.parent / "nope.toml"
    r = ctrpy("--config", str(missing), "config", "dump")
    assert r.returncode == 4 and r.stderr == f"ctrpy: config file {missing} does not exist\n"
    # The fixture's CTRPY_CONFIG does not exist: defaults apply silently.
    r = ctrpy("config", "dump")
    assert r.returncode == 0 and r.stderr == ""


def test_root_and_state_come_from_the_config_file(script_runner: Any, tmp_path: Path) -> None:
    root, state = tmp_path / "cfgroot", tmp_path / "cfgstate"
    config = tmp_path / "c.toml"
    config.write_text(f'root = "{root}"\nstate = "{state}"\n')
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}")
    for key in ("CTRPY_ROOT", "CTRPY_STATE", "CTRPY_NAMESPACE", "CTRPY_CONFIG"):
        env.pop(key, None)
    r = script_runner.run(["ctrpy", "--config", str(config), "info", "--format", "json"], env=env)
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert (info["root"], info["state"], info["config"]) == (str(root), str(state), str(config))
    r = script_runner.run(["ctrpy", "--config", str(config), "namespaces", "create", "here"], env=env)
    assert r.returncode == 0, r.stderr
    assert (root / "meta.db").is_file()


# -- values out of range, broken tables and bytes: one line naming the key and its line, exit 3 ------------------

import pytest  # noqa: E402

from ctrpy.runtime import errors  # noqa: E402
from ctrpy.runtime.config import load_config  # noqa: E402

BAD_CONFIGS = [
    ('[registry]\nmax_concurrent_downloads = 0\n', ":2: registry.max_concurrent_downloads must be at least 1, not 0"),
    ('[registry]\nmax_concurrent_downloads = -3\n', ":2: registry.max_concurrent_downloads must be at least 1"),
    ('[registry]\nmax_concurrent_uploads = 0\n', ":2: registry.max_concurrent_uploads must be at least 1"),
    ('version = 1\n[network]\nmtu = 10\n', ":3: network.mtu must be at least 68, not 10"),
    ('[network]\nmtu = 70000\n', ":2: network.mtu must be at most 65535, not 70000"),
    ('[registry]\n\nprogress_timeout = -1\n', ":3: registry.progress_timeout must be greater than 0, not -1"),
    ('[registry]\nprogress_timeout = 0\n', ":2: registry.progress_timeout must be greater than 0, not 0"),
    ('[registry]\nprogress_timeout = nan\n', ":2: registry.progress_timeout must be a number of seconds"),
    ('[registry]\ndeadline = -0.5\n', ":2: registry.deadline must be at least 0, not -0.5"),
    ('runtimes.x = 3\n', ":1: runtimes.x must be a table, not integer"),
    ('[runtimes]\nx = "runc"\n', ":2: runtimes.x must be a table, not string"),
    ('[runtimes.x]\ntype = "oci"\nbinary = 5\n', ":3: runtimes.x.binary must be string, not integer"),
    ('[runtimes.x]\ntype = "docker"\n', ":2: runtimes.x.type must be one of builtin, oci, not 'docker'"),
]


@pytest.mark.parametrize("text,message", BAD_CONFIGS)
def test_out_of_range_and_malformed_values_name_key_and_line(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "config.toml"
    path.write_text(text)
    with pytest.raises(errors.InvalidArgument) as info:
        load_config(str(path), required=True)
    assert str(info.value).startswith(f"{path}{message}"), str(info.value)
    assert "\n" not in str(info.value)


def test_good_fractional_timeouts_and_a_custom_runtime_load(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('[registry]\nprogress_timeout = 0.5\ndeadline = 30\nmax_concurrent_downloads = 1\n'
                    '[runtimes.mine]\ntype = "oci"\nbinary = "/usr/bin/runc"\n[network]\nmtu = 68\n')
    config = load_config(str(path), required=True)
    assert config.get("registry.progress_timeout") == 0.5
    assert config.get("runtimes.mine.binary") == "/usr/bin/runc"


def test_non_utf8_config_is_a_one_line_error_with_its_line(ctrpy: Any, dirs: Any) -> None:
    path = dirs.root.parent / "config.toml"
    path.write_bytes(b'version = 1\n[network]\nbridge = "caf\xe9"\n')
    r = ctrpy("config", "dump")
    assert r.returncode == 3, r.stderr
    assert r.stderr == (f"ctrpy: {path}:3: not UTF-8 text (byte 0xe9 at offset 35); TOML files must be UTF-8\n")


def test_out_of_range_value_fails_every_command_with_exit_3(ctrpy: Any, dirs: Any) -> None:
    path = write_config(dirs, '[registry]\nprogress_timeout = -1\n')
    for argv in (("config", "dump"), ("pull", "127.0.0.1:9/x")):
        r = ctrpy(*argv)
        assert r.returncode == 3, r.stderr
        assert r.stderr == f"ctrpy: {path}:2: registry.progress_timeout must be greater than 0, not -1\n"


def test_a_parsed_config_is_reused_only_for_the_same_bytes(tmp_path: Path) -> None:
    # The second load of an unchanged file skips tomllib (issue 17: its import is a third of a listing's
    # start-up) and gives the same config and warnings; a changed file is parsed again.
    import subprocess

    cfg = tmp_path / "ctrpy.toml"
    cfg.write_text("version = 1\n[network]\nmtu = 1400\nbogus = 1\n")
    script = ("import sys; from ctrpy.runtime.config import load_config; c = load_config(sys.argv[1]); "
              "print(c.data['network']['mtu'], c.warnings, 'tomllib' in sys.modules)")

    def load() -> str:
        r = subprocess.run([sys.executable, "-c", script, str(cfg)], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        return r.stdout.strip()

    warning = [f"{cfg}:4: unknown key 'network.bogus' ignored"]
    assert load() == f"1400 {warning} True"
    assert load() == f"1400 {warning} False"
    cfg.write_text("version = 1\n[network]\nmtu = 1300\nbogus = 1\n")
    assert load() == f"1300 {warning} True"
    assert load() == f"1300 {warning} False"
    cfg.write_text("version = 1\n[network]\nmtu = 1300\n")
    assert load() == "1300 [] True"
