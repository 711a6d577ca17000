"""Warning lists of known-benign values, in MISP warninglist JSON format.

A list file looks like ``{"name": ..., "type": "string"|"cidr"|"hostname"|"substring"|"regex",
"list": [...], "matching_attributes": [...]}``. Entries are canonicalised like indicators, so a
list of upper-case hashes matches lower-case indicators. ``cidr`` lists match any address or
network inside a listed range; ``hostname`` lists match the name and its subdomains.

A match is meant to be flagged on the indicator (and lower its score), never to drop it.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

from phantom_spire.cti.errors import CTIError, InvalidIndicator
from phantom_spire.cti.indicators import Indicator, parse_indicator

__all__ = ["WarningList", "WarningListError", "WarningLists"]

logger = logging.getLogger(__name__)

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class WarningListError(CTIError):
    """A warning-list file cannot be read."""


@dataclass
class WarningList:
    """One warning list.

    Attributes:
        name: the list's name, reported on a match.
        type: MISP list type: string, cidr, hostname, substring or regex.
    """

    name: str
    type: str
    values: set[str] = field(default_factory=set)
    networks: list[_Network] = field(default_factory=list)
    patterns: list[re.Pattern[str]] = field(default_factory=list)
    # (IP version, prefix length) -> network addresses as integers: a lookup per prefix length
    # instead of a comparison per listed network (cloud-provider lists hold thousands).
    _by_prefix: dict[tuple[int, int], set[int]] = field(default_factory=dict, repr=False)

    @classmethod
    def from_file(cls, path: Path) -> WarningList:
        """Load a MISP warninglist JSON file.

        Raises:
            WarningListError: the file is not JSON or lacks ``name``/``list``.
        """
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise WarningListError(f"cannot read warning list {str(path)!r}: {exc}") from exc
        if not isinstance(data, dict) or not isinstance(data.get("list"), list):
            raise WarningListError(
                f"warning list {str(path)!r} has no 'list' array; expected MISP warninglist JSON"
            )
        return cls.from_entries(
            str(data.get("name", Path(path).stem)), str(data.get("type", "string")), data["list"]
        )

    @classmethod
    def from_entries(cls, name: str, list_type: str, entries: list[object]) -> WarningList:
        """Build a list from its entries, canonicalising each one."""
        warning_list = cls(name, list_type)
        for entry in entries:
            if isinstance(entry, str) and entry.strip():
                warning_list._add(entry.strip())
        return warning_list

    def _add(self, entry: str) -> None:
        if self.type == "regex":
            try:
                self.patterns.append(re.compile(entry))
            except re.error:
                logger.debug("warning list %s: bad regex %r skipped", self.name, entry)
            return
        if self.type == "cidr" or "/" in entry:
            try:
                network = ipaddress.ip_network(entry, strict=False)
            except ValueError:
                pass
            else:
                self.networks.append(network)
                key = (network.version, network.prefixlen)
                self._by_prefix.setdefault(key, set()).add(int(network.network_address))
                return
        if self.type == "substring":
            self.values.add(entry.lower())
            return
        self.values.add(entry.lower().rstrip("."))
        try:
            self.values.add(parse_indicator(entry).value.lower())
        except InvalidIndicator:
            pass

    def matches(self, indicator: Indicator) -> bool:
        """Tell whether an indicator is on this list."""
        value = indicator.value.lower()
        if self._by_prefix and indicator.type in ("ipv4", "ipv6", "cidr"):
            if self._in_networks(ipaddress.ip_network(value.partition("%")[0], strict=False)):
                return True
        if self.type == "substring":
            return any(entry in value for entry in self.values)
        if self.type == "regex":
            return any(pattern.search(indicator.value) for pattern in self.patterns)
        if value in self.values:
            return True
        if self.type == "hostname" and indicator.type in ("domain", "email", "url"):
            host = _host_of(indicator)
            labels = host.split(".")
            return any(".".join(labels[i:]) in self.values for i in range(len(labels)))
        return False

    def _in_networks(self, network: _Network) -> bool:
        """Tell whether `network` (an address is a /32 or /128) lies inside a listed range."""
        address, bits = int(network.network_address), network.max_prefixlen
        for (version, prefixlen), starts in self._by_prefix.items():
            if version != network.version or prefixlen > network.prefixlen:
                continue
            mask = ((1 << prefixlen) - 1) << (bits - prefixlen)
            if address & mask in starts:
                return True
        return False


def _host_of(indicator: Indicator) -> str:
    value = indicator.value.lower()
    if indicator.type == "email":
        return value.rpartition("@")[2]
    if indicator.type == "url":
        return (
            re.split(r"[/?#]", value.split("://", 1)[-1], maxsplit=1)[0]
            .rpartition("@")[2]
            .partition(":")[0]
        )
    return value


class WarningLists:
    """A set of warning lists checked together."""

    def __init__(self, lists: list[WarningList] | None = None) -> None:
        self.lists = list(lists or [])

    @classmethod
    def load(cls, paths: list[Path]) -> WarningLists:
        """Load every given MISP warninglist file (or every ``*.json`` in a given folder)."""
        files: list[Path] = []
        for path in map(Path, paths):
            files.extend(sorted(path.glob("*.json")) if path.is_dir() else [path])
        return cls([WarningList.from_file(path) for path in files])

    def matches(self, indicator: Indicator) -> list[str]:
        """Return the names of the lists the indicator is on (empty when none)."""
        return [warning_list.name for warning_list in self.lists if warning_list.matches(indicator)]
