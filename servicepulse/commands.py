"""Registration of the component commands, each kept in a module of its own."""

from __future__ import annotations

import importlib

import typer

#: Modules of this package that define ``register(app)``; one per component command.
COMMAND_MODULES = (
    "stackcmd",  # up, down, status
    "processcmd",  # process
    "servecmd",  # serve, tokens
    "simulatecmd",  # simulate
    "reportcmd",  # report
    "dashboardscmd",  # dashboards
    "benchcmd",  # bench
)


def register(app: typer.Typer) -> None:
    """Attach every component command module that is present."""
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"servicepulse.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"servicepulse.{name}":
                raise
            continue
        module.register(app)
