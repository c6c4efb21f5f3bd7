"""settle_heap: start-up objects leave the cyclic GC's generations, garbage does not."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from shared.runtime import YOUNG_GC_THRESHOLD, settle_heap

pytestmark = pytest.mark.unit


@pytest.fixture(autouse=True)
def _restore_gc() -> Iterator[None]:
    """settle_heap changes process-wide GC state: give the rest of the session it back."""
    threshold = gc.get_threshold()
    yield
    gc.set_threshold(*threshold)
    gc.unfreeze()


class Node:
    """Something that can sit in a reference cycle."""

    def __init__(self) -> None:
        self.other: Node | None = None


def test_settle_heap_freezes_what_is_alive() -> None:
    """After settle_heap the permanent generation holds objects; live ones stay usable."""
    gc.unfreeze()
    assert gc.get_freeze_count() == 0
    alive = [Node() for _ in range(10)]
    try:
        settle_heap()
        assert gc.get_freeze_count() > 0
        assert all(isinstance(n, Node) for n in alive)
    finally:
        gc.unfreeze()


def test_settle_heap_raises_the_young_threshold_only() -> None:
    """Young collections wait for YOUNG_GC_THRESHOLD net allocations; older ones keep theirs."""
    before = gc.get_threshold()
    settle_heap()
    assert gc.get_threshold() == (YOUNG_GC_THRESHOLD, *before[1:])
    assert before[0] < YOUNG_GC_THRESHOLD


def test_settle_heap_collects_cyclic_garbage_before_freezing() -> None:
    """A dead reference cycle is collected first, not frozen for good."""
    enabled = gc.isenabled()
    gc.disable()  # only settle_heap's own collection may free the cycle
    try:
        a, b = Node(), Node()
        a.other, b.other = b, a
        dead = weakref.ref(a)
        del a, b
        assert dead() is not None
        settle_heap()
        assert dead() is None
    finally:
        gc.unfreeze()
        if enabled:
            gc.enable()
