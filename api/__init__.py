"""ServicePulse api."""
