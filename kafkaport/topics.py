"""Creating the project's topics and keeping their configs as the project sets them."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

from tenacity import Retrying, retry_if_result, stop_after_delay, wait_fixed

from contract.topics import TopicSpec
from kafkaport.ports import Admin, Kafka
from kafkaport.types import KafkaError

logger = logging.getLogger(__name__)

#: the admin calls' timeout
TIMEOUT_S = 30.0


def ensure_topics(kafka: Kafka, specs: Iterable[TopicSpec]) -> list[str]:
    """Create the topics that do not exist yet; returns the names created.

    Existing topics are left as they are (their partition count is not changed: that
    would move keys between partitions and split state).
    """
    admin = kafka.admin()
    try:
        existing = admin.list_topics(TIMEOUT_S)
        new = [s for s in specs if s.name not in existing]
        if new:
            replication = 1 if admin.broker_count(TIMEOUT_S) < 3 else 3
            admin.create_topics(
                [(s.name, s.partitions, s.configs) for s in new], replication, TIMEOUT_S
            )
            logger.info("created topics %s", ", ".join(s.name for s in new))
        return [s.name for s in new]
    finally:
        admin.close()


@dataclass(frozen=True, slots=True)
class ConfigDrift:
    """A config of an existing topic that differs from what the project creates it with."""

    topic: str
    key: str
    actual: str | None
    wanted: str

    def __str__(self) -> str:
        return f"{self.topic}: {self.key} is {self.actual}, the project sets {self.wanted}"


def topic_config_drift(kafka: Kafka, specs: Iterable[TopicSpec]) -> list[ConfigDrift]:
    """The configs of existing topics that differ from their specs.

    :func:`ensure_topics` never alters a topic that exists, so a topic created by an
    older version keeps its old configs; callers warn with these and
    :func:`align_topic_configs` sets them.
    """
    with_configs = [s for s in specs if s.configs]
    admin = kafka.admin()
    try:
        existing = admin.list_topics(TIMEOUT_S)
        wanted = [s for s in with_configs if s.name in existing]
        found = admin.topic_configs([s.name for s in wanted], TIMEOUT_S)
    finally:
        admin.close()
    out = []
    for s in wanted:
        have = found.get(s.name, {})
        for key, value in s.configs.items():
            actual = have.get(key)
            if actual != value:
                out.append(ConfigDrift(s.name, key, actual, value))
    return out


def align_topic_configs(kafka: Kafka, drift: Iterable[ConfigDrift]) -> None:
    """Set the drifted configs to the project's values (incremental: other configs stay)."""
    by_topic: dict[str, dict[str, str]] = {}
    for d in drift:
        by_topic.setdefault(d.topic, {})[d.key] = d.wanted
    if not by_topic:
        return
    admin = kafka.admin()
    try:
        admin.alter_topic_configs(by_topic, TIMEOUT_S)
        # The controller accepts the change before every broker applies it (KRaft
        # spreads it through the metadata log): wait until a describe shows it, so
        # a check right after --fix does not report the old value.
        retrying = Retrying(
            stop=stop_after_delay(TIMEOUT_S),
            wait=wait_fixed(0.2),
            retry=retry_if_result(bool),
            retry_error_callback=lambda state: state.outcome.result() if state.outcome else None,
        )
        left = retrying(_not_yet_applied, admin, by_topic)
    finally:
        admin.close()
    if left:
        raise KafkaError(
            f"the broker took the new topic configs but did not show them within "
            f"{TIMEOUT_S:.0f} s ({', '.join(left)}); run `servicepulse kafka topics` "
            "again to see whether they were applied"
        )


def _not_yet_applied(admin: Admin, wanted: dict[str, dict[str, str]]) -> list[str]:
    """The ``topic key`` pairs whose described value is not yet the wanted one."""
    found = admin.topic_configs(list(wanted), TIMEOUT_S)
    return [
        f"{topic} {key}"
        for topic, cfg in wanted.items()
        for key, value in cfg.items()
        if found.get(topic, {}).get(key) != value
    ]


def delete_topics(kafka: Kafka, names: Iterable[str]) -> None:
    """Delete topics, ignoring those that do not exist (tests clean up with this)."""
    admin = kafka.admin()
    try:
        admin.delete_topics(list(names), TIMEOUT_S)
    finally:
        admin.close()
