"""ServicePulse processors."""
