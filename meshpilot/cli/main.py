"""The ``meshpilot`` command.

Subcommands live in their own modules and are imported only when used, so ``meshpilot get pods``
does not pay for loading the proxy or the load generator.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

import click

from meshpilot.cli.common import RootGroup

# command name -> "module:attribute" of a click.Command
COMMANDS: dict[str, str] = {
    "cluster": "meshpilot.cli.cluster:cluster",
    "apply": "meshpilot.cli.kubectl:apply",
    "get": "meshpilot.cli.kubectl:get",
    "describe": "meshpilot.cli.kubectl:describe",
    "delete": "meshpilot.cli.kubectl:delete",
    "logs": "meshpilot.cli.kubectl:logs",
    "exec": "meshpilot.cli.podexec:exec_",
    "rollout": "meshpilot.cli.kubectl:rollout",
    "scale": "meshpilot.cli.kubectl:scale",
    "label": "meshpilot.cli.kubectl:label",
    "top": "meshpilot.cli.kubectl:top",
    "create": "meshpilot.cli.kubectl:create",
    "demo": "meshpilot.cli.demo:demo",
    "install": "meshpilot.cli.mesh:install",
    "proxy-status": "meshpilot.cli.mesh:proxy_status",
    "proxy-config": "meshpilot.cli.mesh:proxy_config",
    "bench": "meshpilot.cli.bench:bench",
}


class LazyGroup(RootGroup):
    """The root group: subcommands are imported on first use; usage errors are one line."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, attr = target.split(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                return None  # not built yet
            raise
        command: click.Command = getattr(module, attr)
        return command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="meshpilot")
@click.option(
    "--context",
    "context",
    default=None,
    envvar="MESHPILOT_CONTEXT",
    metavar="NAME",
    help="kubeconfig context to use (default: the current context)",
)
@click.pass_context
def cli(ctx: click.Context, context: str | None) -> None:
    """A service mesh that runs on one machine, and the practices of running one in production."""
    ctx.ensure_object(dict)
    ctx.obj["context"] = context


def main(argv: list[str] | None = None) -> Any:
    return cli.main(args=argv, prog_name="meshpilot", standalone_mode=True)


if __name__ == "__main__":
    sys.exit(main())
