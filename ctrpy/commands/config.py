"""`ctrpy config`: the default and the effective configuration as TOML."""

from __future__ import annotations

import copy
from typing import Any

import click


@click.group()
def config() -> None:
    """Show the configuration.

    \b
    Examples:
      ctrpy config default > /etc/ctrpy/config.toml
      ctrpy --config /etc/ctrpy/config.toml config dump
    """


@config.command("default")
def default() -> None:
    """Print the full default configuration.

    \b
    Examples:
      ctrpy config default
      ctrpy config default > /etc/ctrpy/config.toml
    """
    from ctrpy.runtime.config import DEFAULTS, to_toml

    click.echo(to_toml(DEFAULTS), nl=False)


@config.command("dump")
@click.pass_obj
def dump(obj: Any) -> None:
    """Print the effective configuration (file over defaults, then --root/--state).

    \b
    Examples:
      ctrpy config dump
      ctrpy --root /srv/ctrpy --config ./config.toml config dump
    """
    from ctrpy.runtime.config import to_toml

    data = copy.deepcopy(obj.config.data)
    data["root"] = str(obj.root)
    data["state"] = str(obj.state)
    click.echo(to_toml(data), nl=False)
