"""Benchmark: page p95 of the web view at a year of history (goal <= 200 ms).

The API's own read model is filled in process with a year of daily rollups for every
service of the demo catalog (two municipalities and one channel per service and day,
the shape the processor writes, plus live gauges), then the app runs under uvicorn on a
free port without its Kafka lifespan (the numbers do not change during the run) and a
signed-in client asks for every page in turn over real HTTP.

Two figures: ``after a change`` bumps the read model's version before every request, so
no cached scorecard or report helps (what a page costs right after new data arrived,
the live case); ``cached`` repeats the requests without a change.
"""

from __future__ import annotations

import random
import re
import tempfile
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from bench.harness import BenchContext, Figure, Goal, percentile

GOAL_P95 = Goal("value", "<=", 0.2)
PAGES = (
    "/",
    "/agency/minsoc",
    "/service/large_family_status",
    "/life/large_family",
    "/offices",
    "/quality",
    "/perceived",
    "/open/",
)


def history(days: int, seed: int = 5) -> list[tuple[bytes, bytes]]:
    """Aggregates records of ``days`` days up to today for every demo service."""
    from contract import aggregates as agg
    from contract.aggregates import Gauges, Hist, Rollup
    from contract.catalog import load_catalog

    rng = random.Random(seed)  # noqa: S311 - test data, not a secret
    cat = load_catalog()
    munis = sorted(cat.municipalities)[:20]
    today = datetime.now(cat.tz).date()
    out: list[tuple[bytes, bytes]] = []
    for back in range(days):
        day = (today - timedelta(days=back)).isoformat()
        for code, idx in cat.services.items():
            svc = idx.service
            for p, muni in enumerate(rng.sample(munis, 2)):
                channel = str(rng.choice(svc.channels))
                started = rng.randint(3, 40)
                r = Rollup(events=started * 6, started=started)
                r.started_digital = started if channel in ("portal", "mobile") else 0
                reached = started
                for st in svc.steps:
                    reached = int(reached * rng.uniform(0.8, 1.0))
                    r.steps[st.code] = reached
                r.submitted, r.abandoned = reached, started - reached
                r.resolved = started
                decided = int(reached * 0.8)
                on_time = int(decided * rng.uniform(0.7, 1.0))
                r.decisions = {"approved:on_time": on_time, "approved:late": decided - on_time}
                r.feedback = {"5": started // 2, "4": started // 4, "2": 1}
                h = Hist.empty("decision_seconds")
                for _ in range(decided):
                    h.observe("decision_seconds", rng.uniform(86400, 5 * 86400))
                r.decision_seconds = h
                if channel in ("mfc", "office"):
                    good = int(started * 0.8)
                    r.visits = {"true": good, "false": started - good}
                    w = Hist.empty("wait_seconds")
                    for _ in range(started):
                        w.observe("wait_seconds", rng.uniform(60, 1500))
                    r.wait_seconds = w
                key = agg.RollupKey(p, day, agg.Dims(svc.agency, code, muni, channel, ""))
                out.append((key.encode(), agg.encode(r)))
    for i, code in enumerate(list(cat.services)[:20]):
        svc = cat.services[code].service
        g = Gauges(pending=rng.randint(5, 40), overdue=rng.randint(0, 6))
        out.append(
            (
                agg.GaugeKey(0, agg.GaugeDims(svc.agency, code, munis[i], "mfc")).encode(),
                agg.encode(g),
            )
        )
    now = time.time()
    out.append((agg.watermark_key(0), agg.encode(agg.Watermark(now - 60, now, now))))
    return out


def _serve(app: Any) -> tuple[Any, threading.Thread, str]:
    import uvicorn

    from servicepulse.stack import free_port

    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_config=None, lifespan="off", access_log=False
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="bench-web", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    return server, thread, f"http://127.0.0.1:{port}"


def bench_web(ctx: BenchContext) -> list[Figure]:
    """Page p95 after a read-model change and cached (see the module docstring)."""
    import httpx
    from prometheus_client import CollectorRegistry

    from api.app import create_app
    from api.settings import ApiSettings
    from api.tokens import Kind

    days = 60 if ctx.quick else 365
    rounds = 3 if ctx.quick else 12
    tmp = Path(tempfile.mkdtemp(prefix="web-", dir=ctx.work_dir))
    settings = ApiSettings(
        kafka_bootstrap=ctx.bootstrap, token_db=tmp / "tokens.db", readmodel_snapshot=None
    )
    app = create_app(settings, registry=CollectorRegistry())
    model = app.state.services.model
    t0 = time.monotonic()
    records = history(days)
    for key, value in records:
        model.apply_aggregate(key, value)
    model.version += 1
    model.status.ready = True
    model.status.lag = 0
    load_s = time.monotonic() - t0
    ctx.console.print(f"  {len(records):,} rollups of {days} days loaded in {load_s:.1f} s")
    token = app.state.services.tokens.create(Kind.INSPECTOR, None, "bench")[0]
    server, thread, url = _serve(app)
    changed: list[float] = []
    cached: list[float] = []
    per_page: dict[str, list[float]] = {p: [] for p in PAGES}
    try:
        with httpx.Client(base_url=url, timeout=60) as c:
            form = c.get("/login")
            nonce = re.search(r'name="csrf" value="([^"]+)"', form.text)
            if nonce is None:
                raise RuntimeError("the sign-in form has no CSRF field")
            c.post("/login", data={"token": token, "csrf": nonce.group(1), "next": "/"})
            for _ in range(rounds):
                for path in PAGES:
                    model.version += 1  # as after a batch of new data: no cache helps
                    start = time.perf_counter()
                    resp = c.get(path)
                    took = time.perf_counter() - start
                    if resp.status_code != 200:
                        raise RuntimeError(f"{path}: HTTP {resp.status_code}")
                    changed.append(took)
                    per_page[path].append(took)
                for path in PAGES:
                    start = time.perf_counter()
                    c.get(path)
                    cached.append(time.perf_counter() - start)
    finally:
        server.should_exit = True
        thread.join(15)
    note = (
        f"{days} days of history ({len(records):,} daily rollups, {len(PAGES)} pages, "
        f"{rounds} rounds), in-process uvicorn, one client, sequential"
    )
    slowest = {p: round(percentile(v, 0.95), 4) for p, v in per_page.items()}
    return [
        Figure(
            "web",
            f"web page p95 after a read-model change, {days} days of history",
            percentile(changed, 0.95),
            "s",
            goal=GOAL_P95,
            note=note,
            details={"p50": percentile(changed, 0.5), "per_page_p95": slowest},
        ),
        Figure(
            "web",
            f"web page p95 cached, {days} days of history",
            percentile(cached, 0.95),
            "s",
            goal=GOAL_P95,
            note=note,
            details={"p50": percentile(cached, 0.5)},
        ),
    ]
