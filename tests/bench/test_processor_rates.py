"""The processor benchmark's rate once every instance is in, on numbers whose answer is known."""

from __future__ import annotations

from bench.offsets import CatchUp
from bench.processor import _all_in, _all_in_note, cores_used, machine_cpu


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


def test_cores_used_split_between_the_processors_and_the_rest() -> None:
    # 10 s of wall on 2 cores: 20 core-seconds, 19 busy; the processors used 16 of them
    got = cores_used(50.0, 66.0, (100.0, 200.0), (119.0, 220.0), cores=2)

    assert got == {
        "all_in_machine_busy": 0.95,
        "all_in_cores_processors": 1.6,
        "all_in_cores_others": 0.3,
    }
    details = {"all_in_events_per_s": 1000.0, "all_in_after_s": 5.0, **got}
    assert "the machine 95% busy" in _all_in_note(details)
    assert "processors 1.60 cores" in _all_in_note(details)


def test_the_machine_reading_is_busy_within_total() -> None:
    busy, total = machine_cpu()
    assert 0 < busy <= total
