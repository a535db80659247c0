"""Registry authentication: bearer tokens (anonymous and with credentials), basic auth over TLS, docker's
config.json and credential helpers, `ctrpy login` / `ctrpy logout`."""

from __future__ import annotations

import base64
import json
import os
import stat
import sys
from pathlib import Path
from typing import Any

import pytest

from support import testimages
from support.registry import CA, PASSWORD, USER, Registry


def err(r: Any) -> str:
    lines = r.stderr.strip().splitlines()
    return lines[-1] if lines else ""


@pytest.fixture
def docker_config(tmp_path: Path) -> Path:
    """An empty DOCKER_CONFIG directory for the test (never the real ~/.docker)."""
    d = tmp_path / "docker-config"
    d.mkdir()
    return d


@pytest.fixture(scope="module")
def token_images(registry_token: Registry, test_images: Any) -> Registry:
    registry_token.push(test_images.busybox, "public/busybox")
    registry_token.push(test_images.busybox, "private/busybox")
    return registry_token


@pytest.fixture(scope="module")
def tls_images(registry_tls: Registry, test_images: Any) -> Registry:
    registry_tls.push(test_images.busybox, "busybox")
    return registry_tls


# ---------------------------------------------------------------------------------------------- bearer tokens

def test_anonymous_bearer_token_scoped_to_the_repository(token_images: Registry, token_issuer: Any, ctrpy: Any,
                                                         docker_config: Path) -> None:
    before = len(token_issuer.requests)
    r = ctrpy("pull", "--no-unpack", f"{token_images.host}/public/busybox:latest",
              env={"DOCKER_CONFIG": str(docker_config)})
    assert r.returncode == 0, r.stderr
    issued = token_issuer.requests[before:]
    assert issued and all(account == "" for account, _ in issued)
    assert all(scopes == ["repository:public/busybox:pull"] for _, scopes in issued)


def test_private_repository_needs_credentials(token_images: Registry, ctrpy: Any, docker_config: Path) -> None:
    ref = f"{token_images.host}/private/busybox:latest"
    env = {"DOCKER_CONFIG": str(docker_config)}
    r = ctrpy("pull", "--no-unpack", ref, env=env)
    assert r.returncode == 8
    assert "requires authentication" in err(r) and "ctrpy login" in err(r)
    r = ctrpy("pull", "--no-unpack", "-u", f"{USER}:wrong", ref, env=env)
    assert r.returncode == 8
    assert "rejected the credentials" in err(r)
    r = ctrpy("pull", "--no-unpack", "-u", f"{USER}:{PASSWORD}", ref, env=env)
    assert r.returncode == 0, r.stderr


# ---------------------------------------------------------------------------------------------- TLS + basic

def test_tls_with_ca_flag_and_basic_auth(tls_images: Registry, test_ca: CA, ctrpy: Any, docker_config: Path) -> None:
    ref = f"{tls_images.host}/busybox:latest"
    env = {"DOCKER_CONFIG": str(docker_config)}
    r = ctrpy("pull", "--no-unpack", "--tlscacert", str(test_ca.cert), ref, env=env)
    assert r.returncode == 8 and "requires authentication" in err(r)
    r = ctrpy("pull", "--no-unpack", "--tlscacert", str(test_ca.cert), "-u", f"{USER}:nope", ref, env=env)
    assert r.returncode == 8 and "rejected the credentials" in err(r)
    r = ctrpy("pull", "--no-unpack", "--tlscacert", str(test_ca.cert), "-u", f"{USER}:{PASSWORD}", ref, env=env)
    assert r.returncode == 0, r.stderr


def test_skip_verify_and_hosts_toml_ca(tls_images: Registry, test_ca: CA, ctrpy: Any, docker_config: Path,
                                       tmp_path: Path) -> None:
    ref = f"{tls_images.host}/busybox:latest"
    env = {"DOCKER_CONFIG": str(docker_config)}
    r = ctrpy("pull", "--no-unpack", "-k", "-u", f"{USER}:{PASSWORD}", ref, env=env)
    assert r.returncode == 0, r.stderr
    certs = tmp_path / "certs.d" / tls_images.host
    certs.mkdir(parents=True)
    (certs / "ca.crt").write_bytes(test_ca.cert.read_bytes())
    (certs / "hosts.toml").write_text(f'server = "https://{tls_images.host}"\nca = "ca.crt"\n')
    r = ctrpy("images", "rm", ref)
    r = ctrpy("pull", "--no-unpack", "--hosts-dir", str(tmp_path / "certs.d"), "-u", f"{USER}:{PASSWORD}", ref,
              env=env)
    assert r.returncode == 0, r.stderr


# ---------------------------------------------------------------------------------------------- docker config

def test_credentials_from_docker_config_auths(tls_images: Registry, test_ca: CA, ctrpy: Any,
                                              docker_config: Path) -> None:
    auth = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    (docker_config / "config.json").write_text(json.dumps({"auths": {tls_images.host: {"auth": auth}}}))
    r = ctrpy("pull", "--no-unpack", "--tlscacert", str(test_ca.cert), f"{tls_images.host}/busybox:latest",
              env={"DOCKER_CONFIG": str(docker_config)})
    assert r.returncode == 0, r.stderr


def test_credentials_from_a_credential_helper(token_images: Registry, ctrpy: Any, docker_config: Path,
                                              tmp_path: Path) -> None:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    calls = tmp_path / "helper-calls"
    helper = bindir / "docker-credential-ctrpytest"
    helper.write_text(f"""#!/bin/sh
read server
echo "$1 $server" >> {calls}
if [ "$1" = get ] && [ "$server" = "{token_images.host}" ]; then
  echo '{{"ServerURL":"{token_images.host}","Username":"{USER}","Secret":"{PASSWORD}"}}'
  exit 0
fi
echo "credentials not found in native keychain"
exit 1
""")
    helper.chmod(0o755)
    (docker_config / "config.json").write_text(json.dumps({"credHelpers": {token_images.host: "ctrpytest"}}))
    env = {"DOCKER_CONFIG": str(docker_config),
           "PATH": f"{bindir}:{Path(sys.executable).parent}:{os.environ['PATH']}"}
    r = ctrpy("pull", "--no-unpack", f"{token_images.host}/private/busybox:latest", env=env)
    assert r.returncode == 0, r.stderr
    assert calls.read_text().splitlines() == [f"get {token_images.host}"]
    # credsStore applies to every registry; a helper that knows nothing means anonymous access.
    (docker_config / "config.json").write_text(json.dumps({"credsStore": "ctrpytest"}))
    calls.unlink()
    r = ctrpy("pull", "--no-unpack", f"{token_images.host}/private/busybox:latest", env=env)
    assert r.returncode == 0, r.stderr
    assert calls.read_text().splitlines() == [f"get {token_images.host}"]


def test_missing_credential_helper_is_a_clear_error(token_images: Registry, ctrpy: Any,
                                                    docker_config: Path) -> None:
    (docker_config / "config.json").write_text(json.dumps({"credsStore": "absent-helper"}))
    r = ctrpy("pull", "--no-unpack", f"{token_images.host}/private/busybox:latest",
              env={"DOCKER_CONFIG": str(docker_config)})
    assert r.returncode == 4
    assert err(r) == "ctrpy: credential helper docker-credential-absent-helper not found in PATH"


# ---------------------------------------------------------------------------------------------- login / logout

def test_login_writes_config_0600_then_pull_uses_it_and_logout_removes_it(tls_images: Registry, test_ca: CA,
                                                                          ctrpy: Any, docker_config: Path,
                                                                          tmp_path: Path) -> None:
    env = {"DOCKER_CONFIG": str(docker_config)}
    host = tls_images.host
    (tmp_path / "wrong").write_text("wrong\n")
    (tmp_path / "right").write_text(f"{PASSWORD}\n")
    r = ctrpy("login", "--tlscacert", str(test_ca.cert), "-u", USER, "--password-stdin", host,
              stdin=open(tmp_path / "wrong"), env=env)
    assert r.returncode == 8
    assert not (docker_config / "config.json").exists()
    r = ctrpy("login", "--tlscacert", str(test_ca.cert), "-u", USER, "--password-stdin", host,
              stdin=open(tmp_path / "right"), env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("Login Succeeded")
    path = docker_config / "config.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    data = json.loads(path.read_text())
    assert base64.b64decode(data["auths"][host]["auth"]).decode() == f"{USER}:{PASSWORD}"
    r = ctrpy("pull", "--no-unpack", "--tlscacert", str(test_ca.cert), f"{host}/busybox:latest", env=env)
    assert r.returncode == 0, r.stderr
    r = ctrpy("logout", host, env=env)
    assert r.returncode == 0 and host in r.stdout
    assert host not in json.loads(path.read_text()).get("auths", {})
    r = ctrpy("logout", host, env=env)
    assert r.returncode == 4 and err(r) == f"ctrpy: not logged in to {host}"


def test_login_to_token_registry(token_images: Registry, ctrpy: Any, docker_config: Path) -> None:
    env = {"DOCKER_CONFIG": str(docker_config)}
    r = ctrpy("login", "-u", USER, "-p", "bad", token_images.host, env=env)
    assert r.returncode == 8
    r = ctrpy("login", "-u", USER, "-p", PASSWORD, token_images.host, env=env)
    assert r.returncode == 0, r.stderr
    r = ctrpy("pull", "--no-unpack", f"{token_images.host}/private/busybox:latest", env=env)
    assert r.returncode == 0, r.stderr


# ---------------------------------------------------------------------------------------------- client certificates

@pytest.fixture(scope="module")
def registry_mtls(tmp_path_factory: Any, test_ca: CA, test_images: Any) -> Any:
    reg = Registry(tmp_path_factory.mktemp("registry-mtls"), tls=test_ca, client_ca=test_ca.cert)
    try:
        client_cert, client_key = test_ca.issue("ctrpy-client", ["DNS:ctrpy-client"])
        reg.client_cert, reg.client_key = client_cert, client_key  # type: ignore[attr-defined]
        certs = reg.base / "skopeo-certs"
        certs.mkdir()
        (certs / "ca.crt").write_bytes(test_ca.cert.read_bytes())
        (certs / "client.cert").write_bytes(client_cert.read_bytes())
        (certs / "client.key").write_bytes(client_key.read_bytes())
        testimages.push_layout(test_images.busybox, f"{reg.host}/busybox:latest", tls_verify=True,
                               cert_dir=str(certs))
        yield reg
    finally:
        reg.stop()


def test_client_certificates_from_hosts_toml_and_flags(registry_mtls: Any, test_ca: CA, ctrpy: Any,
                                                       tmp_path: Path) -> None:
    ref = f"{registry_mtls.host}/busybox:latest"
    r = ctrpy("pull", "--no-unpack", "--tlscacert", str(test_ca.cert), ref)
    assert r.returncode == 8 and "wants a client certificate" in err(r)
    r = ctrpy("pull", "--no-unpack", "--tlscacert", str(test_ca.cert), "--tlscert", str(registry_mtls.client_cert),
              "--tlskey", str(registry_mtls.client_key), ref)
    assert r.returncode == 0, r.stderr
    assert ctrpy("images", "rm", ref).returncode == 0
    certs = tmp_path / "certs.d" / registry_mtls.host
    certs.mkdir(parents=True)
    (certs / "hosts.toml").write_text(
        f'server = "https://{registry_mtls.host}"\nca = "{test_ca.cert}"\n'
        f'client = [["{registry_mtls.client_cert}", "{registry_mtls.client_key}"]]\n')
    r = ctrpy("pull", "--no-unpack", "--hosts-dir", str(tmp_path / "certs.d"), ref)
    assert r.returncode == 0, r.stderr


def test_https_proxy_tunnels_to_a_tls_registry(tls_images: Registry, test_ca: CA, ctrpy: Any,
                                               docker_config: Path) -> None:
    from support.registry import FaultProxy

    proxy = FaultProxy(tls_images)  # its CONNECT tunnels to the TLS registry, whatever host is asked for
    try:
        env = {"HTTPS_PROXY": f"http://{proxy.host}", "https_proxy": f"http://{proxy.host}", "NO_PROXY": "",
               "no_proxy": "", "DOCKER_CONFIG": str(docker_config)}
        # registry.test is resolved by nobody but the proxy; -k because the certificate names 127.0.0.1.
        r = ctrpy("pull", "--no-unpack", "-k", "-u", f"{USER}:{PASSWORD}", "registry.test/busybox:latest", env=env)
        assert r.returncode == 0, r.stderr
        assert proxy.connects and set(proxy.connects) == {"registry.test:443"}
    finally:
        proxy.stop()


def test_login_without_a_terminal_says_use_password_stdin(ctrpy: Any, docker_config: Path, tmp_path: Path) -> None:
    from support.hostile import HostileRegistry, send

    env = {"DOCKER_CONFIG": str(docker_config)}
    hostile = HostileRegistry()
    wanted = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()

    def ping(req: Any) -> None:
        if req.headers.get("Authorization") == wanted:
            send(req, 200, b"{}", "application/json")
        else:
            send(req, 401, b"{}", "application/json", {"WWW-Authenticate": 'Basic realm="test"'})

    hostile.behave["/v2/"] = ping
    try:
        # stdin is a file, not a terminal: no prompt, no GetPassWarning, one line saying what to do.
        (tmp_path / "pw").write_text(f"{PASSWORD}\n")
        for argv in (("login", "--plain-http", "-u", USER, hostile.host), ("login", "--plain-http", hostile.host)):
            r = ctrpy(*argv, stdin=open(tmp_path / "pw"), env=env)
            assert r.returncode == 3, r.stderr
            assert r.stderr.startswith("ctrpy: cannot ask for the ") and r.stderr.count("\n") == 1, r.stderr
            assert "--password-stdin" in r.stderr and "Warning" not in r.stderr
        r = ctrpy("login", "--plain-http", "--password-stdin", hostile.host, stdin=open(tmp_path / "pw"), env=env)
        assert r.returncode == 2 and "--password-stdin needs --username" in r.stderr
        r = ctrpy("login", "--plain-http", "-u", USER, "--password-stdin", hostile.host,
                  stdin=open(tmp_path / "pw"), env=env)
        assert r.returncode == 0, r.stderr
        assert json.loads((docker_config / "config.json").read_text())["auths"][hostile.host]
        # --user NAME (no password) on pull, without a terminal: the same advice, not a GetPassWarning.
        r = ctrpy("pull", "--plain-http", "-u", USER, f"{hostile.host}/x:latest", stdin=open(tmp_path / "pw"), env=env)
        assert r.returncode == 3 and "needs a terminal" in r.stderr and "Warning" not in r.stderr, r.stderr
    finally:
        hostile.stop()
