"""The README renders the permission table from the code's one table."""

from __future__ import annotations

from pathlib import Path

from phantom_spire.security import permission_table_markdown

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_shows_the_permission_table_the_code_enforces() -> None:
    assert permission_table_markdown().strip() in README.read_text(encoding="utf-8")
