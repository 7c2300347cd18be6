"""What crosses a boundary in ServicePulse: events, catalog, topics, metrics, aggregates.

This package is the root of the import graph: it imports nothing else of ours.
"""
