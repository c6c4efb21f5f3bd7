"""settle_heap: start-up objects leave the cyclic GC's generations, garbage does not."""

from __future__ import annotations

import gc
import weakref

import pytest

from shared.runtime import settle_heap

pytestmark = pytest.mark.unit


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
