"""``servicepulse bench`` without the benchmarks or their extras: a clear refusal."""

from __future__ import annotations

import sys

import pytest
from typer.testing import CliRunner

import bench
from servicepulse.cli import app


def test_an_explicit_benchmark_whose_extra_is_missing_is_refused_with_the_install_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(bench.EXTRAS, "peer", "servicepulse_no_such_module")
    result = CliRunner().invoke(app, ["bench", "--only", "processor,peer"])
    assert result.exit_code == 2
    assert "peer needs servicepulse_no_such_module" in result.output
    assert "pip install -e '.[bench]'" in result.output


def test_missing_extras_names_only_the_benchmarks_asked_for(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(bench.EXTRAS, "peer", "servicepulse_no_such_module")
    monkeypatch.setitem(bench.EXTRAS, "profile", "json")  # present in every Python
    assert bench.missing_extras(["processor", "peer", "profile"]) == {
        "peer": "servicepulse_no_such_module"
    }
    assert bench.missing_extras(["processor", "profile"]) == {}


def test_without_the_bench_package_the_command_says_how_to_get_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "bench", None)  # import bench raises ImportError
    result = CliRunner().invoke(app, ["bench", "--only", "processor"])
    assert result.exit_code == 2
    assert "benchmarks are not installed" in result.output
    assert "source checkout" in result.output


def test_an_unknown_benchmark_is_a_usage_error() -> None:
    result = CliRunner().invoke(app, ["bench", "--only", "nosuch"])
    assert result.exit_code == 2
    assert "unknown benchmark(s) nosuch" in result.output
