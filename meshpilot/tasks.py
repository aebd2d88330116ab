"""Background tasks that are never lost.

A bare ``asyncio.create_task`` can be garbage-collected mid-flight and its exception is only
reported when the task is collected. ``spawn`` keeps a reference until the task ends and logs
the death of a task that was meant to live.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

log = logging.getLogger("meshpilot.tasks")

_running: set[asyncio.Task[Any]] = set()


def _reap(task: asyncio.Task[Any]) -> None:
    _running.discard(task)
    if task.cancelled():
        return
    exc = task.exception()
    if exc is not None:
        log.error("task %s died: %r", task.get_name(), exc, exc_info=exc)


def spawn(coro: Coroutine[Any, Any, T], *, name: str) -> asyncio.Task[T]:
    """Start ``coro`` as a named task whose reference is held until it finishes."""
    task = asyncio.get_running_loop().create_task(coro, name=name)
    _running.add(task)
    task.add_done_callback(_reap)
    return task
