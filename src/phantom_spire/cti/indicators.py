"""Indicators of compromise: refang, classify, validate and normalise single values.

Public API::

    refang(text) -> str
    classify(value) -> str | None
    parse_indicator(raw, hint=None) -> Indicator        # raises InvalidIndicator
    Indicator(type, value, tags)

Type names are those of `TYPES`. Canonical values follow the conventions of the shared IOC cases
(see ``normalize``); ``Indicator.value`` is the canonical form, so two indicators with the same
``(type, value)`` are the same indicator (the dedup key).
"""

from __future__ import annotations

import ipaddress
import logging
import re
from dataclasses import dataclass

from phantom_spire.cti import normalize as _n
from phantom_spire.cti.errors import InvalidIndicator
from phantom_spire.cti.refang import refang

__all__ = [
    "TYPES",
    "Indicator",
    "InvalidIndicator",
    "classify",
    "dedup_key",
    "extract",
    "hint_types",
    "indicator_tags",
    "parse_indicator",
    "refang",
]

logger = logging.getLogger(__name__)

TYPES = _n.TYPES

_MAX_VALUE_LENGTH = 8192

_IP_TYPES = ("ipv4", "ipv6", "cidr")
_HASH_TYPES = ("md5", "sha1", "sha256", "sha512", "ssdeep")

# A feed's own type label -> the indicator types it may hold, most likely first. Keys are
# lower-case with runs of spaces/underscores turned into "-". Sources: STIX 2 SCO type names,
# MISP attribute types, and the column/type labels seen in CSV and JSON feeds (Unit 42,
# abuse.ch, AlienVault OTX).
_HINTS: dict[str, tuple[str, ...]] = {
    # STIX 2 cyber-observable types
    "ipv4-addr": ("ipv4", "cidr"),
    "ipv6-addr": ("ipv6", "cidr"),
    "domain-name": ("domain",),
    "url": ("url",),
    "email-addr": ("email",),
    "mac-addr": ("mac",),
    "windows-registry-key": ("registry_key",),
    "autonomous-system": ("asn",),
    # MISP attribute types and common labels
    "ip": _IP_TYPES,
    "ip-dst": _IP_TYPES,
    "ip-src": _IP_TYPES,
    "ip-address": _IP_TYPES,
    "ip-addresses": _IP_TYPES,
    "ipaddress": _IP_TYPES,
    "ipv4": ("ipv4", "cidr"),
    "ipv6": ("ipv6", "cidr"),
    "cidr": ("cidr",),
    "ip-range": ("cidr",),
    "netblock": ("cidr",),
    "domain": ("domain",),
    "hostname": ("domain", "ipv4", "ipv6"),
    "host": ("domain", "ipv4", "ipv6"),
    "fqdn": ("domain",),
    "uri": ("url",),
    "link": ("url",),
    "email": ("email",),
    "email-src": ("email",),
    "email-dst": ("email",),
    "email-reply-to": ("email",),
    "target-email": ("email",),
    "whois-registrant-email": ("email",),
    "md5": ("md5",),
    "filehash-md5": ("md5",),
    "sha1": ("sha1",),
    "sha-1": ("sha1",),
    "filehash-sha1": ("sha1",),
    "sha256": ("sha256",),
    "sha-256": ("sha256",),
    "filehash-sha256": ("sha256",),
    "sha512": ("sha512",),
    "sha-512": ("sha512",),
    "filehash-sha512": ("sha512",),
    "ssdeep": ("ssdeep",),
    "hash": _HASH_TYPES,
    "filehash": _HASH_TYPES,
    "cve": ("cve",),
    "vulnerability": ("cve",),
    "asn": ("asn",),
    "as": ("asn",),
    "as-number": ("asn",),
    "asnumber": ("asn",),
    "btc": ("bitcoin",),
    "bitcoin": ("bitcoin",),
    "bitcoin-address": ("bitcoin",),
    "attack-technique": ("attack_technique",),
    "mitre-attack-technique": ("attack_technique",),
    "technique": ("attack_technique",),
    "filename": ("filename",),
    "file-name": ("filename",),
    "file": ("filename",),
    "regkey": ("registry_key",),
    "registry-key": ("registry_key",),
    "registry": ("registry_key",),
    "mac": ("mac",),
    "mac-address": ("mac",),
}
_HINTS.update({name.replace("_", "-"): (name,) for name in TYPES})

# When a feed labels a field "url" it often holds a bare host; accept that host as what it is.
_HINT_FALLBACKS: dict[str, tuple[str, ...]] = {"url": ("domain", "ipv4", "ipv6", "cidr")}


@dataclass(frozen=True, slots=True)
class Indicator:
    """One validated indicator.

    Attributes:
        type: one of `TYPES`.
        value: the canonical form (the dedup key together with ``type``).
        tags: special-use tags of addresses: ``private``, ``reserved``, ``loopback``,
            ``multicast``, ``link_local`` (empty for other types).
    """

    type: str
    value: str
    tags: tuple[str, ...] = ()


def hint_types(hint: str | None) -> tuple[str, ...] | None:
    """Return the indicator types a feed's type label may hold, or None for an unknown label.

    Args:
        hint: e.g. ``"domain-name"``, ``"ip-dst"``, ``"SHA256"``, ``"FileHash-MD5"``, ``"IP"``.
    """
    if hint is None:
        return None
    key = re.sub(r"[\s_]+", "-", hint.strip().lower())
    return _HINTS.get(key)


def _normalize_as(kind: str, value: str, *, labelled: bool) -> str | None:
    # Some forms are only trustworthy when the feed says what the value is.
    if labelled:
        if kind == "asn":
            return _n.normalize_asn(value, allow_bare=True)
        if kind == "mac":
            return _n.normalize_mac(value, allow_bare=True)
        if kind == "registry_key":
            return _n.normalize_registry_key(value, allow_hive_only=True)
        if kind == "filename":
            return _n.normalize_filename(value, labelled=True)
        if kind == "url":
            return _n.normalize_url(value, require_scheme=False)
    return _n.NORMALIZERS[kind](value)


def indicator_tags(kind: str, value: str) -> tuple[str, ...]:
    """Return the address tags of a canonical indicator (see `Indicator.tags`)."""
    if kind in ("ipv4", "ipv6"):
        return _n.address_tags(ipaddress.ip_address(value.partition("%")[0]))
    if kind == "cidr":
        network = ipaddress.ip_network(value, strict=False)
        return _n.address_tags(network.network_address)
    if kind == "url":
        host = _url_host(value)
        if host is not None:
            return _n.address_tags(host)
    return ()


def _url_host(url: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    netloc = url.split("://", 1)[-1]
    netloc = re.split(r"[/?#]", netloc, maxsplit=1)[0].rpartition("@")[2]
    host = netloc[1:].partition("]")[0] if netloc.startswith("[") else netloc.partition(":")[0]
    try:
        return ipaddress.ip_address(host.partition("%")[0])
    except ValueError:
        return None


def _classify_normalized(value: str) -> tuple[str, str] | None:
    for kind in _n.NORMALIZERS:
        canonical = _normalize_as(kind, value, labelled=False)
        if canonical is not None:
            return kind, canonical
    return None


def _prepare(raw: object) -> str:
    if not isinstance(raw, str):
        raise InvalidIndicator(raw, f"expected a string, got {type(raw).__name__}")
    if len(raw) > _MAX_VALUE_LENGTH:
        raise InvalidIndicator(
            raw[:80] + "...", f"value is {len(raw)} characters, at most {_MAX_VALUE_LENGTH}"
        )
    value = refang(raw.strip()).strip()
    if not value:
        raise InvalidIndicator(raw, "empty value")
    return value


def classify(value: str) -> str | None:
    """Return the indicator type of a single value, or None if it is not an indicator.

    The value is refanged first. When a value could be two types, the first in this order
    wins: url, email, cidr, ipv4, ipv6, mac, md5, sha1, sha256, sha512, ssdeep, cve,
    attack_technique, asn, registry_key, bitcoin, filename (known extensions only), domain.

    Args:
        value: one candidate value (not free text; see `extract` for that).
    """
    try:
        prepared = _prepare(value)
    except InvalidIndicator:
        return None
    found = _classify_normalized(prepared)
    return found[0] if found else None


def parse_indicator(raw: str, hint: str | None = None) -> Indicator:
    """Refang, validate, normalise and classify one value.

    Args:
        raw: the value as found in a feed.
        hint: the feed's own type label (STIX ``domain-name``, MISP ``ip-dst``, CSV ``SHA256``,
            ``IP``, ``Domain``, ``Filename`` ...). A known label restricts the value to the
            types it may hold; an unknown label is ignored and the value is classified.

    Returns:
        The indicator with its canonical value and address tags.

    Raises:
        InvalidIndicator: the value is empty, not an indicator, or not of the hinted type.
    """
    value = _prepare(raw)
    expected = hint_types(hint)
    if expected is None:
        found = _classify_normalized(value)
        if found is None:
            raise InvalidIndicator(raw, f"not a recognised indicator; expected one of {TYPES}")
        return Indicator(found[0], found[1], indicator_tags(*found))

    for kind in expected:
        canonical = _normalize_as(kind, value, labelled=True)
        if canonical is not None:
            return Indicator(kind, canonical, indicator_tags(kind, canonical))

    fallbacks = tuple(t for k in expected for t in _HINT_FALLBACKS.get(k, ()))
    found = _classify_normalized(value)
    if found is not None and found[0] in fallbacks:
        return Indicator(found[0], found[1], indicator_tags(*found))
    classified = f"; it looks like {found[0]}" if found else ""
    raise InvalidIndicator(
        raw, f"feed type {hint!r} expects {' or '.join(expected)}, value is not one{classified}"
    )


def extract(text: str) -> list[Indicator]:
    """Find the indicators in free text, refanging first.

    Each distinct ``(type, value)`` appears once, in order of first appearance. A URL's host is
    also reported (as a domain or an address); a URL's path and an e-mail's domain are not.

    Args:
        text: a report, e-mail, blog post, or any other text.
    """
    from phantom_spire.cti.extract import extract_indicators  # imports this module

    return extract_indicators(text)


def dedup_key(indicator: Indicator) -> str:
    """Return the key under which two sightings of one indicator are merged.

    The value is already canonical (hash case, RFC 5952 IPv6, A-label domains, scheme and host
    case of URLs), so the key is ``"<type>:<value>"``.
    """
    return f"{indicator.type}:{indicator.value}"
