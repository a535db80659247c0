"""The `images` group: ls, inspect, tag, rm, check, and the pull/push aliases."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

from ctrpy.runtime.client import Client
from support.registry import Registry


def err(r: Any) -> str:
    lines = r.stderr.strip().splitlines()
    return lines[-1] if lines else ""


@pytest.fixture
def pulled(seeded_registry: Registry, ctrpy: Any) -> dict[str, str]:
    """busybox (manifest) and multi (index, all platforms) pulled into the test's root."""
    refs = {"busybox": f"{seeded_registry.host}/busybox:latest", "multi": f"{seeded_registry.host}/multi:latest"}
    assert ctrpy("images", "pull", "--no-unpack", "-q", refs["busybox"]).returncode == 0
    assert ctrpy("i", "pull", "--no-unpack", "-q", "--all-platforms", refs["multi"]).returncode == 0
    return refs


def test_ls_table_quiet_and_json(pulled: dict[str, str], ctrpy: Any, test_images: Any) -> None:
    r = ctrpy("images", "ls")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["REF", "TYPE", "DIGEST", "SIZE", "PLATFORMS", "LABELS"]
    busybox = [line for line in lines if line.startswith(pulled["busybox"] + " ")][0].split()
    assert busybox[1:3] == ["application/vnd.oci.image.manifest.v1+json", test_images.busybox_desc["digest"]]
    from ctrpy.commands._output import human_size

    manifest = json.loads((test_images.busybox / "blobs/sha256" /
                           test_images.busybox_desc["digest"].split(":")[1]).read_bytes())
    size = test_images.busybox_desc["size"] + manifest["config"]["size"] + manifest["layers"][0]["size"]
    assert " ".join(busybox[3:5]) == human_size(size) and busybox[5] == "linux/amd64" and busybox[6] == "-"
    multi = [line for line in lines if line.startswith(pulled["multi"] + " ")][0].split()
    assert multi[5] == "linux/amd64,linux/arm64/v8,linux/arm/v7"
    r = ctrpy("image", "ls", "-q")
    assert r.stdout.split() == sorted(pulled.values())
    r = ctrpy("images", "ls", "--format", "json")
    rows = {row["name"]: row for row in json.loads(r.stdout)}
    assert rows[pulled["busybox"]]["digest"] == test_images.busybox_desc["digest"]
    assert rows[pulled["busybox"]]["size"] > 1_000_000
    assert rows[pulled["multi"]]["size"] > rows[pulled["busybox"]]["size"]
    r = ctrpy("images", "ls", "-q", f"name=={pulled['multi']}")
    assert r.stdout.split() == [pulled["multi"]]


def test_ls_empty_store(ctrpy: Any) -> None:
    r = ctrpy("images", "ls")
    assert r.returncode == 0 and r.stdout.split() == ["REF", "TYPE", "DIGEST", "SIZE", "PLATFORMS", "LABELS"]


def test_inspect_shows_manifest_config_and_chain(pulled: dict[str, str], ctrpy: Any, test_images: Any) -> None:
    r = ctrpy("images", "inspect", "--mode", "native", pulled["multi"], "--platform", "linux/arm/v7")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["name"] == pulled["multi"] and data["target"]["digest"] == test_images.multi_desc["digest"]
    assert data["config"]["architecture"] == "arm" and data["config"]["variant"] == "v7"
    assert len(data["index"]["manifests"]) == 3
    assert data["chain_id"].startswith("sha256:")
    assert [p["status"] for p in data["platforms"]] == ["complete (4/4)"] * 3
    r = ctrpy("images", "inspect", "nope:1")
    assert r.returncode == 4 and err(r) == "ctrpy: image 'nope:1' not found in namespace 'default'"


def test_tag_force_and_short_names(pulled: dict[str, str], ctrpy: Any, test_images: Any) -> None:
    r = ctrpy("images", "tag", pulled["busybox"], "mybox", "example.test/team/box:1")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["docker.io/library/mybox:latest", "example.test/team/box:1"]
    r = ctrpy("images", "ls", "--format", "json")
    digests = {row["name"]: row["digest"] for row in json.loads(r.stdout)}
    assert digests["docker.io/library/mybox:latest"] == test_images.busybox_desc["digest"]
    r = ctrpy("images", "tag", pulled["multi"], "mybox")
    assert r.returncode == 5 and "--force" in err(r)
    r = ctrpy("images", "tag", "--force", pulled["multi"], "mybox")
    assert r.returncode == 0
    r = ctrpy("images", "inspect", "--mode", "native", "mybox")  # short names resolve like docker's
    assert json.loads(r.stdout)["target"]["digest"] == test_images.multi_desc["digest"]
    r = ctrpy("images", "tag", pulled["busybox"], "Bad Name")
    assert r.returncode == 3 and err(r).startswith("ctrpy: invalid reference")


def test_rm_removes_names_but_keeps_content(pulled: dict[str, str], ctrpy: Any, dirs: Any,
                                            test_images: Any) -> None:
    r = ctrpy("images", "rm", "--no-gc", pulled["busybox"], "no-such:image")
    assert r.returncode == 4
    assert r.stdout.split() == [pulled["busybox"]]
    assert err(r) == "ctrpy: image 'no-such:image' not found in namespace 'default'"
    assert ctrpy("images", "ls", "-q").stdout.split() == [pulled["multi"]]
    assert Client(dirs.root, dirs.state).content.exists(test_images.busybox_desc["digest"])


def test_check_complete_and_incomplete(pulled: dict[str, str], ctrpy: Any, dirs: Any, test_images: Any) -> None:
    r = ctrpy("images", "check")
    assert r.returncode == 0
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["REF", "TYPE", "PLATFORM", "DIGEST", "STATUS", "SIZE"]
    assert sum("complete (3/3)" in line for line in lines) == 1      # busybox: manifest, config, layer
    assert sum("complete (4/4)" in line for line in lines) == 3      # multi: three platforms
    client = Client(dirs.root, dirs.state)
    manifest = json.loads(client.content.read_bytes(test_images.busybox_desc["digest"]))
    client.content.delete(manifest["layers"][0]["digest"])            # shared by every image here
    r = ctrpy("images", "check", "--format", "json")
    rows = json.loads(r.stdout)
    assert {(row["name"], row["status"]) for row in rows if row["name"] == pulled["busybox"]} == \
        {(pulled["busybox"], "incomplete (2/3)")}
    assert all(not row["complete"] for row in rows)
    r = ctrpy("images", "check", "-q")
    assert r.stdout == ""


def test_listing_and_inspecting_never_import_httpx() -> None:
    code = ("import sys, ctrpy.commands.images, ctrpy.commands.registry, ctrpy.runtime.images, "
            "ctrpy.runtime.pull, ctrpy.runtime.push, ctrpy.runtime.remotes.hosts, ctrpy.runtime.remotes.auth; "
            "assert 'httpx' not in sys.modules and 'rich' not in sys.modules, 'heavy import'")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
