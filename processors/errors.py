"""Errors of the stream processor."""

from __future__ import annotations

from contract.errors import ServicePulseError


class ProcessorError(ServicePulseError):
    """Base of the processor's errors."""


class RestoreError(ProcessorError):
    """State could not be restored from the changelog and aggregates topics in time.

    The message names the topic partitions still behind and their offsets.
    """


class SessionError(ProcessorError):
    """The Kafka session failed (transaction aborted, fenced, rebalanced mid-commit).

    The runner discards in-memory state, closes its clients and starts a new session
    that restores from the changelog: the exactly-once path for every failure.
    """


class StateError(ProcessorError):
    """A changelog record could not be decoded; names the key and what is wrong."""
