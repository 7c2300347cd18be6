"""The traffic simulator: realistic, reproducible events of a region from its catalog.

Python API::

    from producers.simulator import generate
    for event in generate(load_catalog(), seed=1, start=start, end=end, rate=20):
        ...

The command line is ``servicepulse simulate`` (see ``docs/SIMULATOR.md``).
"""

from producers.simulator.engine import Simulation, generate
from producers.simulator.scenario import Scenario, load_scenario

__all__ = ["Scenario", "Simulation", "generate", "load_scenario"]
