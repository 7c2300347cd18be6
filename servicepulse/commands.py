"""Registration of the component commands, each kept in a module of its own.

The modules are imported here by name, not looked up from strings, so import-linter
and mypy see every command module. Each keeps its top level light (typer, rich and
``contract``): what a command needs is imported inside it, so ``servicepulse --help``
does not load FastAPI, Kafka clients or the benchmarks.
"""

from __future__ import annotations

import typer

from servicepulse import (
    benchcmd,
    configcmd,
    dashboardscmd,
    keyscmd,
    logcmd,
    processcmd,
    reportcmd,
    servecmd,
    simulatecmd,
    stackcmd,
)

#: One module per component command, in the order ``--help`` lists them.
COMMAND_MODULES = (
    stackcmd,  # up, down, status
    processcmd,  # process
    servecmd,  # serve, tokens
    simulatecmd,  # simulate, import
    reportcmd,  # report
    dashboardscmd,  # dashboards
    benchcmd,  # bench
    configcmd,  # config
    keyscmd,  # keys
    logcmd,  # log, reports verify
)


def register(app: typer.Typer) -> None:
    """Attach every component command module."""
    for module in COMMAND_MODULES:
        module.register(app)
