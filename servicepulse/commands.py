"""Registration of the component commands, each kept in a module of its own."""

from __future__ import annotations

import importlib

import typer

#: Modules of this package that define ``register(app)``; one per component command.
COMMAND_MODULES = (
    "stackcmd",  # up, down, status
    "processcmd",  # process
    "servecmd",  # serve, tokens
    "simulatecmd",  # simulate, import
    "reportcmd",  # report
    "dashboardscmd",  # dashboards
    "benchcmd",  # bench
    "configcmd",  # config
    "keyscmd",  # keys
    "logcmd",  # log, reports verify
)


def register(app: typer.Typer) -> None:
    """Attach every component command module."""
    for name in COMMAND_MODULES:
        importlib.import_module(f"servicepulse.{name}").register(app)
