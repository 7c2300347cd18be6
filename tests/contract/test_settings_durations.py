"""Duration settings are ISO 8601 under unit-free names; the old names still work, warned."""

from __future__ import annotations

import logging
import re
from datetime import timedelta

import pytest

from contract.errors import ConfigError
from contract.settings import CommonSettings, millis
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


def _settings_classes() -> list[type[CommonSettings]]:
    from api.settings import ApiSettings
    from api.web.settings import WebSettings

    return [CommonSettings, ProcessorSettings, ProducerSettings, ApiSettings, WebSettings]


_UNIT_SUFFIX = re.compile(r"_(ms|s|sec|secs|seconds|minutes|hours|days)$")
_DURATION_WORD = re.compile(r"(timeout|interval|wait|max_age|after|tick|window|horizon|lateness)$")


@pytest.mark.parametrize("cls", _settings_classes(), ids=lambda c: c.__name__)
def test_every_duration_is_a_timedelta_under_a_unit_free_name(cls: type[CommonSettings]) -> None:
    for name, info in cls.model_fields.items():
        assert not _UNIT_SUFFIX.search(name), f"{cls.__name__}.{name}: a unit in the name"
        if _DURATION_WORD.search(name):
            assert info.annotation is timedelta, f"{cls.__name__}.{name} is not a timedelta"
    for name, (old, unit_s) in cls.old_duration_names.items():
        assert cls.model_fields[name].annotation is timedelta, name
        suffixes: dict[float, str | tuple[str, ...]] = {0.001: "_MS", 1.0: ("_S", "_SECONDS")}
        suffix = suffixes[unit_s]
        assert old.startswith(name.upper()) and old.endswith(suffix), (name, old)


@pytest.mark.parametrize("cls", _settings_classes(), ids=lambda c: c.__name__)
def test_one_validator_reads_the_old_names_of_every_component(
    cls: type[CommonSettings], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    befores = [
        n
        for n, d in cls.__pydantic_decorators__.model_validators.items()
        if d.info.mode == "before"
    ]
    assert befores == ["_old_duration_names"], befores  # CommonSettings' own, inherited
    for old, _unit_s in cls.old_duration_names.values():
        monkeypatch.setenv(f"SERVICEPULSE_{old}", "70000" if old.endswith("_MS") else "70")
    with caplog.at_level(logging.WARNING, logger="contract.settings"):
        s = cls()
    for name, (old, _unit_s) in cls.old_duration_names.items():
        assert getattr(s, name) == timedelta(seconds=70), name
        assert f"SERVICEPULSE_{old} is deprecated: use SERVICEPULSE_{name.upper()}" in caplog.text
