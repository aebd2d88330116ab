"""What every kubectl-style command shares: the cluster connection, options and error reporting.

Errors are one line on stderr (``error: ...``, or kubectl's ``Error from server (NotFound): ...``)
and exit code 1; validation errors print one ``file:line: path: message`` line each. No command
shows a traceback for something the user can fix.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])


class CliError(click.ClickException):
    """A user-facing failure: printed as given (one or more lines), exit code 1."""

    exit_code = 1

    def __init__(self, message: str, *, prefix: str = "error: ") -> None:
        super().__init__(message)
        self.prefix = prefix

    def show(self, file: Any = None) -> None:
        stream = file if file is not None else sys.stderr
        lines = self.message.splitlines() or [""]
        if len(lines) == 1:
            click.echo(f"{self.prefix}{lines[0]}", file=stream)
        else:
            for line in lines:
                click.echo(line, file=stream)


def _one_line_usage(exc: click.UsageError, ctx_name: str) -> click.ClickException:
    if type(exc).__name__ == "NoArgsIsHelpError":
        return exc  # a bare group name: show its help, as click does
    hint = f" See 'meshpilot {ctx_name} --help'." if ctx_name else " See 'meshpilot --help'."
    message = exc.format_message().rstrip(".")
    # click's suggestion ("Did you mean 'pods'?") already ends the sentence
    return CliError(message + ("" if message.endswith("?") else ".") + hint)


class _OneLineUsage(click.Command):
    """Usage errors raised while parsing this command's arguments become one ``CliError`` line."""

    def make_context(
        self, info_name: str | None, args: list[str], parent: click.Context | None = None, **extra: Any
    ) -> click.Context:
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except click.UsageError as exc:
            raise _one_line_usage(exc, self._usage_path(parent, info_name)) from None

    def _usage_path(self, parent: click.Context | None, name: str | None) -> str:
        """The words between ``meshpilot`` and ``--help`` in the hint."""
        return _command_path(parent, name)


class Command(_OneLineUsage):
    """A command whose usage errors are one line (``error: ... See 'meshpilot X --help'.``), exit 1."""


class Group(_OneLineUsage, click.Group):
    """A group of commands with one-line usage errors; its subcommands get the same."""

    command_class = Command

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        try:
            return super().resolve_command(ctx, args)
        except click.UsageError as exc:
            raise _one_line_usage(exc, self._usage_path(ctx.parent, ctx.info_name)) from None


class RootGroup(Group):
    """The ``meshpilot`` group itself: its usage errors (``meshpilot frob``) point at ``meshpilot --help``."""

    def _usage_path(self, parent: click.Context | None, name: str | None) -> str:
        return ""


def _command_path(parent: click.Context | None, name: str | None) -> str:
    parts = [name or ""]
    node = parent
    while node is not None and node.parent is not None:
        parts.insert(0, node.info_name or "")
        node = node.parent
    return " ".join(p for p in parts if p)


def fail(message: str) -> NoReturn:
    raise CliError(message)


def context_name(ctx: click.Context, explicit: str | None) -> str | None:
    """``--context`` given to the command itself, else to the ``meshpilot`` group, else None."""
    if explicit:
        return explicit
    node: click.Context | None = ctx
    while node is not None:
        value = node.params.get("context")
        if value:
            return str(value)
        node = node.parent
    obj = ctx.find_root().obj
    if isinstance(obj, dict) and obj.get("context"):
        return str(obj["context"])
    return None


def context_option(fn: F) -> F:
    return click.option(
        "--context",
        "context",
        default=None,
        metavar="NAME",
        help="kubeconfig context to use (default: the current context)",
    )(fn)


def namespace_options(fn: F) -> F:
    fn = click.option(
        "-n", "--namespace", default=None, help="namespace (default: the context's, else default)"
    )(fn)
    return fn


def reports_errors(fn: F) -> F:
    """Turn the errors of the layers below into one clear line and exit code 1."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from meshpilot.api import InvalidObject, NotServed

        try:
            return fn(*args, **kwargs)
        except (CliError, click.exceptions.Exit, click.Abort, click.UsageError):
            raise
        except InvalidObject as exc:
            # One `file:line: path: message` line per problem, nothing else, so editors can jump to them.
            raise CliError("\n".join(str(e) for e in exc.errors) or str(exc), prefix="") from None
        except NotServed as exc:
            raise CliError(str(exc)) from None
        except Exception as exc:
            message = describe_exception(exc)
            if message is None:
                raise
            raise CliError(message, prefix="") from None

    return wrapper  # type: ignore[return-value]


def describe_exception(exc: BaseException) -> str | None:
    """One line for a client or connection failure, or None when it is a bug worth a traceback."""
    import httpx

    from meshpilot.client import ApiError, KubeconfigError

    if isinstance(exc, ApiError):
        if exc.status == 503 and exc.message.startswith("cannot reach"):
            return f"error: {exc.message} (is the cluster running? meshpilot cluster up)"
        return f"Error from server ({exc.reason}): {exc.message}"
    if isinstance(exc, KubeconfigError):
        return f"error: {exc}"
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
        return f"error: cannot reach the cluster API ({exc}); is the cluster running? (meshpilot cluster up)"
    if isinstance(exc, httpx.HTTPError):
        return f"error: talking to the cluster API: {exc}"
    if isinstance(exc, FileNotFoundError | PermissionError | IsADirectoryError | UnicodeDecodeError):
        return f"error: {exc}"
    return None
