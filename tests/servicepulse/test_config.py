"""Every setting is documented: .env.example and the README list each variable."""

from __future__ import annotations

from pathlib import Path

from servicepulse.configcmd import env_example, variables

ROOT = Path(__file__).resolve().parents[2]


def test_env_example_is_generated_from_the_code() -> None:
    assert (ROOT / ".env.example").read_text() == env_example(), (
        "regenerate: servicepulse config --env-example > .env.example"
    )


def test_every_variable_is_in_env_example_with_its_default() -> None:
    text = env_example()
    rows = variables()
    assert len(rows) > 20
    for _, var, default, _ in rows:
        assert f"{var}=" in text, f"{var} missing from .env.example"
        if default and not default.startswith("("):
            assert f"{var}={default}\n" in text, f"{var} default differs from the code"


def test_every_variable_is_in_the_readme_table() -> None:
    readme = (ROOT / "README.md").read_text()
    missing = [var for _, var, _, _ in variables() if f"`{var}`" not in readme]
    assert not missing, f"README configuration table lacks {missing}"
