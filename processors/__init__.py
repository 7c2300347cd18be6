"""The ServicePulse stream processor (``servicepulse process``).

``engine`` is the pure per-partition core (``journeys``, ``appeals``, ``archive``,
``dedup``, ``watermark``, ``rollups``, ``state``, ``context``); ``runner`` is the Kafka
loop around it (transactions, restore, rebalances); ``metrics`` its operational metrics
(``bench.sizing`` measures state per open journey). The record format it writes is
``contract.aggregates`` (docs/AGGREGATES.md); how to run it is docs/PROCESSOR.md.
"""
