"""A small bounded cache that a model can own while several threads run it.

A model may serve several threads at once (one per app session, say), and a cache on it is then
written from all of them: `BoundedCache` takes its own lock around each read and write, and
forgets its oldest entry when full. A deep copy of the model gets an empty cache of the same
size (a copy is often made to change the model, which the old entries would not reflect).
"""

from __future__ import annotations

import threading
from collections.abc import Hashable


class BoundedCache:
    """At most `entries` key -> value pairs, oldest first out; safe to use from several threads."""

    def __init__(self, entries: int):
        self.entries = entries
        self._items: dict = {}
        self._lock = threading.Lock()

    def get(self, key: Hashable):
        """The value stored under key, or None."""
        with self._lock:
            return self._items.get(key)

    def put(self, key: Hashable, value) -> None:
        """Store value under key, forgetting the oldest entry when the cache is full."""
        with self._lock:
            if key not in self._items and len(self._items) >= self.entries:
                self._items.pop(next(iter(self._items)))
            self._items[key] = value

    def __len__(self) -> int:
        return len(self._items)

    def __deepcopy__(self, memo) -> BoundedCache:
        return BoundedCache(self.entries)
