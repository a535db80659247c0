"""`run --platform` / `create --platform` (issue 12): the platform picks the manifest of a multi-platform image
the container runs (its layers and its config's Cmd/Env), pulls that platform when the index lists it but it
is missing, and refuses, naming what the image provides, when the image has no such platform.

The image is built here: one index, three platforms, each with its own /marker file, FLAVOUR variable and Cmd.
Every layer holds the host's busybox (this machine has no binfmt emulation), so the arm64 variant runs here.
"""

from __future__ import annotations

import json
import shutil
from typing import Any

import pytest

from support import testimages
from support.runtimes import cleanup  # noqa: F401 - fixture

pytestmark = [pytest.mark.usefixtures("cleanup"),
              pytest.mark.skipif(shutil.which("skopeo") is None, reason="skopeo not installed")]

PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
FLAVOURS = {("linux", "amd64", None): "amd64", ("linux", "arm64", "v8"): "arm64", ("linux", "arm", "v7"): "armv7"}


@pytest.fixture(scope="module")
def images(registry: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    base = tmp_path_factory.mktemp("platform-images")
    bb = testimages.busybox_layer()
    per = {p: [bb, testimages.LayerBuilder().file("marker", f"{name}\n").bytes()] for p, name in FLAVOURS.items()}
    configs = {p: {"config": {"Env": [PATH, f"FLAVOUR={name}"], "Cmd": ["sh", "-c", f"echo cmd-{name}"]}}
               for p, name in FLAVOURS.items()}
    testimages.build_index_layout(base / "multi", per, configs=configs)
    testimages.build_layout(base / "single", [bb], platform=("linux", "amd64", None))
    return {"multi": registry.push(base / "multi", "platforms"),
            "single": registry.push(base / "single", "platforms-single")}


def ok(ctrpy: Any, *args: str) -> Any:
    r = ctrpy(*args)
    assert r.returncode == 0, (args, r.returncode, r.stderr)
    return r


def test_platform_selects_the_manifest_and_its_config(ctrpy: Any, images: dict[str, str]) -> None:
    img = images["multi"]
    ok(ctrpy, "pull", img)  # this host's platform only
    show = ("sh", "-c", "echo $FLAVOUR; cat /marker")
    assert ok(ctrpy, "run", "--rm", img, *show).stdout == "amd64\namd64\n"
    # arm64 is listed in the index but not pulled: --pull missing pulls it, with pull's progress on stderr.
    r = ok(ctrpy, "run", "--rm", "--platform", "linux/arm64", img, *show)
    assert r.stdout == "arm64\narm64\n"
    assert "platforms" in r.stderr
    # The image's Cmd is the arm64 variant's; no pull this time.
    r = ok(ctrpy, "run", "--rm", "--platform", "linux/arm64", img)
    assert (r.stdout, r.stderr) == ("cmd-arm64\n", "")
    assert ok(ctrpy, "run", "--rm", img).stdout == "cmd-amd64\n"  # the host's stays the default

    # create --platform: inspect records the manifest (and its platform) the container was made from.
    ok(ctrpy, "create", "--name", "a64", "--platform", "linux/arm64", img)
    info = json.loads(ok(ctrpy, "inspect", "a64").stdout)[0]
    desc = info["ImageManifestDescriptor"]
    assert desc["platform"] == {"os": "linux", "architecture": "arm64", "variant": "v8"}
    assert desc["digest"].startswith("sha256:") and info["Platform"] == "linux"
    assert info["Config"]["Env"][-1] == "FLAVOUR=arm64"
    assert ok(ctrpy, "start", "-a", "a64").stdout == "cmd-arm64\n"
    # commit builds on the platform the container runs.
    ok(ctrpy, "commit", "a64", "me/a64:v1")
    info = json.loads(ok(ctrpy, "images", "inspect", "me/a64:v1").stdout)[0]
    assert (info["Architecture"], info["Config"]["Cmd"], len(info["RootFS"]["Layers"])) == \
        ("arm64", ["sh", "-c", "echo cmd-arm64"], 3)
    # images inspect --platform: that platform's config.
    info = json.loads(ok(ctrpy, "images", "inspect", "--platform", "linux/arm64", img).stdout)[0]
    assert (info["Architecture"], info["Variant"], info["Config"]["Cmd"]) == ("arm64", "v8", ["sh", "-c", "echo cmd-arm64"])
    assert json.loads(ok(ctrpy, "images", "inspect", img).stdout)[0]["Architecture"] == "amd64"
    # ctr's shape takes it too (no pull there, as ctr).
    r = ok(ctrpy, "containers", "run", "--rm", "--platform", "linux/arm64", img, "c64", "cat", "/marker")
    assert r.stdout == "arm64\n"
    ok(ctrpy, "containers", "create", "--platform", "linux/arm64", img, "c64b", "true")
    record = json.loads(ok(ctrpy, "containers", "info", "c64b").stdout)
    assert record["extensions"]["ctrpy.io/image-manifest"] == desc  # the same manifest as `create` chose
    assert json.loads(ok(ctrpy, "inspect", "c64b").stdout)[0]["ImageManifestDescriptor"] == desc
    r = ctrpy("containers", "create", "--platform", "linux/s390x", img, "cs390", "true")
    assert r.returncode == 4 and "does not provide the requested platform linux/s390x" in r.stderr, r.stderr


def test_platform_the_image_does_not_provide(ctrpy: Any, images: dict[str, str]) -> None:
    img, single = images["multi"], images["single"]
    r = ctrpy("run", "--rm", "--platform", "linux/s390x", img, "true")  # not here: the pull says so
    assert r.returncode == 4 and "no manifest for platform linux/s390x (available: linux/amd64, linux/arm/v7, " \
        "linux/arm64/v8)" in r.stderr, r.stderr
    ok(ctrpy, "pull", img)
    ok(ctrpy, "pull", single)
    r = ctrpy("run", "--rm", "--platform", "linux/s390x", img, "true")
    assert r.returncode == 4, r.stderr  # not found, as `run --pull never` of a missing image
    assert r.stderr == (f"ctrpy: image {img!r} does not provide the requested platform linux/s390x "
                        "(it provides linux/amd64, linux/arm/v7, linux/arm64/v8)\n")
    # A single-platform image must be of the platform asked for (containerd checks its config).
    r = ctrpy("create", "--platform", "linux/arm64", single, "true")
    assert r.returncode == 4 and "does not provide the requested platform linux/arm64 (it provides " \
        "linux/amd64)" in r.stderr, r.stderr
    # Listed in the index, not pulled, and --pull never: says how to get it.
    r = ctrpy("run", "--rm", "--pull", "never", "--platform", "linux/arm/v7", img, "true")
    assert r.returncode == 4 and f"platform linux/arm/v7 is not pulled (`ctrpy pull --platform linux/arm/v7 " \
        f"{img}`)" in r.stderr, r.stderr
    r = ctrpy("run", "--rm", "--platform", "linux/arm64/v8/x", img, "true")
    assert r.returncode == 3 and "invalid platform" in r.stderr, r.stderr
    assert ctrpy("ps", "-aq").stdout == ""  # nothing half-made
    # The matching platform of the single image is fine.
    assert ok(ctrpy, "run", "--rm", "--platform", "linux/amd64", single, "echo", "ok").stdout == "ok\n"
