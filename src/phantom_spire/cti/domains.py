"""Domain-name validation against the public suffix list, IDNA normalisation.

The public suffix list comes from ``tldextract``'s bundled snapshot. tldextract fetches a fresh
list over the network by default; we construct it with ``suffix_list_urls=()`` and no cache
directory so that validating a domain never touches the network or the disk.
"""

from __future__ import annotations

import functools
import re

import idna
import tldextract

__all__ = ["normalize_domain", "registered_domain"]

# Underscores are not valid in host names but are common in real DNS names (_dmarc, SRV
# records, o_o.lgms.nl); peers accept them, so do we.
_ASCII_LABEL = re.compile(r"^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$")
_TLD = re.compile(r"^(?:[a-z]{2,63}|xn--[a-z0-9-]{1,59})$")


# Special-use names (RFC 2606, RFC 6761, RFC 6762) that are not on the public suffix list but
# appear in reports and test data: "evil.example" is a domain for our purposes.
_SPECIAL_USE_TLDS = frozenset({"example", "test", "invalid", "localhost", "local", "internal"})


@functools.cache
def _extractor() -> tldextract.TLDExtract:
    return tldextract.TLDExtract(cache_dir=None, suffix_list_urls=(), fallback_to_snapshot=True)


def _to_a_label(label: str) -> str | None:
    if label.isascii():
        lowered = label.lower()
        return lowered if _ASCII_LABEL.match(lowered) else None
    try:
        return idna.encode(label, uts46=True).decode("ascii")
    except idna.IDNAError:
        return None


def normalize_domain(value: str) -> str | None:
    """Return the canonical form of a domain name, or None if it is not one.

    Canonical: lower case, no trailing dot, IDN labels as A-labels (punycode). The name needs
    at least two labels, a top-level domain on the public suffix list, and a label in front of
    the public suffix (``co.uk`` alone is not a domain).

    Args:
        value: a candidate domain name, already refanged.
    """
    name = value.strip().rstrip(".")
    if not name or len(name) > 253 or ".." in name or any(c.isspace() for c in name):
        return None
    labels = name.split(".")
    if len(labels) < 2:
        return None
    a_labels = [_to_a_label(label) for label in labels]
    if any(label is None for label in a_labels):
        return None
    canonical = ".".join(label for label in a_labels if label is not None)
    if not _TLD.match(canonical.rsplit(".", 1)[1]) or len(canonical) > 253:
        return None
    if canonical.rsplit(".", 1)[1] in _SPECIAL_USE_TLDS:
        return canonical
    parts = _extractor()(canonical)
    if not parts.suffix or not parts.domain:
        return None
    return canonical


def registered_domain(domain: str) -> str | None:
    """Return the registrable part of a canonical domain (``a.b.example.co.uk`` -> ``example.co.uk``).

    Args:
        domain: a canonical domain, as returned by `normalize_domain`.
    """
    parts = _extractor()(domain)
    if not parts.suffix or not parts.domain:
        return None
    return f"{parts.domain}.{parts.suffix}"
