"""Duration settings are ISO 8601 under unit-free names; the old names still work, warned."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest

from contract.errors import ConfigError
from contract.settings import millis
from processors.settings import ProcessorSettings
from producers.settings import ProducerSettings


def test_durations_are_read_as_iso_8601(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SERVICEPULSE_COMMIT_INTERVAL", "PT0.25S")
    monkeypatch.setenv("SERVICEPULSE_RESTORE_TIMEOUT", "PT3M")
    monkeypatch.setenv("SERVICEPULSE_PRODUCER_DELIVERY_TIMEOUT", "PT45S")
    s = ProcessorSettings()
    assert s.commit_interval == timedelta(milliseconds=250)
    assert s.restore_timeout == timedelta(minutes=3)
    assert ProducerSettings().producer_delivery_timeout == timedelta(seconds=45)


def test_an_old_unit_suffixed_variable_is_taken_in_its_unit_with_a_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("SERVICEPULSE_COMMIT_INTERVAL_MS", "50")
    monkeypatch.setenv("SERVICEPULSE_SESSION_TIMEOUT_MS", "6000")
    monkeypatch.setenv("SERVICEPULSE_RESTORE_TIMEOUT_S", "0.5")
    monkeypatch.setenv("SERVICEPULSE_PRODUCER_DELIVERY_TIMEOUT_S", "7")
    with caplog.at_level(logging.WARNING, logger="contract.settings"):
        s = ProcessorSettings()
        p = ProducerSettings()
    assert s.commit_interval == timedelta(milliseconds=50)
    assert millis(s.session_timeout) == 6000
    assert s.restore_timeout == timedelta(milliseconds=500)
    assert p.producer_delivery_timeout == timedelta(seconds=7)
    warned = caplog.text
    assert (
        "SERVICEPULSE_COMMIT_INTERVAL_MS is deprecated: use SERVICEPULSE_COMMIT_INTERVAL" in warned
    )
    assert "SERVICEPULSE_RESTORE_TIMEOUT_S is deprecated" in warned


def test_the_new_name_wins_over_the_old(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SERVICEPULSE_COMMIT_INTERVAL_MS", "50")
    monkeypatch.setenv("SERVICEPULSE_COMMIT_INTERVAL", "PT2S")
    assert ProcessorSettings().commit_interval == timedelta(seconds=2)


def test_old_values_are_still_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SERVICEPULSE_SESSION_TIMEOUT_MS", "1000")  # below the 6 s floor
    with pytest.raises(ValueError, match="session_timeout"):
        ProcessorSettings()
    monkeypatch.setenv("SERVICEPULSE_SESSION_TIMEOUT_MS", "soon")
    with pytest.raises(ConfigError, match="SERVICEPULSE_SESSION_TIMEOUT"):
        ProcessorSettings()


def test_millis_is_exact() -> None:
    assert millis(timedelta(milliseconds=500)) == 500
    assert millis(timedelta(seconds=60)) == 60_000


def test_api_and_web_durations_old_and_new(monkeypatch: pytest.MonkeyPatch) -> None:
    from api.settings import ApiSettings
    from api.web.settings import WebSettings

    monkeypatch.setenv("SERVICEPULSE_REQUEST_TIMEOUT_SECONDS", "4")
    monkeypatch.setenv("SERVICEPULSE_KEEP_ALIVE", "PT7S")
    api = ApiSettings(body_timeout_seconds=3)  # an old keyword, in its unit
    assert api.request_timeout == timedelta(seconds=4)
    assert api.keep_alive == timedelta(seconds=7)
    assert api.body_timeout == timedelta(seconds=3)
    monkeypatch.setenv("SERVICEPULSE_LIVE_INTERVAL", "PT30S")
    assert WebSettings().live_interval == timedelta(seconds=30)
