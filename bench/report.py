"""Results of a run: the JSON file and the Markdown table that docs/BENCHMARKS.md quotes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.harness import Figure, fmt_value


def _verdict(f: Figure) -> str:
    if f.value is None:
        return "n/a"
    if f.passed is None:
        return "—"
    return "**pass**" if f.passed else "**FAIL**"


def markdown_table(figures: list[Figure]) -> str:
    """One row per figure: value, baseline (same run), ratio, goal, pass/fail."""
    rows = [
        "| # | figure | value | baseline (same run) | ratio | goal | result |",
        "|---|---|---:|---|---:|---|---|",
    ]
    for i, f in enumerate(figures, start=1):
        baseline = (
            f"{f.baseline_name}: {fmt_value(f.baseline, f.unit)}"
            if f.baseline_name and f.baseline is not None
            else (f.baseline_name or "—")
        )
        ratio = f"{f.ratio:.2f}" if f.ratio is not None else "—"
        goal = f.goal.describe(f.unit) if f.goal else "—"
        value = fmt_value(f.value, f.unit) if f.value is not None else f"— ({f.note})"
        rows.append(f"| {i} | {f.name} | {value} | {baseline} | {ratio} | {goal} | {_verdict(f)} |")
    return "\n".join(rows)


def markdown(results: dict[str, Any], figures: list[Figure]) -> str:
    """The whole Markdown report of one run: machine, command, table, notes."""
    m = results["machine"]
    lines = [
        f"# ServicePulse benchmarks — run {results['run_id']}",
        "",
        f"- command: `{results['command']}`",
        f"- when: {results['started_at']} (UTC), {results['duration_s']:.0f} s",
        f"- machine: {m['cpu_model']}, {m['cores']} cores, {m['memory_gib']} GiB RAM, {m['os']}",
        f"- host speed: {m.get('cpu_mhz', 0):.0f} MHz, "
        f"{m.get('python_ns_per_round', 0):.0f} ns per round of the fixed Python workload "
        "(bench.harness.python_speed; lower is faster: compare CPU-per-event figures of "
        "two runs only with this)",
        f"- load average (1 min) before/after: {results['load_before'][0]:.2f} / "
        f"{results['load_after'][0]:.2f}",
        f"- Python {m['python']}, kafka-python {m['kafka_python']} (crc32c {m['crc32c']}), "
        f"msgspec {m['msgspec']}, quixstreams {m['quixstreams']} "
        f"(confluent-kafka {m['confluent_kafka']}), commit {m['git_commit']}",
        f"- broker: {results['broker']}",
        f"- data set: {results.get('dataset', 'n/a')}",
        "",
        markdown_table(figures),
        "",
    ]
    per = results.get("load_per_benchmark") or {}
    if per:
        lines.append(
            "Load average (1 min) around each benchmark, a measure of other work on the "
            "machine: "
            + "; ".join(
                f"{name} {v['load1_before']:.1f} -> {v['load1_after']:.1f} ({v['seconds']:.0f} s)"
                for name, v in per.items()
            )
            + "."
        )
        lines.append("")
    lines += ["Notes:", ""]
    for i, f in enumerate(figures, start=1):
        if f.note:
            lines.append(f"{i}. {f.note}")
    return "\n".join(lines) + "\n"


def write(output: Path, results: dict[str, Any], figures: list[Figure]) -> tuple[Path, Path]:
    """Write ``results.json`` and ``results.md`` into ``output``; returns both paths."""
    output.mkdir(parents=True, exist_ok=True)
    data = {**results, "figures": [f.to_json() for f in figures]}
    json_path = output / "results.json"
    json_path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    md_path = output / "results.md"
    md_path.write_text(markdown(results, figures))
    return json_path, md_path
