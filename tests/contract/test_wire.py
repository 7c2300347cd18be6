"""The wire codec of contract/: record keys, the derived field lists, the dead letter.

Keys are compared with literal bytes (what is on existing topics), so a change to the
format fails here before it reaches a broker. The derivations are what keeps adding a
counter to one field, one family and one increment (docs/METRICS.md, "Adding a counter").
"""

from __future__ import annotations

import json

import msgspec
import pytest

from api.exposition import LiveExposition
from contract import aggregates as agg
from contract import deadletter as dl
from contract.aggregates import (
    ClosedDayKey,
    Dims,
    GaugeDims,
    GaugeKey,
    Gauges,
    Hist,
    RestatementKey,
    Rollup,
    RollupKey,
    WatermarkKey,
)
from contract.catalog import load_catalog
from contract.metrics import BUCKETS, FAMILIES, UNEXPOSED_FIELDS
from processors.state import Journey
from processors.state import encode as state_encode

CATALOG = load_catalog()

KEYS: list[tuple[agg.Key, bytes]] = [
    (
        RollupKey(
            3, "2026-11-02", Dims("minsoc", "large_family_status", "75701000", "mfc", "birth")
        ),
        b"r|3|2026-11-02|minsoc|large_family_status|75701000|mfc|birth",
    ),
    (
        RollupKey(0, "2026-11-02", Dims("minsoc", "", "75701000", "portal", "")),
        b"r|0|2026-11-02|minsoc||75701000|portal|",
    ),
    (
        GaugeKey(11, GaugeDims("zags", "marriage", "75701000", "phone")),
        b"g|11|zags|marriage|75701000|phone",
    ),
    (RestatementKey(2, "2026-11-03", "minsoc"), b"s|2|2026-11-03|minsoc"),
    (WatermarkKey(0), b"w|0"),
    (WatermarkKey(17), b"w|17"),
    (ClosedDayKey("2026-11-01", 5, "minsoc"), b"d|2026-11-01|5|minsoc"),
]


@pytest.mark.parametrize(("key", "raw"), KEYS)
def test_every_key_kind_encodes_to_and_decodes_from_its_literal_bytes(
    key: agg.Key, raw: bytes
) -> None:
    assert key.encode() == raw
    back = agg.decode_key(raw)
    assert back == key
    assert type(back) is type(key)


def test_decoded_dimensions_are_named() -> None:
    k = agg.decode_key(b"r|1|2026-11-02|minsoc|svc|75701000|mfc|")
    assert isinstance(k, RollupKey)
    assert k.dims.agency == "minsoc" and k.dims.channel == "mfc" and k.dims.life_situation == ""
    assert isinstance(k.dims, Dims)
    assert k.dims.gauge() == GaugeDims("minsoc", "svc", "75701000", "mfc")
    g = agg.decode_key(b"g|1|minsoc|svc|75701000|mfc")
    assert isinstance(g, GaugeKey) and g.dims == k.dims.gauge()


def test_the_shorthand_key_functions_are_the_classes() -> None:
    assert agg.restatement_key(2, "2026-11-03", "minsoc") == b"s|2|2026-11-03|minsoc"
    assert agg.watermark_key(4) == b"w|4"
    assert agg.closed_day_key("2026-11-01", 5, "minsoc") == b"d|2026-11-01|5|minsoc"


@pytest.mark.parametrize(
    "raw",
    [
        b"x|0",  # unknown kind
        b"r|0|2026-11-02|minsoc",  # too few parts
        b"g|0|a|b|c|d|e",  # too many
        b"w|",  # empty partition
        b"w|-1",
        b"w|01",  # would not encode back to the same bytes
        b"w| 1",
        b"s|x|2026-11-02|minsoc",
        b"d|2026-11-01|p|minsoc",
        b"\xff|0",  # not UTF-8
    ],
)
def test_a_key_that_is_not_of_the_format_is_refused(raw: bytes) -> None:
    with pytest.raises(ValueError, match="key"):
        agg.decode_key(raw)


@pytest.mark.parametrize(
    "raw",
    [
        b"r|1|2026-11-02|minsoc|svc|75701000|mfc|",
        b"r|11|2026-11-02|minsoc|svc|75701000|mfc|birth",
        b"r|0|2026-11-02|minsoc",  # too few parts
        b"r|0|2026-11-02|minsoc|a|b|c|d|e",  # too many
        b"r|01|2026-11-02|minsoc|svc|75701000|mfc|",
        b"r| 1|2026-11-02|minsoc|svc|75701000|mfc|",
        b"r||2026-11-02|minsoc|svc|75701000|mfc|",
        b"r|1|2026-11-02|min\xffsoc|svc|75701000|mfc|",  # not UTF-8
        b"g|1|minsoc|svc|75701000|mfc",  # not a rollup key
        b"s|1|2026-11-02|minsoc",
    ],
)
def test_a_split_rollup_key_is_exactly_a_decoded_one(raw: bytes) -> None:
    """The restore splits ``r|`` keys without decoding them; it accepts what decoding
    accepts, and the same parts."""
    got = agg.split_rollup_key(raw)
    try:
        key = agg.decode_key(raw)
    except ValueError:
        key = None
    if not isinstance(key, RollupKey):
        assert got is None
        return
    assert got is not None
    p, day, agency, tail = got
    assert RollupKey(p, day, Dims(agency, *tail.split("|"))) == key


def test_dims_are_the_same_bytes_as_a_plain_tuple_in_the_changelog() -> None:
    """The processor's changelog stores Dims inside its state: a NamedTuple is an array."""
    parts = ("minsoc", "svc", "75701000", "portal", "")
    named = state_encode(Journey(dims=Dims(*parts), last_ms=5))
    plain = state_encode(Journey(dims=parts, last_ms=5))  # type: ignore[arg-type]
    assert named == plain
    array = b"\x95\xa6minsoc\xa3svc\xa875701000\xa6portal\xa0"
    assert msgspec.msgpack.encode(Dims(*parts)) == array
    assert msgspec.msgpack.decode(named, type=Journey).dims == Dims(*parts)
    assert isinstance(msgspec.msgpack.decode(named, type=Journey).dims, Dims)


# -- field lists and families -------------------------------------------------------------


def test_the_field_lists_are_the_rollup_struct_by_type() -> None:
    fields = msgspec.structs.fields(Rollup)
    assert (*agg.INT_FIELDS, *agg.MAP_FIELDS, *agg.HIST_FIELDS) == tuple(f.name for f in fields)
    r = Rollup()
    assert all(getattr(r, f) == 0 for f in agg.INT_FIELDS)
    assert all(getattr(r, f) == {} for f in agg.MAP_FIELDS)
    assert all(getattr(r, f) is None for f in agg.HIST_FIELDS)
    assert set(agg.HIST_FIELDS) == set(BUCKETS)


def test_every_field_has_exactly_one_family_or_is_declared_unexposed() -> None:
    sources = [f.source for f in FAMILIES if f.source is not None]
    fields = [*Rollup.__struct_fields__, *Gauges.__struct_fields__]
    assert sorted(sources) == sorted(set(sources)), "a field feeds two families"
    assert set(sources) <= set(fields), "a family names a field that does not exist"
    assert set(fields) >= UNEXPOSED_FIELDS
    assert not UNEXPOSED_FIELDS & set(sources)
    assert set(sources) | UNEXPOSED_FIELDS == set(fields)


def test_each_family_names_a_source_of_its_kind() -> None:
    for f in FAMILIES:
        if f.source is None:
            fed_otherwise = f.name.startswith(("catalog_", "events_rejected"))
            assert fed_otherwise, f"{f.name} names no source field"
        elif f.kind == "counter":
            assert f.source in agg.INT_FIELDS or f.source in agg.MAP_FIELDS, f.name
        elif f.kind == "histogram":
            assert f.source in agg.HIST_FIELDS and f.buckets == f.source, f.name
        else:
            assert f.source in Gauges.__struct_fields__, f.name


def _sample(text: str, name: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{"):
            total += float(line.rsplit(" ", 1)[1])
    return total


@pytest.mark.parametrize(
    "family", [f for f in FAMILIES if f.kind == "counter" and f.source in agg.INT_FIELDS]
)
def test_an_integer_counter_is_exposed_from_its_source_field_alone(family: object) -> None:
    """The exposition's map is derived: setting one field moves its family and no other."""
    assert isinstance(family, type(FAMILIES[0]))
    assert family.source is not None
    live = LiveExposition(CATALOG)
    svc = next(iter(CATALOG.services.values())).service
    muni = next(iter(CATALOG.municipalities))
    cell = Dims(svc.agency, svc.code, muni, "portal", "")
    live.add_rollup(cell, msgspec.structs.replace(Rollup(), **{family.source: 7}))
    text = live.payload().decode()
    for other in FAMILIES:
        if other.kind == "counter" and other.source in agg.INT_FIELDS:
            want = 7 if other is family else 0
            assert _sample(text, other.full) == want, other.name


def test_gauges_are_exposed_from_their_source_fields() -> None:
    live = LiveExposition(CATALOG)
    svc = next(iter(CATALOG.services.values())).service
    muni = next(iter(CATALOG.municipalities))
    fields = Gauges.__struct_fields__
    new = Gauges(*range(1, len(fields) + 1))
    live.gauges_changed(GaugeDims(svc.agency, svc.code, muni, "mfc"), None, new)
    text = live.payload().decode()
    for f in FAMILIES:
        if f.kind == "gauge" and f.source is not None:
            assert _sample(text, f.full) == getattr(new, f.source), f.name


def test_a_histogram_is_exposed_from_its_source_field() -> None:
    live = LiveExposition(CATALOG)
    svc = next(iter(CATALOG.services.values())).service
    office = next(iter(CATALOG.offices.values()))
    cell = Dims(office.agency, svc.code, office.municipality, "mfc", "")
    for f in FAMILIES:
        if f.kind != "histogram":
            continue
        assert f.source is not None
        h = Hist([0] * len(BUCKETS[f.source]) + [3], 4000)
        live.add_rollup(cell, msgspec.structs.replace(Rollup(), **{f.source: h}))
        assert _sample(live.payload().decode(), f.full + "_count") == 3, f.name


# -- the dead letter ----------------------------------------------------------------------

#: as the processor wrote it before the record type existed (a dict, in this order)
PROCESSOR_BYTES = (
    b'{"reason":"unknown_service","field":"service","message":"no such service",'
    b'"problems":[{"field":"service","reason":"unknown_service","message":"no such service"}],'
    b'"agency":"","event_id":"","source":"processor","topic":"sp.events",'
    b'"partition":2,"offset":41,"received_at":"2026-11-02T10:00:00Z",'
    b'"received_day":"2026-11-02","error":"ZeroDivisionError","where":"engine.py:12"}'
)


def test_the_processor_dead_letter_keeps_its_bytes() -> None:
    value = dl.DeadLetter(
        reason="unknown_service",
        field="service",
        message="no such service",
        problems=[dl.DeadProblem("service", "unknown_service", "no such service")],
        agency="",
        event_id="",
        source="processor",
        topic="sp.events",
        partition=2,
        offset=41,
        received_at="2026-11-02T10:00:00Z",
        received_day="2026-11-02",
        error="ZeroDivisionError",
        where="engine.py:12",
    )
    assert dl.encode(value) == PROCESSOR_BYTES


def test_the_api_dead_letter_has_only_its_own_fields() -> None:
    value = dl.DeadLetter(
        reason="out_of_range",
        field="attrs.score",
        message="score must be 1..5",
        agency="minsoc",
        source="api",
        received_at="2026-11-02T10:00:00Z",
    )
    got = json.loads(dl.encode(value))
    assert got == {
        "reason": "out_of_range",
        "field": "attrs.score",
        "message": "score must be 1..5",
        "agency": "minsoc",
        "source": "api",
        "received_at": "2026-11-02T10:00:00Z",
    }


@pytest.mark.parametrize(
    ("raw", "want"),
    [
        (PROCESSOR_BYTES, ("unknown_service", "", "2026-11-02T10:00:00Z")),
        (b'{"reason":7,"agency":null,"extra":[1]}', (7, None, None)),
        (b"{}", (None, None, None)),
    ],
)
def test_a_reader_takes_what_it_counts_from_any_dead_letter(
    raw: bytes, want: tuple[object, ...]
) -> None:
    v = dl.decode_view(raw)
    assert (v.reason, v.agency, v.received_at) == want
