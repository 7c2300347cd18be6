"""ServicePulse dashboards."""
