"""The ctrpy command line: a Click tree whose groups load lazily.

`COMMANDS` maps each top-level name to "module:attribute" plus a static one-line summary, so `ctrpy --help`
and shell completion never import the runtime or the other groups. Aliases follow ctr.
"""

from __future__ import annotations

import importlib
import os
import sys

# Shell completion asks for IDs on every <Tab>: answer from the metadata file before Click and typing load
# (see ctrpy.commands._complete). Only the console script's own argv triggers this.
if sys.argv[1:2] == ["__complete"]:
    from ctrpy.commands._complete import fast_main

    fast_main(sys.argv[2:])

from typing import Any  # noqa: E402

import click  # noqa: E402

from ctrpy import __version__  # noqa: E402

# name -> (module:attribute, short help). Keep sorted by group; aliases in ALIASES.
COMMANDS: dict[str, tuple[str, str]] = {
    "images": ("ctrpy.commands.images:images", "Manage images"),
    "containers": ("ctrpy.commands.containers:containers", "Manage containers (metadata)"),
    "tasks": ("ctrpy.commands.tasks:tasks", "Manage tasks (running processes of containers)"),
    "snapshots": ("ctrpy.commands.snapshots:snapshots", "Manage snapshots"),
    "content": ("ctrpy.commands.content:content", "Manage the content store"),
    "namespaces": ("ctrpy.commands.namespaces:namespaces", "Manage namespaces"),
    "leases": ("ctrpy.commands.leases:leases", "Manage leases"),
    "network": ("ctrpy.commands.network:network", "Manage networks"),
    "config": ("ctrpy.commands.config:config", "Show the configuration"),
    "events": ("ctrpy.commands.events:events", "Show recorded events"),
    "gc": ("ctrpy.commands.gc:gc", "Garbage-collect unreferenced content, snapshots and leftovers"),
    "info": ("ctrpy.commands.system:info", "Show root/state dirs, snapshotters, runtimes, cgroup mode"),
    "version": ("ctrpy.commands.system:version", "Show ctrpy's and the helper's versions"),
    "pull": ("ctrpy.commands.images:pull", "Pull an image from a registry"),
    "save": ("ctrpy.commands.imagetools:save", "Save images to an OCI/docker archive"),
    "load": ("ctrpy.commands.imagetools:load", "Load images from an archive or OCI layout"),
    "import": ("ctrpy.commands.imagetools:import_", "Create an image from a root file system tarball"),
    "export": ("ctrpy.commands.imagetools:export", "Export a container's file system as a tar archive"),
    "rmi": ("ctrpy.commands.imagetools:rmi", "Remove images and free their space"),
    "tag": ("ctrpy.commands.imagetools:tag", "Give an image more names"),
    "history": ("ctrpy.commands.imagetools:history", "Show the history of an image"),
    "system": ("ctrpy.commands.system:system", "Disk usage and pruning (df, prune), info"),
    "push": ("ctrpy.commands.images:push", "Push an image to a registry"),
    "login": ("ctrpy.commands.registry:login", "Log in to a registry"),
    "logout": ("ctrpy.commands.registry:logout", "Log out from a registry"),
    "run": ("ctrpy.commands.run:run", "Create and start a container"),
    "ps": ("ctrpy.commands.tasks:ps_all", "List tasks"),
    "exec": ("ctrpy.commands.tasks:exec_", "Run a process in a running container"),
    "logs": ("ctrpy.commands.tasks:logs", "Show a task's output"),
    "runtime": ("ctrpy.commands.ociruntime:runtime", "The built-in runtime as a runc-compatible command"),
    "completion": ("ctrpy.commands.completion:completion", "Print a shell completion script"),
    "plugins": ("ctrpy.commands.plugins:plugins", "Show plugins (snapshotters, runtimes, network drivers)"),
}

ALIASES: dict[str, str] = {
    "i": "images",
    "image": "images",
    "c": "containers",
    "container": "containers",
    "t": "tasks",
    "task": "tasks",
    "snapshot": "snapshots",
    "ns": "namespaces",
    "namespace": "namespaces",
    "lease": "leases",
    "net": "network",
    "networks": "network",
    "plugin": "plugins",
}


class LazyGroup(click.Group):
    """A group whose subcommands are imported only when invoked (or when their help is shown)."""

    def __init__(self, *args: Any, lazy: dict[str, tuple[str, str]], aliases: dict[str, str], **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.lazy = lazy
        self.aliases = aliases

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(self.lazy))

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        name = self.aliases.get(name, name)
        if name in self.commands:
            return self.commands[name]
        if name not in self.lazy:
            return None
        module_name, attr = self.lazy[name][0].split(":")
        command = getattr(importlib.import_module(module_name), attr)
        if not isinstance(command, click.Command):
            raise TypeError(f"{module_name}:{attr} is not a click command")
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # Static summaries: listing help must not import every group.
        rows = [(name, self.lazy[name][1]) for name in self.list_commands(ctx) if name in self.lazy]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


class CliContext:
    """What every command receives as ctx.obj: global options plus a lazily built runtime Client."""

    def __init__(self, root: str | None, state: str | None, namespace: str, config_path: str, debug: bool,
                 config_explicit: bool) -> None:
        self.root_opt = root
        self.state_opt = state
        self.namespace = namespace
        self.config_path = config_path
        self.config_explicit = config_explicit
        self.debug = debug
        self._config: Any = None
        self._client: Any = None

    @property
    def config(self) -> Any:
        if self._config is None:
            from ctrpy.runtime.config import load_config

            self._config = load_config(self.config_path, required=self.config_explicit)
            for warning in self._config.warnings:
                click.echo(f"ctrpy: warning: {warning}", err=True)
        return self._config

    @property
    def root(self) -> str:
        return self.root_opt or self.config["root"]

    @property
    def state(self) -> str:
        return self.state_opt or self.config["state"]

    @property
    def client(self) -> Any:
        """The runtime client; requires root, since every store lives in root-owned directories."""
        if self._client is None:
            from ctrpy.runtime.client import Client, require_root

            require_root("ctrpy")
            self._client = Client(self.root, self.state, self.namespace, self.config)
        return self._client


@click.group(
    cls=LazyGroup,
    lazy=COMMANDS,
    aliases=ALIASES,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 120},
)
@click.option("--root", envvar="CTRPY_ROOT", default=None, metavar="DIR",
              help="Root directory for persistent data  [env: CTRPY_ROOT; default: /var/lib/ctrpy]")
@click.option("--state", envvar="CTRPY_STATE", default=None, metavar="DIR",
              help="State directory for runtime data  [env: CTRPY_STATE; default: /run/ctrpy]")
@click.option("--namespace", "-n", envvar="CTRPY_NAMESPACE", default="default", show_default=True,
              help="Namespace to use  [env: CTRPY_NAMESPACE]")
@click.option("--config", "config_path", envvar="CTRPY_CONFIG", default=None, metavar="FILE",
              help="Config file  [env: CTRPY_CONFIG; default: /etc/ctrpy/config.toml]")
@click.option("--debug", is_flag=True, envvar="CTRPY_DEBUG", help="Show tracebacks and debug output")
@click.version_option(__version__, "--version", prog_name="ctrpy", message="%(prog)s %(version)s")
@click.pass_context
def cli(ctx: click.Context, root: str | None, state: str | None, namespace: str, config_path: str | None,
        debug: bool) -> None:
    """ctrpy: a containerd-class container runtime.

    \b
    Examples:
      ctrpy pull docker.io/library/busybox:latest
      ctrpy run --rm docker.io/library/busybox:latest demo echo hello
      ctrpy -n k8s.io images ls
    """
    from ctrpy.runtime.config import DEFAULT_CONFIG_PATH

    # A --config named on the command line must exist; the default path or CTRPY_CONFIG may be absent.
    explicit = ctx.get_parameter_source("config_path") == click.core.ParameterSource.COMMANDLINE
    ctx.obj = CliContext(root, state, namespace, config_path or DEFAULT_CONFIG_PATH, debug,
                         config_explicit=explicit)


def main(argv: list[str] | None = None) -> None:
    """Console entry point: the one place where errors become messages and exit codes."""
    if argv is not None and argv[:1] == ["__complete"]:
        from ctrpy.commands._complete import fast_main

        fast_main(argv[1:])
    debug = os.environ.get("CTRPY_DEBUG", "").lower() in ("1", "true", "yes") or "--debug" in (argv or sys.argv)
    try:
        code = cli.main(args=argv, prog_name="ctrpy", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("ctrpy: interrupted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("ctrpy: interrupted", err=True)
        sys.exit(130)
    except BrokenPipeError:
        # The reader went away (`ctrpy images ls | head`): exit quietly, without a second error on flush.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(141)
    except Exception as exc:  # the error ladder: every other exception ends here
        from ctrpy.runtime import errors

        if debug:
            import traceback

            traceback.print_exc()
        if isinstance(exc, errors.CtrpyError):
            click.echo(f"ctrpy: {exc}", err=True)
            sys.exit(exc.exit_code)
        if isinstance(exc, OSError):
            wrapped = errors.from_oserror(exc, exc.strerror or "system error")
            click.echo(f"ctrpy: {exc}", err=True)
            sys.exit(wrapped.exit_code)
        if not debug:
            click.echo(f"ctrpy: internal error: {type(exc).__name__}: {exc} (run with --debug for a traceback)",
                       err=True)
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)
