"""`ctrpy login` / `ctrpy logout`: credentials in docker's config.json (or its credential helper)."""

from __future__ import annotations

import sys
from typing import Any

import click

from ctrpy.commands.images import tls_options


def _domain(server: str | None) -> str:
    """The registry name as references spell it: docker.io, host:port."""
    if not server:
        return "docker.io"
    server = server.strip()
    for prefix in ("https://", "http://"):
        if server.startswith(prefix):
            server = server[len(prefix):]
    server = server.split("/", 1)[0]
    return "docker.io" if server in ("index.docker.io", "registry-1.docker.io") else server


@click.command("login")
@click.argument("server", required=False)
@click.option("--username", "-u", "username", help="User name")
@click.option("--password", "-p", help="Password (prefer --password-stdin)")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input")
@click.option("--docker-config", envvar="DOCKER_CONFIG", metavar="DIR",
              help="Directory of config.json  [env: DOCKER_CONFIG; default: ~/.docker]")
@tls_options
@click.pass_context
def login(ctx: click.Context, server: str | None, username: str | None, password: str | None,
          password_stdin: bool, docker_config: str | None, **kw: Any) -> None:
    """Check credentials against SERVER (default docker.io) and store them in docker's config.json.

    \b
    Examples:
      ctrpy login -u alice
      echo "$TOKEN" | ctrpy login --password-stdin -u alice registry.example.com
      ctrpy login --plain-http -u user -p secret localhost:5000
    """
    from ctrpy.commands.images import _registry
    from ctrpy.runtime import errors
    from ctrpy.runtime.remotes.auth import Credential, store
    from ctrpy.runtime.remotes.docker import Session

    if password and password_stdin:
        raise click.UsageError("--password and --password-stdin are mutually exclusive")
    if password_stdin and not username:
        raise click.UsageError("--password-stdin needs --username (-u)")
    interactive = sys.stdin.isatty()
    if not username or (password is None and not password_stdin):
        if not interactive:
            # As docker: no prompt (and no GetPassWarning echoing the password) without a terminal.
            raise errors.InvalidArgument(
                "cannot ask for the " + ("user name" if not username else "password") + " without a terminal: "
                "pipe the password to `ctrpy login --password-stdin -u USER [SERVER]`")
    if not username:
        username = click.prompt("Username")
    if password_stdin:
        password = sys.stdin.read().rstrip("\r\n")
    elif password is None:
        password = click.prompt("Password", hide_input=True)
    if not username or not password:
        raise errors.InvalidArgument("login needs a user name and a password")
    reg, _ = _registry(ctx, kw, uploads=False)
    reg.docker_config = docker_config
    domain = _domain(server)
    cred = Credential(username, password)
    with Session(domain, reg, credential=cred) as session:
        session.ping()
    where = store(domain, cred, docker_config)
    click.echo(f"Login Succeeded (credentials for {domain} saved in {where})")


@click.command("logout")
@click.argument("server", required=False)
@click.option("--docker-config", envvar="DOCKER_CONFIG", metavar="DIR",
              help="Directory of config.json  [env: DOCKER_CONFIG; default: ~/.docker]")
def logout(server: str | None, docker_config: str | None) -> None:
    """Remove stored credentials for SERVER (default docker.io).

    \b
    Examples:
      ctrpy logout
      ctrpy logout localhost:5000
    """
    from ctrpy.runtime import errors
    from ctrpy.runtime.remotes.auth import erase

    domain = _domain(server)
    if not erase(domain, docker_config):
        raise errors.NotFound(f"not logged in to {domain}")
    click.echo(f"Removed login credentials for {domain}")
