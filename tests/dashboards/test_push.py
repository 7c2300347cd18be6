"""``servicepulse dashboards push``: the sequence of Grafana API requests.

Grafana cannot run on these machines, so this is a unit test of the request sequence
against a small local HTTP server that records the calls and answers as Grafana's API
does (404 for a missing folder or data source, 401 for a bad token, 403 for a token
without the right). It does not prove that a real Grafana accepts the dashboards; the
JSON models are checked by the lint and by running every query against Prometheus.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from typer.testing import CliRunner

from contract.methodology import load_methodology
from dashboards import build, push
from servicepulse.cli import app
from servicepulse.stack import free_port

TOKEN = "test-token"


@dataclass
class FakeGrafana:
    """Records requests; keeps the folders, data sources and dashboards it was given."""

    port: int
    calls: list[tuple[str, str]] = field(default_factory=list)
    bodies: list[dict[str, Any]] = field(default_factory=list)
    folders: set[str] = field(default_factory=set)
    datasources: set[str] = field(default_factory=set)
    dashboards: dict[str, dict[str, Any]] = field(default_factory=dict)
    forbid: set[str] = field(default_factory=set)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def _handler(state: FakeGrafana) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def _answer(self, code: int, body: object) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _route(self, method: str) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length)) if length else {}
            state.calls.append((method, self.path))
            state.bodies.append(body)
            if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                return self._answer(401, {"message": "Unauthorized"})
            if (method, self.path) in {tuple(f.split(" ", 1)) for f in state.forbid}:
                return self._answer(403, {"message": "Permission denied"})
            match method, self.path.split("/")[2:]:
                case "GET", ["folders", uid]:
                    if uid in state.folders:
                        return self._answer(200, {"uid": uid})
                    return self._answer(404, {"message": "folder not found"})
                case "POST", ["folders"]:
                    state.folders.add(body["uid"])
                    return self._answer(200, {"uid": body["uid"], "title": body["title"]})
                case "GET", ["datasources", "uid", uid]:
                    if uid in state.datasources:
                        return self._answer(200, {"uid": uid})
                    return self._answer(404, {"message": "Data source not found"})
                case "POST", ["datasources"]:
                    state.datasources.add(body["uid"])
                    return self._answer(200, {"message": "Datasource added"})
                case "POST", ["dashboards", "db"]:
                    uid = body["dashboard"]["uid"]
                    if uid in state.dashboards and not body.get("overwrite"):
                        return self._answer(412, {"message": "version-mismatch"})
                    state.dashboards[uid] = body
                    return self._answer(200, {"status": "success", "uid": uid})
            return self._answer(404, {"message": "Not found"})

        def do_GET(self) -> None:
            self._route("GET")

        def do_POST(self) -> None:
            self._route("POST")

    return Handler


@pytest.fixture
def grafana() -> Iterator[FakeGrafana]:
    state = FakeGrafana(free_port())
    server = ThreadingHTTPServer(("127.0.0.1", state.port), _handler(state))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


MODELS = build.models(load_methodology())


def _push(url: str, token: str = TOKEN) -> push.PushResult:
    return push.push(
        url,
        token,
        MODELS,
        datasource_uid=build.DATASOURCE_UID,
        prometheus_url="http://prometheus:9090",
        timeout=5,
    )


def test_first_push_creates_folder_and_datasource_then_uploads(grafana: FakeGrafana) -> None:
    result = _push(grafana.url)
    assert result.folder_created and result.datasource_created
    assert grafana.calls[:4] == [
        ("GET", f"/api/folders/{push.FOLDER_UID}"),
        ("POST", "/api/folders"),
        ("GET", f"/api/datasources/uid/{build.DATASOURCE_UID}"),
        ("POST", "/api/datasources"),
    ]
    assert grafana.calls[4:] == [("POST", "/api/dashboards/db")] * len(MODELS)
    assert grafana.bodies[3]["type"] == "prometheus"
    assert grafana.bodies[3]["url"] == "http://prometheus:9090"
    assert set(grafana.dashboards) == set(MODELS) == set(result.dashboards)
    for body in grafana.dashboards.values():
        assert body["overwrite"] is True and body["folderUid"] == push.FOLDER_UID
        assert body["dashboard"]["id"] is None and body["dashboard"]["panels"]


def test_second_push_changes_nothing_but_the_dashboards(grafana: FakeGrafana) -> None:
    _push(grafana.url)
    first = dict(grafana.dashboards)
    grafana.calls.clear()
    result = _push(grafana.url)
    assert not result.folder_created and not result.datasource_created
    assert ("POST", "/api/folders") not in grafana.calls
    assert ("POST", "/api/datasources") not in grafana.calls
    assert grafana.calls.count(("POST", "/api/dashboards/db")) == len(MODELS)
    assert grafana.dashboards == first


def test_bad_token_is_a_clear_error(grafana: FakeGrafana) -> None:
    with pytest.raises(push.PushError, match=r"rejected the token \(HTTP 401\)"):
        _push(grafana.url, token="wrong")
    assert len(grafana.calls) == 1


def test_forbidden_step_names_the_step(grafana: FakeGrafana) -> None:
    grafana.forbid.add("POST /api/datasources")
    with pytest.raises(push.PushError, match=r"create data source: .*HTTP 403.*Admin"):
        _push(grafana.url)
    assert not grafana.dashboards


def test_unreachable_grafana_is_a_clear_error() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(push.PushError, match=f"cannot reach Grafana at {url}"):
        _push(url)


def test_cli_push(grafana: FakeGrafana) -> None:
    runner = CliRunner()
    ok = runner.invoke(app, ["dashboards", "push", "--grafana-url", grafana.url, "--token", TOKEN])
    assert ok.exit_code == 0, ok.output
    assert f"{len(MODELS)} dashboards uploaded" in ok.output
    bad = runner.invoke(app, ["dashboards", "push", "--grafana-url", grafana.url, "--token", "x"])
    assert bad.exit_code == 1
    assert "rejected the token" in bad.output
