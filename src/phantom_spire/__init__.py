"""Phantom Spire: a task-orchestration engine for cyber-threat-intelligence teams."""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
