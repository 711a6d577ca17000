"""The security package's public names, and its promise to import nothing from the layers above."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

import phantom_spire.security as security

PACKAGE_DIR = Path(security.__file__).parent
MODULES = sorted(p.stem for p in PACKAGE_DIR.glob("*.py") if p.stem != "__init__")
FORBIDDEN = ("store", "api", "engine", "services", "cli")


def test_the_package_has_the_five_building_blocks_and_its_errors() -> None:
    assert MODULES == [
        "apikeys",
        "audit_chain",
        "classification",
        "errors",
        "permissions",
        "ratelimit",
    ]


@pytest.mark.parametrize("module_name", MODULES)
def test_every_name_in_a_modules_all_exists_and_is_re_exported(module_name: str) -> None:
    module = importlib.import_module(f"phantom_spire.security.{module_name}")
    for name in module.__all__:
        assert hasattr(module, name), f"{module_name}.__all__ lists missing {name!r}"
        assert name in security.__all__, f"{module_name}.{name} is not re-exported"
        assert getattr(security, name) is getattr(module, name)


def test_the_package_all_lists_only_names_from_its_modules() -> None:
    from_modules = {
        name
        for module_name in MODULES
        for name in importlib.import_module(f"phantom_spire.security.{module_name}").__all__
    }
    assert set(security.__all__) == from_modules
    assert len(security.__all__) == len(set(security.__all__))


@pytest.mark.parametrize("path", sorted(PACKAGE_DIR.glob("*.py")), ids=lambda p: p.name)
def test_no_module_imports_the_store_api_engine_services_or_cli(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    imported: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.append(node.module)

    forbidden = [
        name
        for name in imported
        if any(
            name == f"phantom_spire.{layer}" or name.startswith(f"phantom_spire.{layer}.")
            for layer in FORBIDDEN
        )
    ]
    assert forbidden == [], f"{path.name} imports {forbidden!r}"
    assert imported, "the walk found no imports at all, so it cannot be trusted"
