"""ServicePulse producers."""
