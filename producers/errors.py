"""Errors of the producer library and the traffic simulator."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from contract.errors import ServicePulseError
from contract.events import Rejected

if TYPE_CHECKING:
    from producers.producer import DeliveryReport


class ProducerError(ServicePulseError):
    """Base of the errors raised by the producer library."""


class InvalidEventError(ProducerError):
    """An event failed validation against the contract or the catalog; nothing was sent.

    Attributes:
        rejected: the event's position, id (when it had a readable one) and problems,
            each with ``field``, ``reason`` and ``message``.
    """

    def __init__(self, rejected: Rejected) -> None:
        self.rejected = rejected
        detail = "; ".join(
            f"{p.field or '<event>'}: {p.reason.value}: {p.message}" for p in rejected.problems
        )
        ident = f" {rejected.event_id}" if rejected.event_id else ""
        super().__init__(f"invalid event{ident} (not sent): {detail}")

    @property
    def problems(self) -> Sequence[object]:
        """The problems found (``contract.events.Problem``)."""
        return self.rejected.problems


class PseudonymError(ProducerError):
    """A raw citizen identifier could not be normalised (the value is never echoed)."""


class DeliveryError(ProducerError):
    """Kafka did not acknowledge some events: they were not delivered.

    Attributes:
        report: per-event results of the flush that failed (``None`` when the event
            could not even be handed to the client).
        failed: how many events were not delivered.
    """

    def __init__(self, message: str, failed: int, report: DeliveryReport | None = None) -> None:
        super().__init__(message)
        self.failed = failed
        self.report = report


class ScenarioError(ServicePulseError):
    """A simulator scenario file is missing, malformed or names codes the catalog lacks."""


class SinkError(ServicePulseError):
    """A simulator target (Kafka, HTTP API, file) refused or lost events."""
