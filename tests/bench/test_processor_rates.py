"""The processor benchmark's rate once every instance is in, on numbers whose answer is known."""

from __future__ import annotations

from bench.offsets import CatchUp
from bench.processor import _all_in, _all_in_note


def _catch(records: int = 400_000) -> CatchUp:
    # spawned at t=100, first commit at 103, all committed at 113
    return CatchUp("g", 100.0, 103.0, 100_000, 113.0, records, advances=6)


def test_rate_from_the_moment_every_instance_committed() -> None:
    got = _all_in(_catch(), [(105.0, 150_000), (106.0, 170_000)])

    assert got == {
        "all_in_after_s": 5.0,
        "committed_when_all_in": 150_000,
        "all_in_events_per_s": 31_250.0,  # 250,000 records in the last 8 s
    }
    assert "31,250 events/s" in _all_in_note(got)
    assert "5.0 s after spawn" in _all_in_note(got)


def test_no_rate_when_never_seen_or_seen_only_at_the_end() -> None:
    assert _all_in(_catch(), []) == {}
    assert _all_in(_catch(), [(113.0, 400_000)]) == {}
    assert _all_in_note({}) == ""
