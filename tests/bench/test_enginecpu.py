"""The engine CPU benchmark: deterministic records, a digest that sees every output.

No timing is asserted (the machine is shared): what must hold is that two passes over
the same records write the same bytes, that the cached records are the records, and
that the digest changes when one output byte does.
"""

from __future__ import annotations

from pathlib import Path

from bench import enginecpu


def test_two_passes_write_the_same_bytes(tmp_path: Path) -> None:
    cache = str(tmp_path / "records.pkl")
    parts = enginecpu.records(600, cache)
    again = enginecpu.records(600, cache)  # from the cache this time
    assert sum(map(len, parts.values())) == 600
    assert [(r.key, r.value, r.timestamp) for r in parts[0]] == [
        (r.key, r.value, r.timestamp) for r in again[0]
    ]
    seconds, digest = enginecpu.one_pass(parts)
    assert seconds > 0
    assert enginecpu.one_pass(again)[1] == digest


def test_the_digest_sees_one_changed_record() -> None:
    parts = enginecpu.records(300)
    _, digest = enginecpu.one_pass(parts)
    rec = next(r for recs in parts.values() for r in recs)
    rec.timestamp += 3_600_000  # received an hour later: its delivery delay differs
    assert enginecpu.one_pass(parts)[1] != digest
