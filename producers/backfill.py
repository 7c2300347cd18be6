"""Import an NDJSON file of events into Kafka through the producer library.

Each line is validated on its own; an invalid line is reported with its line number,
field and reason, and the valid lines are sent. Lines may carry a raw ``citizen_id``,
which is pseudonymised like in :meth:`EventProducer.send`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import msgspec

from contract.events import Problem, Reason, Rejected
from producers.errors import DeliveryError
from producers.producer import EventProducer

logger = logging.getLogger(__name__)

#: Events sent between two waits for Kafka's acknowledgements.
FLUSH_EVERY = 10_000


@dataclass(frozen=True, slots=True)
class InvalidLine:
    """A line of the file that was not sent, with why."""

    line: int
    problems: tuple[Problem, ...]


@dataclass(slots=True)
class ImportReport:
    """The outcome of one import: counts and the invalid lines (1-based numbers)."""

    lines: int = 0
    sent: int = 0
    delivered: int = 0
    not_delivered: int = 0
    invalid: list[InvalidLine] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Every line was valid and every event was delivered."""
        return not self.invalid and self.not_delivered == 0


def import_ndjson(
    source: str | Path | IO[bytes],
    producer: EventProducer,
    *,
    flush_every: int = FLUSH_EVERY,
    on_progress: Callable[[ImportReport], None] | None = None,
) -> ImportReport:
    """Validate every line of an NDJSON file and send the valid events.

    Args:
        source: a path, or a binary stream (e.g. ``sys.stdin.buffer``).
        producer: an open :class:`EventProducer` (the caller owns its lifetime).
        flush_every: wait for acknowledgements after this many events, which bounds
            memory and surfaces a lost broker early.
        on_progress: called after each flush with the report so far.

    Returns:
        The report; ``not_delivered`` counts events Kafka did not acknowledge (they
        are logged, never silently lost). Blank lines are skipped.
    """
    report = ImportReport()
    if isinstance(source, (str, Path)):
        with Path(source).open("rb") as stream:
            _run(stream, producer, report, flush_every, on_progress)
    else:
        _run(source, producer, report, flush_every, on_progress)
    return report


def _run(
    stream: Iterable[bytes],
    producer: EventProducer,
    report: ImportReport,
    flush_every: int,
    on_progress: Callable[[ImportReport], None] | None,
) -> None:
    since_flush = 0
    for lineno, line in enumerate(stream, start=1):
        if not line.strip():
            continue
        report.lines += 1
        try:
            data = msgspec.json.decode(line)
        except msgspec.DecodeError as exc:
            report.invalid.append(
                InvalidLine(lineno, (Problem("", Reason.INVALID_JSON, f"malformed JSON: {exc}"),))
            )
            continue
        if not isinstance(data, dict):
            report.invalid.append(
                InvalidLine(
                    lineno, (Problem("", Reason.NOT_AN_OBJECT, "an event must be a JSON object"),)
                )
            )
            continue
        result = producer.prepare(data, index=lineno)
        if isinstance(result, Rejected):
            report.invalid.append(InvalidLine(lineno, result.problems))
            continue
        producer.send_valid(result)
        report.sent += 1
        since_flush += 1
        if since_flush >= flush_every:
            _flush(producer, report)
            since_flush = 0
            if on_progress is not None:
                on_progress(report)
    _flush(producer, report)
    if on_progress is not None:
        on_progress(report)


def _flush(producer: EventProducer, report: ImportReport) -> None:
    try:
        flushed = producer.flush()
    except DeliveryError as exc:
        if exc.report is None:
            raise
        flushed = exc.report
        logger.error("import: %s", exc)
    report.delivered += flushed.delivered
    report.not_delivered += len(flushed.failed)
