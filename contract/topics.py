"""Kafka topic names and the configuration each topic is created with.

Topic names carry a configurable prefix (default ``servicepulse``) so tests can give
every test its own set of topics on one broker.
"""

from __future__ import annotations

from dataclasses import dataclass, field

EVENTS_PARTITIONS = 12
#: Largest record of ``<prefix>.days`` (one closed day of one agency and partition); the
#: processor's producer is configured to match.
DAYS_MAX_BYTES = 16 * 1024 * 1024
#: Largest record of ``<prefix>.readmodel``: one piece of the read model's checkpoint
#: (``api.checkpoint.PIECE_BYTES``, 4 MiB) and its id.
CHECKPOINT_MAX_BYTES = 4 * 1024 * 1024 + 64 * 1024
#: The aggregates topic holds the live window: the processor tombstones the keys of
#: every day it writes to ``<prefix>.days``. These let compaction drop them: a tombstone
#: is kept a day for readers that lag (``delete.retention.ms``), every record is
#: compacted within a day of being written however little of the log is dirty
#: (``max.compaction.lag.ms``), and the cleaner starts once a tenth is.
LIVE_WINDOW = {
    "delete.retention.ms": str(86_400_000),
    "max.compaction.lag.ms": str(86_400_000),
    "min.cleanable.dirty.ratio": "0.1",
}


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """A topic the project creates: name, partition count and topic-level configs."""

    name: str
    partitions: int
    configs: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Topics:
    """The names of the project's topics under one prefix."""

    prefix: str = "servicepulse"

    @property
    def events(self) -> str:
        """Raw usage events, keyed by case id, else journey id."""
        return f"{self.prefix}.events"

    @property
    def changelog(self) -> str:
        """Compacted per-partition processor state (journeys, cases, appeals, dedup)."""
        return f"{self.prefix}.changelog"

    @property
    def aggregates(self) -> str:
        """Compacted daily rollups and live gauges of the live window: the interface the
        API reads. Co-partitioned with the events topic (``.v2``: the layout of 2026-12)."""
        return f"{self.prefix}.aggregates.v2"

    @property
    def legacy_aggregates(self) -> str:
        """The aggregates topic of older versions (3 partitions, keys spread by hash);
        ``servicepulse kafka topics`` moves it to :attr:`aggregates`
        (``servicepulse.migrate``)."""
        return f"{self.prefix}.aggregates"

    @property
    def days(self) -> str:
        """Compacted final rollups of closed days (``d|`` records), kept for ever."""
        return f"{self.prefix}.days"

    @property
    def deadletter(self) -> str:
        """Events that reached Kafka and failed validation later, with the reason."""
        return f"{self.prefix}.deadletter"

    @property
    def ledger(self) -> str:
        """The hash-chained log of issued reports and closed days (append-only, kept for ever)."""
        return f"{self.prefix}.ledger"

    @property
    def readmodel(self) -> str:
        """Compacted checkpoint of the API's read model (``api.checkpoint``), one partition."""
        return f"{self.prefix}.readmodel"

    def specs(self, events_partitions: int = EVENTS_PARTITIONS) -> list[TopicSpec]:
        """Every topic with its partition count and configs.

        The changelog and the aggregates are co-partitioned with the events topic: the
        state of input partition *p* lives in partition *p* of both, so restoring one
        partition reads one partition of each (a group member that joins or takes over
        partitions reads only their state).

        The events topic stamps each record with the broker's append time
        (``LogAppendTime``): the processor takes the record timestamp as the receive
        time, which must be the receiver's clock, not the sender's; and time retention
        then counts from arrival. With the sender's time (``CreateTime``), a producer
        that stamps records with old ``occurred_at`` times (a backfill) would have them
        deleted by the broker's next retention check, every five minutes, whether
        processed or not.

        The read model's checkpoint is one partition (its pieces in order); small
        segments and an eager cleaner keep about two checkpoints on disk, each a
        few hundred MB at a year of regional traffic (docs/AGGREGATES.md, "The read
        model's checkpoint").

        The ledger is one partition (one order), never compacted and never deleted by
        time or size: removing any entry would break the chain that proves the rest.
        """
        compacted = {
            "cleanup.policy": "compact",
            "min.compaction.lag.ms": "60000",
            "segment.ms": "3600000",
        }
        return [
            TopicSpec(
                self.events,
                events_partitions,
                {"retention.ms": str(7 * 86_400_000), "message.timestamp.type": "LogAppendTime"},
            ),
            TopicSpec(self.changelog, events_partitions, dict(compacted)),
            TopicSpec(self.aggregates, events_partitions, {**compacted, **LIVE_WINDOW}),
            TopicSpec(
                self.days,
                3,
                {**compacted, "compression.type": "zstd", "max.message.bytes": str(DAYS_MAX_BYTES)},
            ),
            TopicSpec(self.deadletter, 3, {"retention.ms": str(30 * 86_400_000)}),
            TopicSpec(
                self.readmodel,
                1,
                {
                    **compacted,
                    "max.message.bytes": str(CHECKPOINT_MAX_BYTES),
                    "segment.bytes": str(64 * 1024 * 1024),
                    "min.cleanable.dirty.ratio": "0.3",
                    "delete.retention.ms": str(3_600_000),
                    "max.compaction.lag.ms": str(6 * 3_600_000),
                },
            ),
            TopicSpec(
                self.ledger,
                1,
                {"cleanup.policy": "delete", "retention.ms": "-1", "retention.bytes": "-1"},
            ),
        ]
