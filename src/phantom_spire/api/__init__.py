"""The REST API under /api/v1."""

from __future__ import annotations

from phantom_spire.api.app import create_app

__all__ = ["create_app"]
