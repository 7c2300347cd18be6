"""The printable report rendered in headless Chromium (Debian ``chromium``): the page
renders, has every section, logs no console errors; a screenshot and a PDF are saved
under ``test-artifacts/``. JSON, CSV and HTML carry the same numbers as the scorecard."""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
import subprocess
from datetime import date, timedelta
from pathlib import Path

import pytest

from contract.settings import CommonSettings
from contract.topics import Topics
from tests.fixtures.api import api_settings, demo_records, running_api, write_transactionally
from tests.fixtures.kafka import TopicFactory

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
PERIOD = {"from": "2026-11-01", "to": "2026-11-14"}


def chromium(tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run headless Chromium with console logging to stderr."""
    assert CHROMIUM is not None
    return subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--enable-logging=stderr",
            "--v=0",
            f"--user-data-dir={tmp / 'chromium-profile'}",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )


def console_errors(stderr: str) -> list[str]:
    """Lines of Chromium's log that report a page console error or an uncaught exception."""
    return [
        line
        for line in stderr.splitlines()
        if "Uncaught" in line or ("CONSOLE" in line and ("ERROR" in line or "WARNING" in line))
    ]


@pytest.fixture
def populated(topic_factory: TopicFactory) -> tuple[Topics, CommonSettings]:
    topics, common = topic_factory(3)
    start = date.fromisoformat(PERIOD["from"])
    days = [(start + timedelta(days=i)).isoformat() for i in range(14)]
    write_transactionally(common, topics.aggregates, demo_records(days))
    dead = [("minsoc", "bad_format")] * 30 + [("minsoc", "not_pseudonym")] * 5
    dead += [("zags", "unknown_step")] * 12
    letters = [
        (
            a.encode(),
            json.dumps(
                {
                    "reason": r,
                    "field": "",
                    "message": "",
                    "agency": a,
                    "source": "api",
                    "received_at": f"2026-11-0{1 + i % 9}T12:00:00+05:00",
                }
            ).encode(),
        )
        for i, (a, r) in enumerate(dead)
    ]
    write_transactionally(common, topics.deadletter, letters)
    return topics, common


@pytest.mark.skipif(CHROMIUM is None, reason="Debian chromium is not installed")
def test_report_renders_in_chromium_without_console_errors(
    populated: tuple[Topics, CommonSettings], tmp_path: Path
) -> None:
    _topics, common = populated
    ARTIFACTS.mkdir(exist_ok=True)
    with running_api(api_settings(common, tmp_path)) as server:
        server.wait_ready()
        with server.client(server.inspector_token()) as c:
            html = c.get("/v1/reports/period", params={**PERIOD, "format": "html"})
            as_json = c.get("/v1/reports/period", params=PERIOD)
            as_csv = c.get("/v1/reports/period", params={**PERIOD, "format": "csv"})
            card = c.get("/v1/scorecard", params=PERIOD).json()
    assert html.status_code == 200 and html.headers["content-type"].startswith("text/html")
    page = ARTIFACTS / "report.html"
    page.write_bytes(html.content)

    # one set of numbers in every format
    report = as_json.json()
    assert report["summary"]["index"] == pytest.approx(card["index"])
    assert report["summary"]["journeys_started"] == card["journeys_started"] > 0
    rows = list(csv.DictReader(io.StringIO(as_csv.content.decode("utf-8-sig"))))
    csv_index = next(r for r in rows if r["section"] == "summary" and r["metric"] == "index")
    assert float(csv_index["value"]) == pytest.approx(card["index"], rel=1e-5)
    assert as_csv.headers["content-disposition"].startswith("attachment")
    ranking = report["agencies"]
    assert [a["rank"] for a in ranking if a["rank"]] == list(range(1, len(ranking) + 1))
    assert ranking[0]["index"] >= ranking[-1]["index"]
    assert report["overdue"] and report["quality"] and report["funnels"]
    assert report["restated_days"][0]["agency"] == "minsoc"
    minsoc = next(q for q in report["quality"] if q["agency"] == "minsoc")
    assert minsoc["rejected"] == 35
    assert minsoc["rejected_by_reason"] == {"bad_format": 30, "not_pseudonym": 5}
    assert minsoc["rejected_share"] == pytest.approx(35 / (35 + minsoc["events"]))

    # the page as Chromium renders it: every section, no console errors
    dom = chromium(tmp_path, "--dump-dom", page.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    for text in (
        "Рейтинг ведомств",
        "Показатели по услугам",
        "Воронки заполнения",
        "Просроченные заявления",
        "Качество данных по источникам",
        "Методика расчёта",
        "Минсоц",
    ):
        assert text in dom.stdout, text
    assert console_errors(dom.stderr) == []

    shot = ARTIFACTS / "report.png"
    shot.unlink(missing_ok=True)
    res = chromium(tmp_path, f"--screenshot={shot}", "--window-size=1280,2000", page.as_uri())
    assert res.returncode == 0 and shot.stat().st_size > 50_000, res.stderr[-2000:]
    assert console_errors(res.stderr) == []

    pdf = ARTIFACTS / "report.pdf"
    pdf.unlink(missing_ok=True)
    res = chromium(tmp_path, f"--print-to-pdf={pdf}", "--no-pdf-header-footer", page.as_uri())
    data = pdf.read_bytes()
    assert res.returncode == 0 and data.startswith(b"%PDF")
    pages = len(re.findall(rb"/Type\s*/Page[^s]", data))
    assert 2 <= pages <= 30, pages  # A4 pages with the appendix on a page of its own


@pytest.mark.skipif(CHROMIUM is None, reason="Debian chromium is not installed")
def test_console_error_detection_works(tmp_path: Path) -> None:
    page = tmp_path / "broken.html"
    page.write_text(
        "<!DOCTYPE html><html><body><script>throw new Error('boom')</script></body></html>"
    )
    res = chromium(tmp_path, "--dump-dom", page.as_uri())
    assert any("boom" in line for line in console_errors(res.stderr)), res.stderr[-2000:]
