"""Fixtures of the processor's unit tests: the test catalog and a context over it."""

from __future__ import annotations

import pytest

from contract.catalog import Catalog
from contract.methodology import load_methodology
from processors.context import Context
from tests.fixtures.streams import CATALOG_PATH


@pytest.fixture(scope="session")
def catalog() -> Catalog:
    return Catalog.from_file(CATALOG_PATH)


@pytest.fixture(scope="session")
def ctx(catalog: Catalog) -> Context:
    return Context(catalog, load_methodology().standards)
