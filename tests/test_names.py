"""One name, one meaning: no two packages define a class or a type alias of the same name.

``Event``, ``Journey`` and ``GaugeCell`` each once named two different shapes in two
packages, and a reader who knew one was misled by the other. This walks the source
packages' syntax trees (nothing is imported) and fails on a public class or alias name
defined twice, unless it is one of the allowed kinds below. It belongs to no one package,
so it sits at the top of ``tests/``.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = (
    "contract",
    "kafkaport",
    "producers",
    "processors",
    "api",
    "dashboards",
    "servicepulse",
    "bench",
)

#: the Kafka port's adapters implement the Protocol of the same name: one concept
ADAPTERS = frozenset({"Admin", "Consumer", "Producer", "TransactionalProducer"})


def _definitions() -> dict[str, list[tuple[str, str]]]:
    """Public top-level class and alias names -> [(module, definition text)]."""
    found: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            for node in ast.parse(path.read_text(encoding="utf-8")).body:
                if isinstance(node, ast.ClassDef):
                    found[node.name].append((module, "class"))
                elif (
                    isinstance(node, ast.Assign)
                    and len(node.targets) == 1
                    and isinstance(node.targets[0], ast.Name)
                    and node.targets[0].id[:1].isupper()
                    and not node.targets[0].id.isupper()  # constants are not names of kinds
                ):
                    found[node.targets[0].id].append((module, ast.unparse(node.value)))
    return {k: v for k, v in found.items() if not k.startswith("_")}


def test_the_walk_sees_the_packages() -> None:
    names = _definitions()
    # the walk must reach every package, or the check below proves nothing
    assert {"Event", "Journey", "PartitionEngine", "ApiSettings", "Reconnect"} <= set(names)
    assert ("contract.events", "class") in names["Event"]


def test_no_name_means_two_things() -> None:
    twice = {}
    for name, where in _definitions().items():
        packages = {m.split(".")[0] for m, _ in where}
        if len(where) < 2 or (name in ADAPTERS and packages == {"kafkaport"}):
            continue
        # the same alias written twice in one package is one meaning (e.g. ``Records``)
        texts = {text for _, text in where}
        if len(texts) == 1 and texts != {"class"} and len(packages) == 1:
            continue
        twice[name] = [m for m, _ in where]
    assert not twice, f"one name, two definitions (rename one, see README 'Layout'): {twice}"
