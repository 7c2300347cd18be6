"""Fixtures of the processor's tests: the test catalog, a context over it, and settings
of a processor on fresh topics of the test broker."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from contract.catalog import Catalog
from contract.methodology import load_methodology
from processors.context import Context
from processors.settings import ProcessorSettings
from tests.fixtures.kafka import TopicFactory
from tests.fixtures.streams import CATALOG_PATH
from tests.processors.brokerio import drop_topics, processor_settings


@pytest.fixture(scope="session")
def catalog() -> Catalog:
    return Catalog.from_file(CATALOG_PATH)


@pytest.fixture(scope="session")
def ctx(catalog: Catalog) -> Context:
    return Context(catalog, load_methodology().standards)


@pytest.fixture
def settings(topic_factory: TopicFactory) -> Iterator[ProcessorSettings]:
    """A processor's settings on fresh topics; the topics are deleted afterwards."""
    topics, common = topic_factory()
    s = processor_settings(topics, common)
    yield s
    drop_topics(s, topics)
