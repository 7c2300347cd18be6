"""The join benchmark's arithmetic on synthetic data, and ``--only join`` on the command.

The run itself needs a broker and three processes (``servicepulse bench --only join``);
what is checked here is that the gaps, the counter increases and the restored-records
comparison it reports are the right numbers for samples whose answer is known.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import bench
from bench.join import (
    StateCount,
    advances,
    count_state,
    increase,
    longest_gap,
    median_gap,
    value_at,
)
from contract import aggregates as agg
from servicepulse.cli import app


def _commits(
    times: list[float], scrape: float = 0.05, until: float | None = None
) -> list[tuple[float, float]]:
    """Samples of a commit counter scraped every ``scrape`` s that advanced at ``times``."""
    end = until if until is not None else times[-1] + 1.0
    samples, n, t, i = [], 0.0, 0.0, 0
    while t <= end + 1e-9:
        while i < len(times) and times[i] <= t + 1e-9:
            n += 1
            i += 1
        samples.append((round(t, 3), n))
        t += scrape
    return samples


def test_advances_are_the_samples_where_the_counter_grew() -> None:
    samples = [(0.0, 0.0), (1.0, 0.0), (2.0, 3.0), (3.0, 3.0), (4.0, 4.0)]
    assert advances(samples) == [2.0, 4.0]
    assert advances([]) == []


def test_a_steady_commit_every_half_second_has_a_half_second_gap() -> None:
    samples = _commits([0.5 * k for k in range(1, 41)])  # 0.5 .. 20.0
    assert median_gap(samples, 0.0, 10.0) == pytest.approx(0.5, abs=0.051)
    assert longest_gap(samples, 10.0, 15.0) == pytest.approx(0.5, abs=0.051)


def test_a_pause_inside_the_window_is_its_longest_gap() -> None:
    # commits every 0.5 s, none from 6.0 to 9.5: a 3.5 s pause
    times = [0.5 * k for k in range(1, 13)] + [9.5 + 0.5 * k for k in range(0, 20)]
    samples = _commits(times)
    assert longest_gap(samples, 5.0, 12.0) == pytest.approx(3.5, abs=0.051)
    # the window before it knows nothing of it
    assert longest_gap(samples, 0.0, 5.0) == pytest.approx(0.5, abs=0.051)
    median = median_gap(samples, 0.0, 5.0)
    assert median is not None
    assert longest_gap(samples, 5.0, 12.0) / median == pytest.approx(7.0, rel=0.12)


def test_a_pause_straddling_the_window_start_counts_whole() -> None:
    # last commit at 4.0, next at 8.0; the window opens at 6.0
    samples = _commits([1.0, 2.0, 3.0, 4.0, 8.0, 9.0, 10.0])
    assert longest_gap(samples, 6.0, 10.0) == pytest.approx(4.0, abs=0.051)


def test_a_counter_that_stops_for_good_stood_still_until_the_last_sample() -> None:
    samples = _commits([1.0, 2.0], until=10.0)
    assert longest_gap(samples, 3.0, 5.0) == pytest.approx(8.0, abs=0.051)
    assert median_gap(samples, 3.0, 10.0) is None


def test_increase_is_the_growth_between_two_instants() -> None:
    restored = [(0.0, 0.0), (1.0, 100.0), (2.0, 100.0), (3.0, 250.0), (4.0, 250.0)]
    assert value_at(restored, -1.0) == 0.0
    assert value_at(restored, 2.5) == 100.0
    assert increase(restored, 0.5, 3.5) == 250.0
    assert increase(restored, 1.5, 2.5) == 0.0
    assert increase(restored, 2.0, 10.0) == 150.0


def test_restored_records_are_compared_with_the_moved_and_the_full_state() -> None:
    def rollup_key(p: int) -> bytes:
        return f"r|{p}|2026-12-01|agency|service|75701000|portal|-".encode()

    changelog = [(p, b"j|x") for p in range(12) for _ in range(p + 1)]  # p+1 records each
    keys: list[bytes | None] = [rollup_key(p) for p in range(12) for _ in range(10)]
    keys += [None, b"not|a|key|of|ours"]
    st = count_state(changelog, keys)
    assert st.changelog == {p: p + 1 for p in range(12)}
    assert st.aggregates == dict.fromkeys(range(12), 10)
    assert st.other == 2
    assert st.full == sum(range(1, 13)) + 120 + 2
    # partitions 0, 5, 11: changelog 1 + 6 + 12, aggregates 3 x 10
    assert st.moved([0, 5, 11]) == 19 + 30
    assert st.moved([]) == 0
    assert StateCount({}, {}).full == 0


def test_aggregate_keys_are_counted_by_the_partition_they_name() -> None:
    keys = [agg.WatermarkKey(7).encode(), agg.RestatementKey(7, "2026-12-01", "a").encode()]
    keys.append(b"r|7|2026-12-01|a|s|75701000|portal|-")
    st = count_state([], keys)
    assert st.aggregates == {7: 3}
    assert st.other == 0


def test_only_join_is_accepted_and_runs_just_that(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    asked: dict[str, Any] = {}

    def fake_run(
        names: list[str], **kw: Any
    ) -> tuple[dict[str, Any], list[Any], tuple[Path, Path]]:
        asked["names"] = list(names)
        return {}, [], (tmp_path / "results.json", tmp_path / "results.md")

    monkeypatch.setattr(bench, "run", fake_run)
    result = CliRunner().invoke(app, ["bench", "--only", "join", "--output", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert asked["names"] == ["join"]
    assert "join" in bench.NAMES
    assert "join:" in bench.describe()
