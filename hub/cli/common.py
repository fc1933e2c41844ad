"""What every `hub` command shares: the consoles, settings loading, and how errors end a command.

A :class:`~hub.core.errors.HubError` ends a command with its message on one line on stderr and the
exit code its class declares (``exit_code``).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click
import typer
from rich.console import Console

from hub.core.errors import HubError
from hub.core.logging import configure_logging
from hub.core.settings import Settings
from hub.core.tracing import configure_from_settings

if TYPE_CHECKING:
    from hub.db.store import Store

T = TypeVar("T")

console = Console(stderr=True)
out = Console()


def fail(message: str, code: int = 2) -> NoReturn:
    """Print ``error: message`` on stderr and end the command with ``code``."""
    console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def fail_with(exc: HubError, *, first_line: bool = True) -> NoReturn:
    """End the command for a hub error: its message (the first line unless told) and its exit code."""
    message = str(exc)
    fail(message.splitlines()[0] if first_line and message else message, exc.exit_code)


#: the tracing service name of a command whose process is better known by another
_SERVICE = {"up": "api"}


def load_settings(**overrides: object) -> Settings:
    """HUB_* settings with the given non-None overrides, logging configured; a bad setting ends the command."""
    try:
        settings = Settings(**{k: v for k, v in overrides.items() if v is not None})  # type: ignore[arg-type]
    except Exception as exc:
        fail(f"invalid settings: {exc}".replace("\n", " "))
    configure_logging(settings.log_level, settings.log_format)
    configure_from_settings(settings, service_name())
    return settings


def service_name() -> str:
    """This process's tracing ``service.name``: ``familyhub-`` and its command (``familyhub-worker``,
    ``familyhub-returns-sen2``), from the running command's context or else its arguments."""
    context = click.get_current_context(silent=True)
    if context is not None:
        command = context.command_path.split(" ", 1)[-1].replace(" ", "-")
    else:  # typer may run its commands outside the click context this module sees
        words = [w for w in sys.argv[1:] if not w.startswith("-")]
        command = "-".join(words[:2] if words[:1] in (["returns"], ["audit"], ["consent"]) else words[:1]) or "cli"
    # `hub up` serves the API (its workers are processes of their own, named familyhub-worker)
    return f"familyhub-{_SERVICE.get(command, command)}"


def open_store(settings: Settings) -> Store:
    """The database of ``settings``: migrated when it is the hub's own SQLite file, else checked to be at
    the latest schema (only `hub migrate` changes a configured database); a refusal ends the command."""
    from hub.db.keyvault import SqlKeyVault, load_keyring
    from hub.db.store import Store

    try:
        store = Store.open(settings.effective_database_url, migrate_schema=settings.owns_database)
        store.vault = SqlKeyVault(store, load_keyring(settings))  # sealed columns open with this hub's keys
        return store
    except HubError as exc:
        fail_with(exc, first_line=False)


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to the end; a hub error ends the command."""
    try:
        return asyncio.run(coro)
    except HubError as exc:
        fail_with(exc)
