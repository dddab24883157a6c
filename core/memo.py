"""A small memo keyed by an object's identity, for work done once per object however many use it.

When a thousand streams follow one session, each live frame is read once from Redis and handed to
all of them as the same object; what they make of it (the stamped frame, its SSE bytes) is the same
for every reader at the same position, so it is made once and found again by that object's identity.
Objects need not be hashable (a frame's `data` is a dict). An entry holds its object, so the object's
`id` cannot be reused by another while the entry lives; the oldest entries go first once `size`
is reached, which is plenty when the readers of a frame take it one after another.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class IdentityMemo(Generic[K, V]):
    def __init__(self, size: int = 256) -> None:
        self._size = size
        self._entries: dict[tuple[int, Hashable], tuple[K, V]] = {}
        self._lock = threading.Lock()

    def get(self, obj: K, extra: Hashable, make: Callable[[], V]) -> V:
        """`make()`'s value for (`obj`, `extra`), made on the first ask and reused after."""
        key = (id(obj), extra)
        hit = self._entries.get(key)
        if hit is not None and hit[0] is obj:
            return hit[1]
        value = make()
        # Test processes run several servers' event loops in threads, sharing a module's memo.
        with self._lock:
            if len(self._entries) >= self._size:
                del self._entries[next(iter(self._entries))]  # dicts keep insertion order: the oldest
            self._entries[key] = (obj, value)
        return value
