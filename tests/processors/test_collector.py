"""The processor runs the cyclic collector rarely (``processors.runner.GC_THRESHOLDS``):
that is safe only while processing events leaves no cyclic garbage to wait for it.

These tests apply a few thousand events of the simulator's data set to live engines with
the collector off, then count what a full collection finds unreachable: any reference
cycle built per event (an engine, a journey or a cell pointing back at itself, a closure
kept in a record) shows up as thousands of objects here.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from bench import enginecpu
from contract.catalog import load_catalog
from contract.methodology import load_methodology
from processors.context import Context
from processors.engine import PartitionEngine
from processors.runner import GC_THRESHOLDS, tune_collector


@pytest.fixture
def collector_off() -> Iterator[None]:
    was = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def test_applying_events_leaves_no_cyclic_garbage(collector_off: None) -> None:
    parts = enginecpu.records(4_000)
    ctx = Context(load_catalog(), load_methodology().standards)
    engines = {p: PartitionEngine(p, ctx) for p in parts}  # alive: state, not garbage
    gc.collect()
    applied = 0
    for p, recs in parts.items():
        for i in range(0, len(recs), 500):
            engines[p].process(recs[i : i + 500])
            engines[p].flush()
            applied += len(recs[i : i + 500])
    assert applied == 4_000
    assert gc.collect() == 0


def test_a_dropped_engine_is_collected(collector_off: None) -> None:
    # the counterpart, so the test above can fail: an engine holds bound methods of its
    # own (its dispatch table) and is freed only by the cyclic collector
    ctx = Context(load_catalog(), load_methodology().standards)
    gc.collect()
    PartitionEngine(0, ctx)
    assert gc.collect() > 0


def test_tune_collector_sets_the_thresholds() -> None:
    before = gc.get_threshold()
    try:
        tune_collector()
        assert gc.get_threshold() == GC_THRESHOLDS
    finally:
        gc.set_threshold(*before)
