"""`core.memo.IdentityMemo`: made once per object (and extra key), found again by identity only."""

from __future__ import annotations

import functools

from core.memo import IdentityMemo


def test_made_once_per_object_and_key_and_never_for_an_equal_other() -> None:
    memo: IdentityMemo[dict[str, int], str] = IdentityMemo(size=4)
    made: list[str] = []

    def make(label: str) -> str:
        made.append(label)
        return label

    one, equal = {"a": 1}, {"a": 1}  # equal, not the same: and unhashable, as a frame's data is
    assert memo.get(one, 0, lambda: make("one@0")) == "one@0"
    assert memo.get(one, 0, lambda: make("again")) == "one@0"
    assert memo.get(one, 1, lambda: make("one@1")) == "one@1"
    assert memo.get(equal, 0, lambda: make("equal@0")) == "equal@0"
    assert made == ["one@0", "one@1", "equal@0"]


def test_the_oldest_entry_goes_first_and_a_freed_ids_reuse_is_not_a_hit() -> None:
    memo: IdentityMemo[object, int] = IdentityMemo(size=2)
    first, second, third = object(), object(), object()
    assert [memo.get(o, None, functools.partial(int, n)) for n, o in enumerate((first, second, third))] == [
        0,
        1,
        2,
    ]
    assert memo.get(first, None, lambda: 10) == 10  # evicted by `third`: made again
    assert memo.get(third, None, lambda: 20) == 2  # still there

    # An entry keeps its object alive, so its id cannot name another object while the entry lives;
    # and a hit also needs the very object, should an id ever match.
    kept = object()
    memo.get(kept, "k", lambda: 1)
    stranger = object()
    memo._entries[(id(stranger), "k")] = (kept, 99)
    assert memo.get(stranger, "k", lambda: 5) == 5
