"""`everloop.heap`: a started server's heap is set aside from the collector's full walks."""

from __future__ import annotations

import gc
import weakref

from everloop.heap import freeze_startup_heap


class _Cycle:
    def __init__(self) -> None:
        self.me = self  # only a collection frees it


def test_freezing_sets_what_is_alive_aside_and_collects_garbage_first() -> None:
    gc.collect()
    gc.disable()  # no automatic collection between the garbage's making and the freeze
    try:
        garbage = weakref.ref(_Cycle())
        alive = _Cycle()
        assert garbage() is not None and any(o is alive for o in gc.get_objects())
        frozen = freeze_startup_heap()
        try:
            assert frozen > 0  # (the count moves as other threads free frozen objects)
            assert garbage() is None  # collected, not frozen for good with the living
            assert not any(o is alive for o in gc.get_objects())  # in no generation the collector walks
        finally:
            gc.unfreeze()  # a test process must not keep its heap frozen
    finally:
        gc.enable()
    assert any(o is alive for o in gc.get_objects())
