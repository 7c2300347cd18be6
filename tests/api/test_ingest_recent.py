"""The API's memory of recent event ids: exact last-N semantics in fixed memory."""

from __future__ import annotations

import tracemalloc
import uuid
from collections import deque

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from api.recent import RecentIds


@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@given(
    st.integers(0, 12),
    st.lists(st.lists(st.integers(0, 40), max_size=8), max_size=40),
)
def test_remembers_exactly_the_last_size_ids(size: int, batches: list[list[int]]) -> None:
    # a tiny table: its probe runs wrap around and deletions land inside them
    recent = RecentIds(size)
    model: deque[str] = deque()
    for batch in batches:
        ids = [f"id-{i}" for i in batch]
        recent.add_all(ids)
        for i in ids:
            if size and i not in model:
                model.append(i)
                if len(model) > size:
                    model.popleft()
        assert len(recent) == len(model)
        assert {f"id-{i}" for i in range(41) if f"id-{i}" in recent} == set(model)


def test_a_repeat_within_the_last_size_ids_is_recognised_and_older_ones_forgotten() -> None:
    recent = RecentIds(10_000)
    ids = [str(uuid.uuid4()) for _ in range(25_000)]
    for i in range(0, len(ids), 500):
        recent.add_all(ids[i : i + 500])
    assert len(recent) == 10_000
    assert all(i in recent for i in ids[-10_000:])
    assert not any(i in recent for i in ids[:-10_000])


@pytest.mark.slow
def test_memory_is_allocated_at_start_and_never_grows() -> None:
    size = 50_000
    ids = [str(uuid.uuid4()) for _ in range(3 * size)]
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        recent = RecentIds(size)
        allocated = tracemalloc.get_traced_memory()[0] - before
        for i in range(0, len(ids), 1000):
            recent.add_all(ids[i : i + 1000])
        grown = tracemalloc.get_traced_memory()[0] - before - allocated
    finally:
        tracemalloc.stop()
    assert allocated / size < 26  # 24 bytes an id, plus the object
    assert grown < 4096
