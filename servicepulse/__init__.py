"""ServicePulse command line, local stack and wiring (the composition root)."""

__version__ = "0.1.0"
