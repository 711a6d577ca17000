"""Fixtures for the CTI library tests: the shared corpus/cases folder and the sample feeds."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[3]
SHARED_DIR = REPO_ROOT / ".." / "shared"
SAMPLE_FEEDS = REPO_ROOT / "tests" / "data" / "feeds"


def require_shared(*parts: str) -> Path:
    """Return a path inside ../shared, skipping the test when it is absent outside CI.

    Under CI (the ``CI`` environment variable set) a missing shared folder is a failure: CI is
    promised a copy of shared/, so its absence means the run checks nothing.
    """
    path = SHARED_DIR.joinpath(*parts).resolve()
    if not path.exists():
        message = f"shared test data not found at {str(path)!r} (expected beside the repository)"
        if os.environ.get("CI"):
            pytest.fail(f"{message}; CI is set, so this must not be skipped")
        pytest.skip(message)
    return path


@pytest.fixture
def corpus() -> Path:
    """The shared corpus of real CTI files."""
    return require_shared("corpus")


@pytest.fixture
def ioc_cases() -> Path:
    """The shared IOC handler cases (classify, extract, fang)."""
    return require_shared("cases", "ioc")


@pytest.fixture
def sample_feeds() -> Path:
    """The small sample feeds kept in this repository."""
    return SAMPLE_FEEDS
