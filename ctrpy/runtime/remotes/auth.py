"""Registry credentials and the docker config file.

Where credentials come from, first match wins (as docker/nerdctl do):
  1. `--user user[:password]` for the registry named on the command line;
  2. docker's `config.json` ($DOCKER_CONFIG/config.json, else ~/.docker/config.json): `credHelpers[host]`,
     else `credsStore`, run as `docker-credential-<name> get` with the host on stdin; else `auths[host]`
     (`auth` = base64 "user:password", or `username`/`password`, or `identitytoken`).
Docker Hub's entry is keyed "https://index.docker.io/v1/", as docker writes it.

`login`/`logout` write that file (mode 0600, atomically) or, with a credsStore, call the helper's store/erase.
Challenge parsing (`parse_challenges`) follows RFC 7235 as Docker registries use it:
`Bearer realm="...",service="...",scope="..."` or `Basic realm="..."`.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ctrpy.runtime import errors

DOCKER_HUB_KEY = "https://index.docker.io/v1/"
_HUB_ALIASES = {"docker.io", "index.docker.io", "registry-1.docker.io", "https://index.docker.io/v1/",
                "https://registry-1.docker.io", "registry.hub.docker.com"}


@dataclass(frozen=True)
class Credential:
    username: str
    secret: str
    # An identity token is an OAuth2 refresh token, not a password.
    identity_token: bool = False


def config_dir(override: str | None = None) -> Path:
    if override:
        return Path(override)
    env = os.environ.get("DOCKER_CONFIG")
    if env:
        return Path(env)
    return Path(os.path.expanduser("~")) / ".docker"


def config_file(override: str | None = None) -> Path:
    return config_dir(override) / "config.json"


def load_config(override: str | None = None) -> dict[str, Any]:
    path = config_file(override)
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise errors.from_oserror(exc, "cannot read docker config") from exc
    if not text.strip():
        return {}
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise errors.InvalidArgument(f"{path}: invalid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise errors.InvalidArgument(f"{path}: expected a JSON object")
    return data


def save_config(data: dict[str, Any], override: str | None = None) -> Path:
    """Write config.json atomically with mode 0600 (it holds secrets)."""
    path = config_file(override)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(prefix=".config.json.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            os.fchmod(f.fileno(), 0o600)
            json.dump(data, f, indent="\t")
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return path


def config_key(domain: str) -> str:
    """The key docker uses for a registry in config.json."""
    return DOCKER_HUB_KEY if domain in _HUB_ALIASES else domain


def _normalise_key(key: str) -> str:
    key = re.sub(r"^https?://", "", key).rstrip("/")
    if key.endswith("/v1") or key.endswith("/v2"):
        key = key[:-3]
    return "docker.io" if key in ("index.docker.io", "registry-1.docker.io", "registry.hub.docker.com") else key


def _helper(name: str, action: str, payload: str) -> str:
    binary = f"docker-credential-{name}"
    try:
        result = subprocess.run([binary, action], input=payload, capture_output=True, text=True, timeout=60)
    except FileNotFoundError:
        raise errors.NotFound(f"credential helper {binary} not found in PATH") from None
    except subprocess.TimeoutExpired:
        raise errors.DeadlineExceeded(f"credential helper {binary} {action} timed out") from None
    if result.returncode != 0:
        message = (result.stdout.strip() or result.stderr.strip()).splitlines()
        text = message[0] if message else f"exit status {result.returncode}"
        if "credentials not found" in text.lower():
            raise errors.NotFound(text)
        raise errors.Unavailable(f"credential helper {binary} {action} failed: {text}")
    return result.stdout


def helper_get(name: str, server: str) -> Credential | None:
    try:
        out = _helper(name, "get", server)
    except errors.NotFound as exc:
        if "not found in PATH" in str(exc):
            raise
        return None
    try:
        data = json.loads(out)
    except ValueError:
        raise errors.Unavailable(f"credential helper docker-credential-{name} returned invalid JSON") from None
    user, secret = data.get("Username", ""), data.get("Secret", "")
    if not secret:
        return None
    return Credential(user, secret, identity_token=(user == "<token>"))


def lookup(domain: str, override: str | None = None) -> Credential | None:
    """Stored credentials for registry `domain` (as written in references: docker.io, host:port)."""
    data = load_config(override)
    key = config_key(domain)
    helpers = data.get("credHelpers") or {}
    for candidate in (domain, key):
        if candidate in helpers:
            return helper_get(helpers[candidate], key)
    if data.get("credsStore"):
        return helper_get(data["credsStore"], key)
    auths = data.get("auths") or {}
    wanted = _normalise_key(key)
    for entry_key, entry in auths.items():
        if _normalise_key(entry_key) != wanted or not isinstance(entry, dict):
            continue
        if entry.get("identitytoken"):
            return Credential(entry.get("username", ""), entry["identitytoken"], identity_token=True)
        if entry.get("auth"):
            try:
                user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                raise errors.InvalidArgument(f"{config_file(override)}: invalid auth for {entry_key}") from None
            return Credential(user, password)
        if entry.get("username") and entry.get("password"):
            return Credential(entry["username"], entry["password"])
    return None


def store(domain: str, cred: Credential, override: str | None = None) -> str:
    """Save credentials (login); returns where they went."""
    data = load_config(override)
    key = config_key(domain)
    helper = (data.get("credHelpers") or {}).get(domain) or data.get("credsStore")
    if helper:
        _helper(helper, "store", json.dumps({"ServerURL": key, "Username": cred.username, "Secret": cred.secret}))
        data.setdefault("auths", {}).setdefault(key, {})
        save_config(data, override)
        return f"credential helper docker-credential-{helper}"
    entry = {"auth": base64.b64encode(f"{cred.username}:{cred.secret}".encode()).decode()}
    data.setdefault("auths", {})[key] = entry
    return str(save_config(data, override))


def erase(domain: str, override: str | None = None) -> bool:
    """Remove stored credentials (logout); False when there were none."""
    data = load_config(override)
    key = config_key(domain)
    found = False
    helper = (data.get("credHelpers") or {}).get(domain) or data.get("credsStore")
    if helper:
        try:
            _helper(helper, "erase", key)
            found = True
        except errors.NotFound:
            pass
    auths = data.get("auths") or {}
    for entry_key in list(auths):
        if _normalise_key(entry_key) == _normalise_key(key):
            del auths[entry_key]
            found = True
    if found:
        save_config(data, override)
    return found


def parse_user(user: str) -> Credential:
    """--user user[:password]; a missing password is read from the terminal."""
    name, sep, password = user.partition(":")
    if not name:
        raise errors.InvalidArgument("--user needs a user name (user[:password])")
    if not sep:
        import getpass
        import sys

        if not sys.stdin.isatty():
            # getpass would fall back to reading stdin with a GetPassWarning; say what to do instead.
            raise errors.InvalidArgument(
                f"--user {name} without a password needs a terminal to ask for it: give --user {name}:PASSWORD "
                f"or store it with `ctrpy login --password-stdin -u {name} SERVER`")
        try:
            password = getpass.getpass(f"Password for {name}: ")
        except (EOFError, OSError):
            raise errors.InvalidArgument("--user without a password needs a terminal to ask for it") from None
    return Credential(name, password)


# ---------------------------------------------------------------------------------------------- challenges

_PARAM_RE = re.compile(r'\s*([A-Za-z0-9_.-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))\s*,?')


@dataclass
class Challenge:
    scheme: str                  # "bearer" or "basic" (lowercase)
    params: dict[str, str]


def parse_challenges(headers: list[str]) -> list[Challenge]:
    out: list[Challenge] = []
    for header in headers:
        text = header.strip()
        while text:
            m = re.match(r"([A-Za-z][A-Za-z0-9_-]*)\s*", text)
            if not m:
                break
            scheme = m.group(1).lower()
            text = text[m.end():]
            params: dict[str, str] = {}
            while True:
                pm = _PARAM_RE.match(text)
                if not pm or (pm.group(2) is None and pm.group(3) is None):
                    break
                # Stop when the next token is a new scheme rather than a parameter.
                params[pm.group(1).lower()] = pm.group(2).replace('\\"', '"') if pm.group(2) is not None \
                    else pm.group(3)
                text = text[pm.end():]
            out.append(Challenge(scheme, params))
            text = text.lstrip(", ")
    return out
