"""A small HTTP client for the CLI: talks to a running engine's REST API."""

from __future__ import annotations

from typing import Any

import httpx

__all__ = ["DEFAULT_API_URL", "ApiClient", "ApiError"]

# `spire serve` listens here by default; the CLI reads SPIRE_API_URL to point elsewhere.
DEFAULT_API_URL = "http://127.0.0.1:8000"


class ApiError(Exception):
    """The engine refused a request or could not be reached; the message says which."""


class ApiClient:
    def __init__(self, base_url: str, *, api_key: str | None = None, timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        headers = {"X-API-Key": api_key} if api_key else {}
        self._http = httpx.Client(
            base_url=self.base_url + "/api/v1", timeout=timeout, headers=headers
        )

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.raw(method, path, **kwargs)
        return response.json() if response.content else None

    def raw(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """The response itself (for its headers); errors raise ApiError as in request()."""
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise ApiError(
                f"cannot reach the engine at {self.base_url} ({type(exc).__name__}); "
                "is `spire serve` running? (set SPIRE_API_URL to use another address)"
            ) from exc
        if response.status_code >= 400:
            raise ApiError(_describe_problem(response))
        return response

    def get(self, path: str, **params: Any) -> Any:
        clean = {k: v for k, v in params.items() if v is not None}
        return self.request("GET", path, params=clean)

    def post(self, path: str, body: Any = None, **params: Any) -> Any:
        clean = {k: v for k, v in params.items() if v is not None}
        return self.request("POST", path, json=body, params=clean)


def _describe_problem(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return f"HTTP {response.status_code}: {response.text[:500]}"
    detail = body.get("detail") or body.get("title") or body
    if response.status_code == 401:
        detail = f"{detail}; export SPIRE_API_KEY=<your key> (`spire serve` prints the first one)"
    return f"HTTP {response.status_code}: {detail}"
