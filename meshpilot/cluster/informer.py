"""List-then-watch loops over the store: the triggers of the level-triggered controllers.

Controllers do not trust an event's content; an event only says "look again". Each loop lists
first (to learn the resourceVersion to watch from, so nothing falls in the gap between list and
watch), then watches; when the store says the history is gone (410) or the watch breaks, it
lists again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from meshpilot.store import ResourceKey, Store

log = logging.getLogger("meshpilot.cluster.informer")

Handler = Callable[[str, dict[str, Any]], None]


async def watch_forever(store: Store, key: ResourceKey, handler: Handler) -> None:
    """Call ``handler(type, obj)`` for every change of ``key``; ``handler("SYNC", {})`` after each list.

    Runs until cancelled; survives store hiccups by listing again after a short pause.
    """
    while True:
        try:
            _items, version = store.list(key)
            handler("SYNC", {})
            async for event_type, obj in store.watch(key, resource_version=version):
                handler(event_type, obj)
            return  # the store ends its watches only when it closes
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if type(exc).__name__ != "Gone":
                log.warning("watch of %s/%s broke: %r; listing again", key[0] or "core", key[1], exc)
            await asyncio.sleep(0.2)
