"""``servicepulse config``: every environment variable of every component, with defaults."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

import typer
from pydantic import TypeAdapter
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings

from api.settings import ApiSettings
from contract.settings import CommonSettings
from processors.settings import ProcessorSettings
from producers.settings import ProducerSettings

#: The settings class of each component, in the order the README lists them.
COMPONENTS: dict[str, type[BaseSettings]] = {
    "all": CommonSettings,
    "producer": ProducerSettings,
    "processor": ProcessorSettings,
    "api": ApiSettings,
}


def _default(info: FieldInfo) -> str:
    if info.is_required():
        return "(required)"
    if info.default_factory is not None:
        return "(computed)"
    value: Any = info.get_default()
    if value is None:
        return ""
    if isinstance(value, timedelta):
        return str(TypeAdapter(timedelta).dump_python(value, mode="json"))
    if hasattr(value, "get_secret_value"):
        return "(secret)"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def variables() -> list[tuple[str, str, str, str]]:
    """(component, variable, default, description) of every setting, each once."""
    seen: set[str] = set()
    rows = []
    for component, cls in COMPONENTS.items():
        prefix = str(cls.model_config.get("env_prefix", ""))
        for name, info in cls.model_fields.items():
            var = (prefix + name).upper()
            if var in seen:
                continue
            seen.add(var)
            rows.append((component, var, _default(info), info.description or ""))
    return rows


def config(
    markdown: Annotated[bool, typer.Option("--markdown", help="as a Markdown table")] = False,
) -> None:
    """List every SERVICEPULSE_* environment variable with its default and meaning."""
    rows = variables()
    if markdown:
        print("| variable | component | default | meaning |")
        print("|---|---|---|---|")
        for comp, var, default, desc in rows:
            print(
                f"| `{var}` | {comp} | `{default}` | {desc} |"
                if default
                else f"| `{var}` | {comp} | | {desc} |"
            )
        return
    for comp, var, default, desc in rows:
        print(f"{var}={default}".ljust(64) + f" # {comp}: {desc}")


def register(app: typer.Typer) -> None:
    """Attach ``config``."""
    app.command("config")(config)
