"""HTTP reputation providers shaped like VirusTotal (API v3) and AbuseIPDB (API v2).

Each is configured by a base URL and an API key. The key travels only in a request header; it
is never logged, never part of an error message and scrubbed from anything a service echoes
back, so results and task logs cannot leak it.

How responses map to outcomes: 2xx is an answer, 404 is "unknown" (None), 429 raises
`ProviderRateLimited` with the ``Retry-After`` the service sent (seconds or an HTTP date;
60 s when absent) so the enricher backs the whole provider off, 5xx and other failures raise
`ProviderError`. Redirects are not followed: a redirect would carry the key to another host.
"""

from __future__ import annotations

import asyncio
import base64
import email.utils
import functools
import logging
import math
import ssl
import time
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Literal
from urllib.parse import quote, urlsplit

import certifi
import httpx
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from phantom_spire.cti.enrichment.base import (
    EnrichmentResult,
    ProviderError,
    ProviderRateLimited,
    Verdict,
)
from phantom_spire.cti.enrichment.enricher import (
    MALICIOUS_AT,
    SUSPICIOUS_AT,
    ProviderPolicy,
    ProviderSpec,
)
from phantom_spire.cti.indicators import Indicator
from phantom_spire.security.ratelimit import RateLimit

__all__ = [
    "AbuseIPDBProvider",
    "HttpProvider",
    "ProviderConfig",
    "VirusTotalProvider",
    "build_provider",
    "parse_retry_after",
]

logger = logging.getLogger(__name__)

DEFAULT_RETRY_AFTER = 60.0
"""Back-off when a 429 carries no usable ``Retry-After``."""
MAX_RETRY_AFTER = 86_400.0
"""A service asking for more than a day is treated as asking for a day."""


def parse_retry_after(value: str | None, now: float, default: float = DEFAULT_RETRY_AFTER) -> float:
    """Seconds to wait from a ``Retry-After`` header (delay seconds or an HTTP date).

    Args:
        value: The header, or None.
        now: Current wall-clock epoch seconds (for the date form).
        default: Used when the header is absent or unreadable.
    """
    if not value:
        return default
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError):
            return default
        if when is None:
            return default
        seconds = when.timestamp() - now
    if not math.isfinite(seconds):
        return default
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def _scrub(value: Any, secret: str) -> Any:
    """``value`` with every occurrence of ``secret`` in its strings replaced."""
    if not secret:
        return value
    if isinstance(value, str):
        return value.replace(secret, "[redacted]")
    if isinstance(value, Mapping):
        return {_scrub(k, secret): _scrub(v, secret) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub(v, secret) for v in value]
    return value


@functools.cache
def _tls_context() -> ssl.SSLContext:
    # Loading the CA bundle takes a few hundred milliseconds: done once per process, not
    # inside a lookup's timeout (httpx would do it for every new client).
    return ssl.create_default_context(cafile=certifi.where())


def _verdict_for(score: float) -> Verdict:
    if score >= MALICIOUS_AT:
        return "malicious"
    if score >= SUSPICIOUS_AT:
        return "suspicious"
    return "benign"


class HttpProvider:
    """Common HTTP handling of reputation services: one GET per lookup, status mapping.

    Subclasses set ``types`` and implement `request` (path and query of a lookup) and
    `parse` (response body to result).

    Args:
        name: Provider name.
        base_url: ``http(s)://host[:port][/prefix]`` of the service.
        api_key: The service's key, sent only in the request header.
        transport: An httpx transport (tests pass ``httpx.MockTransport``).
        http_timeout: httpx's own timeout, a safety net behind the enricher's per-lookup one.
        wall_clock: Epoch seconds for ``fetched_at`` and HTTP-date ``Retry-After``.
    """

    types: ClassVar[frozenset[str]] = frozenset()
    key_header: ClassVar[str] = ""

    def __init__(
        self,
        name: str,
        base_url: str,
        api_key: str | SecretStr,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        http_timeout: float = 30.0,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(
                f"base URL of provider {name!r} must be http(s)://host, got {base_url!r}"
            )
        if parts.username or parts.password or parts.query or parts.fragment:
            raise ValueError(
                f"base URL of provider {name!r} must not carry credentials, a query or a "
                f"fragment, got {parts._replace(netloc=parts.hostname or '').geturl()!r}"
            )
        self.name = name
        self.base_url = base_url.rstrip("/")
        self._key = api_key if isinstance(api_key, SecretStr) else SecretStr(api_key)
        self._transport = transport
        self._http_timeout = http_timeout
        self._wall_clock = wall_clock
        self._clients: dict[asyncio.AbstractEventLoop, httpx.AsyncClient] = {}
        self._verify = _tls_context()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, base_url={self.base_url!r})"

    def _client(self) -> httpx.AsyncClient:
        # An httpx client's connections belong to the event loop that opened them.
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            client = self._clients[loop] = httpx.AsyncClient(
                base_url=self.base_url,
                transport=self._transport,
                timeout=self._http_timeout,
                follow_redirects=False,
                verify=self._verify,
                headers={"Accept": "application/json", "User-Agent": "phantom-spire"},
            )
        return client

    async def aclose(self) -> None:
        """Close the HTTP client of the running event loop."""
        client = self._clients.pop(asyncio.get_running_loop(), None)
        if client is not None:
            await client.aclose()

    def request(self, indicator: Indicator) -> tuple[str, dict[str, str]]:
        """Path (below the base URL) and query parameters of the lookup."""
        raise NotImplementedError

    def parse(self, indicator: Indicator, body: Mapping[str, Any]) -> EnrichmentResult | None:
        """Turn a 2xx JSON body into a result (None when it says nothing)."""
        raise NotImplementedError

    async def lookup(self, indicator: Indicator) -> EnrichmentResult | None:
        """GET the service's record of ``indicator``; see the module docstring for statuses."""
        if indicator.type not in self.types:
            raise ProviderError(f"{self.name!r} cannot look up {indicator.type!r} values")
        path, params = self.request(indicator)
        secret = self._key.get_secret_value()
        try:
            response = await self._client().get(
                path, params=params or None, headers={self.key_header: secret}
            )
        except httpx.TimeoutException:
            raise TimeoutError(f"{self.name!r} did not answer for {indicator.value!r}") from None
        except httpx.HTTPError as exc:
            # `from None`: the request object on the chained exception carries the key header.
            raise ProviderError(
                _scrub(
                    f"{self.name!r} request for {indicator.value!r} failed: "
                    f"{type(exc).__name__}: {exc}",
                    secret,
                )
            ) from None
        status = response.status_code
        if status == 404:
            return None
        if status == 429:
            wait = parse_retry_after(response.headers.get("Retry-After"), self._wall_clock())
            raise ProviderRateLimited(
                f"{self.name!r} answered HTTP 429 (quota exceeded); retry after {wait:g}s", wait
            )
        if status in (401, 403):
            raise ProviderError(f"{self.name!r} refused the API key (HTTP {status})")
        if status >= 500:
            raise ProviderError(f"{self.name!r} failed with HTTP {status} for {indicator.value!r}")
        if not 200 <= status < 300:
            raise ProviderError(
                f"{self.name!r} answered HTTP {status} for {indicator.value!r}, expected 200 or 404"
            )
        try:
            body = response.json()
        except ValueError:
            raise ProviderError(
                f"{self.name!r} answered HTTP {status} for {indicator.value!r} with a body "
                "that is not JSON"
            ) from None
        if not isinstance(body, Mapping):
            raise ProviderError(
                f"{self.name!r} answered a JSON {type(body).__name__} for {indicator.value!r}, "
                "expected an object"
            )
        result = self.parse(indicator, _scrub(body, secret))
        return result


class VirusTotalProvider(HttpProvider):
    """A VirusTotal-v3-like service: ``GET {base}/api/v3/{collection}/{id}``, key in ``x-apikey``.

    Collections: ``ip_addresses``, ``domains``, ``files`` (md5, sha1, sha256) and ``urls``
    (id = unpadded URL-safe base64 of the URL). The score is the share of engines calling it
    malicious (suspicious counting half), at least 70 once ``malicious_engines`` engines say
    malicious and at least 30 once any engine flags it.
    """

    types: ClassVar[frozenset[str]] = frozenset(
        {"ipv4", "ipv6", "domain", "md5", "sha1", "sha256", "url"}
    )
    key_header: ClassVar[str] = "x-apikey"
    _KEEP: ClassVar[tuple[str, ...]] = (
        "last_analysis_stats",
        "last_analysis_date",
        "reputation",
        "tags",
        "country",
        "asn",
        "as_owner",
        "network",
        "categories",
        "meaningful_name",
        "type_description",
    )

    def __init__(self, *args: Any, malicious_engines: int = 3, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.malicious_engines = malicious_engines

    def request(self, indicator: Indicator) -> tuple[str, dict[str, str]]:
        """Path of the indicator's object; no query."""
        kind, value = indicator.type, indicator.value
        if kind in ("ipv4", "ipv6"):
            return f"/api/v3/ip_addresses/{quote(value, safe=':')}", {}
        if kind == "domain":
            return f"/api/v3/domains/{quote(value, safe='')}", {}
        if kind == "url":
            url_id = base64.urlsafe_b64encode(value.encode()).decode().rstrip("=")
            return f"/api/v3/urls/{url_id}", {}
        return f"/api/v3/files/{quote(value, safe='')}", {}

    def parse(self, indicator: Indicator, body: Mapping[str, Any]) -> EnrichmentResult | None:
        """Score from ``data.attributes.last_analysis_stats``."""
        data = body.get("data")
        attributes = data.get("attributes") if isinstance(data, Mapping) else None
        if not isinstance(attributes, Mapping):
            raise ProviderError(
                f"{self.name!r} answer for {indicator.value!r} lacks data.attributes"
            )
        stats = attributes.get("last_analysis_stats") or {}
        counts = {
            k: int(v) for k, v in stats.items() if isinstance(v, int) and not isinstance(v, bool)
        }
        raw = {k: attributes[k] for k in self._KEEP if k in attributes}
        tags = tuple(str(t) for t in attributes.get("tags") or () if isinstance(t, str))
        engines = sum(counts.values())
        malicious, suspicious = counts.get("malicious", 0), counts.get("suspicious", 0)
        now = self._wall_clock()
        if engines == 0:
            return EnrichmentResult(self.name, "unknown", None, tags, raw, fetched_at=now)
        score = round(100 * (malicious + 0.5 * suspicious) / engines, 1)
        verdict: Verdict
        if malicious >= self.malicious_engines:
            verdict, score = "malicious", max(score, MALICIOUS_AT)
        elif malicious or suspicious:
            verdict, score = "suspicious", min(max(score, SUSPICIOUS_AT), MALICIOUS_AT - 1)
        else:
            verdict = "benign"
        return EnrichmentResult(self.name, verdict, score, tags, raw, fetched_at=now)


class AbuseIPDBProvider(HttpProvider):
    """An AbuseIPDB-v2-like service: ``GET {base}/api/v2/check?ipAddress=...``, key in ``Key``.

    The score is ``abuseConfidenceScore``; an address the service whitelists is benign.
    """

    types: ClassVar[frozenset[str]] = frozenset({"ipv4", "ipv6"})
    key_header: ClassVar[str] = "Key"
    _KEEP: ClassVar[tuple[str, ...]] = (
        "abuseConfidenceScore",
        "totalReports",
        "numDistinctUsers",
        "lastReportedAt",
        "countryCode",
        "usageType",
        "isp",
        "domain",
        "isWhitelisted",
        "isTor",
    )

    def __init__(self, *args: Any, max_age_days: int = 90, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.max_age_days = max_age_days

    def request(self, indicator: Indicator) -> tuple[str, dict[str, str]]:
        """``/api/v2/check`` with the address and report age."""
        return "/api/v2/check", {
            "ipAddress": indicator.value,
            "maxAgeInDays": str(self.max_age_days),
        }

    def parse(self, indicator: Indicator, body: Mapping[str, Any]) -> EnrichmentResult | None:
        """Score from ``data.abuseConfidenceScore``."""
        data = body.get("data")
        score = data.get("abuseConfidenceScore") if isinstance(data, Mapping) else None
        if isinstance(score, bool) or not isinstance(score, int | float) or not 0 <= score <= 100:
            raise ProviderError(
                f"{self.name!r} answer for {indicator.value!r} lacks a data.abuseConfidenceScore "
                f"between 0 and 100 (got {score!r})"
            )
        assert isinstance(data, Mapping)
        raw = {k: data[k] for k in self._KEEP if k in data}
        tags = []
        if data.get("isTor"):
            tags.append("tor")
        if data.get("isWhitelisted"):
            tags.append("whitelisted")
        verdict = "benign" if data.get("isWhitelisted") else _verdict_for(float(score))
        return EnrichmentResult(
            self.name, verdict, float(score), tuple(tags), raw, fetched_at=self._wall_clock()
        )


_KINDS: dict[str, type[HttpProvider]] = {
    "virustotal": VirusTotalProvider,
    "abuseipdb": AbuseIPDBProvider,
}


class ProviderConfig(BaseModel):
    """One configured HTTP provider (an entry of ``SPIRE_ENRICHMENT_PROVIDERS``).

    Example (JSON)::

        {"name": "vt", "kind": "virustotal", "url": "http://127.0.0.1:8900",
         "apiKey": "...", "rateLimit": "4/minute", "timeoutSeconds": 10}
    """

    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    kind: Literal["virustotal", "abuseipdb"]
    url: str = Field(description="Base URL, http(s)://host[:port][/prefix].")
    api_key: SecretStr = Field(alias="apiKey")
    rate_limit: str | None = Field(
        default=None, alias="rateLimit", description="The service's quota, e.g. '4/minute'."
    )
    timeout_seconds: float = Field(default=10.0, gt=0, le=300, alias="timeoutSeconds")
    cache_ttl_seconds: float = Field(default=3600.0, ge=0, alias="cacheTtlSeconds")
    concurrency: int = Field(default=4, ge=1, le=100)
    weight: float = Field(default=1.0, ge=0)
    max_age_days: int = Field(default=90, ge=1, le=365, alias="maxAgeDays")
    malicious_engines: int = Field(default=3, ge=1, alias="maliciousEngines")

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"must be an http(s)://host URL, got {value!r}")
        if parts.username or parts.password or parts.query:
            raise ValueError("must not carry credentials or a query; give the key as apiKey")
        return value

    @field_validator("rate_limit")
    @classmethod
    def _check_rate(cls, value: str | None) -> str | None:
        if value is not None:
            RateLimit.parse(value)
        return value

    def policy(self) -> ProviderPolicy:
        """The enricher policy this configuration asks for."""
        return ProviderPolicy(
            timeout=self.timeout_seconds,
            cache_ttl=self.cache_ttl_seconds,
            rate_limit=RateLimit.parse(self.rate_limit) if self.rate_limit else None,
            concurrency=self.concurrency,
            weight=self.weight,
        )


def build_provider(
    config: ProviderConfig,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    wall_clock: Callable[[], float] = time.time,
) -> ProviderSpec:
    """The provider a configuration describes, with its policy."""
    cls = _KINDS[config.kind]
    extra: dict[str, Any] = (
        {"max_age_days": config.max_age_days}
        if cls is AbuseIPDBProvider
        else {"malicious_engines": config.malicious_engines}
    )
    provider = cls(
        config.name,
        config.url,
        config.api_key,
        transport=transport,
        # httpx gives up a little after the enricher would, so the enricher reports the timeout.
        http_timeout=config.timeout_seconds + 5,
        wall_clock=wall_clock,
        **extra,
    )
    return ProviderSpec(provider, config.policy())
