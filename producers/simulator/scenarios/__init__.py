"""Example scenarios of the traffic simulator (YAML files beside this one)."""
