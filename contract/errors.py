"""The base error of ServicePulse and the errors of the contract package."""

from __future__ import annotations


class ServicePulseError(Exception):
    """Base of every error ServicePulse raises on purpose."""


class CatalogError(ServicePulseError):
    """The service catalog file is missing, malformed or inconsistent.

    The message names the file and the path inside it (``services[3].deadline``).
    """


class ConfigError(ServicePulseError):
    """A setting or a configuration file is invalid; the message says which and why."""


class BusError(ServicePulseError):
    """Kafka could not be reached or refused an operation; wraps the client's error."""
