"""signalling.run.heap: after startup, what is alive is frozen, and what comes later is still collected."""

from __future__ import annotations

import gc

from signalling.run.heap import settle_after_startup


class _Node:
    def __init__(self) -> None:
        self.other: _Node | None = None


def test_startup_objects_are_frozen_and_later_cycles_are_still_collected():
    startup = _Node()
    try:
        settle_after_startup()
        assert gc.get_freeze_count() > 0
        assert not any(o is startup for o in gc.get_objects())  # no longer scanned by any collection
        a, b = _Node(), _Node()
        a.other, b.other = b, a  # a cycle made after startup: only the collector frees it
        count = len([o for o in gc.get_objects() if isinstance(o, _Node)])
        del a, b
        gc.collect()
        assert len([o for o in gc.get_objects() if isinstance(o, _Node)]) == count - 2
    finally:
        gc.unfreeze()
