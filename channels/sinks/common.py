"""What the SMTP and HTTP stand-ins share: where they listen, and a list a test can await."""

from __future__ import annotations

import threading
from typing import Any

LOCALHOST = "127.0.0.1"


class Collector:
    """A list guarded by a Condition, so tests await a count instead of sleeping."""

    def __init__(self) -> None:
        self._items: list[Any] = []
        self._changed = threading.Condition()

    def add(self, item: Any) -> None:
        with self._changed:
            self._items.append(item)
            self._changed.notify_all()

    def snapshot(self) -> list[Any]:
        with self._changed:
            return list(self._items)

    def clear(self) -> None:
        with self._changed:
            self._items.clear()

    def wait_for(self, count: int, timeout: float) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: len(self._items) >= count, timeout)
