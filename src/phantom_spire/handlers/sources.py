"""Where a feed comes from: a local path, or an HTTP(S) URL downloaded to a temporary file."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from phantom_spire.errors import HandlerError

__all__ = ["is_url", "open_source"]

CHUNK_BYTES = 1 << 16


def is_url(source: str) -> bool:
    return urlsplit(source).scheme in ("http", "https")


@contextlib.contextmanager
def open_source(source: str, *, max_bytes: int, timeout: float) -> Iterator[Path]:
    """Yield a local path holding the feed named by ``source``.

    A URL is streamed to a temporary file (never held in memory) and refused once it passes
    ``max_bytes``; the file is removed afterwards.
    """
    scheme = urlsplit(source).scheme
    if "://" in source and scheme not in ("http", "https"):
        raise HandlerError(
            f"source {source!r} uses the {scheme!r} scheme; supported: a local path, http, https",
            retryable=False,
        )
    if not is_url(source):
        path = Path(source).expanduser()
        if not path.is_file():
            reason = "is a directory" if path.is_dir() else "does not exist"
            raise HandlerError(f"source {source!r} {reason}", retryable=False)
        yield path
        return

    with tempfile.TemporaryDirectory(prefix="spire-fetch-") as folder:
        name = Path(urlsplit(source).path).name or "feed"
        target = Path(folder) / name
        _download(source, target, max_bytes=max_bytes, timeout=timeout)
        yield target


def _download(url: str, target: Path, *, max_bytes: int, timeout: float) -> None:
    try:
        with httpx.stream("GET", url, timeout=timeout, follow_redirects=True) as response:
            if response.status_code >= 400:
                retryable = response.status_code >= 500 or response.status_code == 429
                raise HandlerError(
                    f"fetching {url!r} returned HTTP {response.status_code}", retryable=retryable
                )
            written = 0
            with target.open("wb") as out:
                for chunk in response.iter_bytes(CHUNK_BYTES):
                    written += len(chunk)
                    if written > max_bytes:
                        raise HandlerError(
                            f"feed at {url!r} is larger than the limit of {max_bytes} bytes "
                            "(SPIRE_FETCH_MAX_BYTES)",
                            retryable=False,
                        )
                    out.write(chunk)
    except httpx.TransportError as exc:
        # Network trouble may pass: let the retry policy decide.
        raise HandlerError(f"could not fetch {url!r}: {type(exc).__name__}: {exc}") from exc
